"""llama_internet_chatbot's conversation rows and answers: `/conversations/create`,
`/conversations/`, `/conversations/inference/{chat_id}`,
`/conversations/inference_internet/{chat_id}`.

Answers stream as the original's Rocket `EventStream` sends them: every model token is one
event, `data:<token>` with no space after the colon, a token with line breaks is several
`data:` lines of one event (so SSE clients get the line breaks back), and the stream simply
closes at the end. A chat without messages gets the one event `data:No messages found in
database`. If the model fails part-way, a last event `[error] <reason>` ends the stream (the
status line was already sent) and nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import pasture.api.internet_chatbot.envelope  # noqa: F401  (registers the dialect)
from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.streaming import EventStream
from pasture.domain.errors import PastureError

log = logging.getLogger(__name__)
router = APIRouter(tags=["llama_internet_chatbot"])
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "`data:<token>` events", "content": {"text/event-stream": {}}}
}


class NewConversation(BaseModel):
    chat_id: str
    role: str  # Human | Assistant
    message: str


@router.post("/conversations/create", status_code=201)
async def create_conversation(
    body: NewConversation, c: ContainerDep, tenant: TenantDep
) -> JSONResponse:
    row = await run_in_threadpool(c.chatbot.add_row, tenant, body.chat_id, body.role, body.message)
    return JSONResponse(row.as_dict(), status_code=201)


@router.get("/conversations/")
async def list_conversations(
    c: ContainerDep,
    tenant: TenantDep,
    chat_id: str | None = Query(None, description="only this chat's rows (an extension)"),
) -> list[dict[str, Any]]:
    return [r.as_dict() for r in await run_in_threadpool(c.chatbot.rows, tenant, chat_id)]


@router.get("/conversations", include_in_schema=False)
async def list_conversations_no_slash(
    c: ContainerDep, tenant: TenantDep, chat_id: str | None = None
) -> list[dict[str, Any]]:
    return await list_conversations(c, tenant, chat_id)


@router.get("/conversations/inference/{chat_id}", responses=_SSE)
async def inference(chat_id: str, c: ContainerDep, tenant: TenantDep) -> EventStream:
    return EventStream(frames(await c.chatbot.answer(tenant, chat_id, web=False)))


@router.get("/conversations/inference_internet/{chat_id}", responses=_SSE)
async def inference_internet(chat_id: str, c: ContainerDep, tenant: TenantDep) -> EventStream:
    return EventStream(frames(await c.chatbot.answer(tenant, chat_id, web=True)))


def frame(text: str) -> bytes:
    """One SSE event: a `data:` line per line of `text`, then a blank line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return b"".join(b"data:" + line.encode("utf-8") + b"\n" for line in lines) + b"\n"


async def frames(pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    try:
        async for text in pieces:
            if text:
                yield frame(text)
    except PastureError as exc:
        yield frame(f"[error] {exc.message}")
    except Exception:
        log.exception("internet chatbot stream failed")
        yield frame("[error] Internal server error")
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
