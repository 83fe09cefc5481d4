"""RAGFlow chat assistants, their sessions and completions; the singular draft's `/api/v1/chat`
paths are aliases.

Completion streams are framed as RAGFlow frames them: `data:` (no space) + JSON + blank line,
each frame carrying the whole answer so far; the last content frame has the reference and the
citation markers; the stream always ends with `data:{"code":0,"message":"","data":true}`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pasture.api.deps import ContainerDep
from pasture.api.ragflow.envelope import Body, RagflowTenant, ok
from pasture.api.ragflow.shapes import times
from pasture.api.streaming import EventStream, until_disconnected
from pasture.bootstrap import Container
from pasture.domain.chat import TextDelta
from pasture.domain.errors import Invalid, NotFound, PastureError
from pasture.services.assistants import Assistant, AssistantTurn, Conversation, TurnResult
from pasture.services.tenant_datasets import check_ids, check_page, paged

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["ragflow"])

# What the singular draft sends back with a chat but nobody can change.
_CHAT_READ_ONLY = (
    "create_date",
    "create_time",
    "update_date",
    "update_time",
    "id",
    "tenant_id",
    "do_refer",
    "language",
    "prompt_type",
    "status",
    "top_k",
)
# Fields of a completion body that are not prompt variables.
_COMPLETION_FIELDS = {"question", "stream", "session_id", "user_id", "quote", "name"}


def assistant_view(a: Assistant) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "avatar": a.avatar,
        "description": a.description,
        "dataset_ids": a.dataset_ids,
        "llm": a.llm,
        "prompt": a.prompt,
        "prompt_type": "simple",
        "do_refer": "1" if a.prompt.get("show_quote", True) else "0",
        "language": "English",
        "status": "1",
        "tenant_id": a.tenant,
        "top_k": a.top_k,
        **times(a.created_at, a.updated_at),
    }


def session_view(conv: Conversation) -> dict[str, Any]:
    owner = "chat_id" if conv.kind == "chat" else "agent_id"
    return {
        "id": conv.id,
        owner: conv.owner_id,
        conv.kind: conv.owner_id,  # RAGFlow's list names it `chat`; its client reads `chat_id`
        "name": conv.name,
        "user_id": conv.user_id,
        "messages": listed_messages(conv.messages),
        **times(conv.created_at, conv.updated_at),
    }


def listed_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As RAGFlow lists a session: each answer's `reference` is its list of chunks."""
    out = []
    for m in messages:
        ref = m.get("reference")
        out.append({**m, "reference": ref.get("chunks", [])} if isinstance(ref, dict) else m)
    return out


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data:" + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def answer_stream(turn: AssistantTurn, extra: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
    """Cumulative frames; `extra` adds fields to every frame (agents send `"message": ""`)."""
    head = {"code": 0, "message": ""}

    def frame(answer: str, reference: Any, **more: Any) -> bytes:
        data = {
            "answer": answer,
            "reference": reference,
            "audio_binary": None,
            "id": turn.message_id,
            "session_id": turn.session_id,
            **more,
        }
        return _sse({**head, **(extra or {}), "data": data})

    async def frames() -> AsyncIterator[bytes]:
        answer = ""
        events = turn.events()
        try:
            async for item in events:
                if isinstance(item, TextDelta):
                    if item.text:
                        answer += item.text
                        yield frame(answer, {})
                elif isinstance(item, TurnResult):
                    yield frame(item.answer, item.reference, prompt=item.prompt)
        except PastureError as exc:
            yield _sse(_error_frame(exc.message))
        except Exception:
            log.exception("chat stream failed")
            yield _sse(_error_frame("Internal server error"))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield _sse({**head, **(extra or {}), "data": True})

    return frames()


def _error_frame(message: str) -> dict[str, Any]:
    return {
        "code": 500,
        "message": message,
        "data": {"answer": f"**ERROR**: {message}", "reference": []},
    }


async def respond(
    request: Request, turn: AssistantTurn, stream: bool, extra: dict[str, Any] | None = None
) -> Response:
    if stream:
        return EventStream(answer_stream(turn, extra))
    result = await until_disconnected(request, turn.result())
    return ok(
        {
            "answer": result.answer,
            "reference": result.reference,
            "audio_binary": None,
            "id": turn.message_id,
            "session_id": turn.session_id,
            "prompt": result.prompt,
        }
    )


def stream_flag(value: Any) -> bool:
    if value is None:
        return True  # RAGFlow streams unless told not to
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Invalid("`stream` must be a boolean")


# ---------------------------------------------------------------------- assistants


@router.post("/chats")
def create_chat(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    return ok(assistant_view(c.assistants.create(tenant, body or {})))


def _singular_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The draft sends `knowledgebases: [{id, ...}]` where the plural API takes dataset_ids."""
    out = dict(body)
    kbs = out.pop("knowledgebases", None)
    if kbs is not None and "dataset_ids" not in out:
        if not isinstance(kbs, list):
            raise Invalid("`knowledgebases` must be a list")
        out["dataset_ids"] = [k.get("id") if isinstance(k, dict) else k for k in kbs]
    for ro in _CHAT_READ_ONLY:
        out.pop(ro, None)
    return out


@router.post("/chat")
def create_chat_singular(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    return ok(assistant_view(c.assistants.create(tenant, _singular_fields(body or {}))))


@router.put("/chats/{chat_id}")
def update_chat(
    chat_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.assistants.update(tenant, chat_id, body or {})
    return ok()


@router.put("/chat")
def update_chat_singular(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    """The draft names the chat in the body."""
    b = body or {}
    chat_id = b.get("id")
    if not isinstance(chat_id, str) or not chat_id:
        raise Invalid("`id` is required")
    c.assistants.update(tenant, chat_id, _singular_fields(b))
    return ok()


@router.delete("/chats")
def delete_chats(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    ids = (body or {}).get("ids")
    c.assistants.delete(tenant, None if ids is None else check_ids(ids, "ids"))
    return ok()


@router.delete("/chat/{chat_id}")
def delete_chat_singular(chat_id: str, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    c.assistants.delete(tenant, [chat_id])
    return ok()


def _list_chats(c: Container, tenant: str, q: dict[str, Any]) -> JSONResponse:
    p = check_page(q.get("page"), q.get("page_size"), q.get("orderby"), q.get("desc"), 30)
    items = c.assistants.all(tenant)
    if q.get("id"):
        items = [a for a in items if a.id == q["id"]]
    if q.get("name"):
        items = [a for a in items if a.name.lower() == str(q["name"]).lower()]
    if (q.get("id") or q.get("name")) and not items:
        raise NotFound("The chat doesn't exist")
    key = (lambda a: a.created_at) if p.orderby == "create_time" else (lambda a: a.updated_at)
    return ok([assistant_view(a) for a in paged(items, p, key)])


@router.get("/chats")
def list_chats(request: Request, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    return _list_chats(c, tenant, dict(request.query_params))


@router.get("/chat")
def list_chats_singular(request: Request, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    return _list_chats(c, tenant, dict(request.query_params))


# ---------------------------------------------------------------------- sessions


def _create_session(c: Container, tenant: str, chat_id: str, body: dict[str, Any]) -> JSONResponse:
    a = c.assistants.get(tenant, chat_id)
    conv = c.assistants.new_conversation(
        tenant, a.id, "chat", body.get("name"), body.get("user_id"), a.prompt.get("opener") or ""
    )
    return ok(session_view(conv))


@router.post("/chats/{chat_id}/sessions")
def create_session(
    chat_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _create_session(c, tenant, chat_id, body or {})


@router.post("/chat/{chat_id}/session")
def create_session_singular(
    chat_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _create_session(c, tenant, chat_id, body or {})


def _update_session(
    c: Container, tenant: str, chat_id: str, session_id: str, body: dict[str, Any]
) -> JSONResponse:
    c.assistants.get(tenant, chat_id)
    conv = c.assistants.conversation(tenant, chat_id, session_id)
    for ro in ("messages", "reference"):
        if ro in body:
            raise Invalid(f"`{ro}` can not be changed")
    name = body.get("name", conv.name)
    if not isinstance(name, str) or not name.strip():
        raise Invalid("`name` can not be empty.")
    user_id = body.get("user_id", conv.user_id)
    c.assistants.save_conversation(
        tenant,
        replace(conv, name=name.strip(), user_id=str(user_id or ""), updated_at=time.time()),
    )
    return ok()


@router.put("/chats/{chat_id}/sessions/{session_id}")
def update_session(
    chat_id: str, session_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _update_session(c, tenant, chat_id, session_id, body or {})


@router.put("/chat/{chat_id}/session/{session_id}")
def update_session_singular(
    chat_id: str, session_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _update_session(c, tenant, chat_id, session_id, body or {})


def list_sessions_of(
    c: Container, tenant: str, owner_id: str, q: dict[str, Any]
) -> list[dict[str, Any]]:
    p = check_page(q.get("page"), q.get("page_size"), q.get("orderby"), q.get("desc"), 30)
    items = c.assistants.conversations(tenant, owner_id)
    for f in ("id", "name", "user_id"):
        if q.get(f):
            items = [s for s in items if getattr(s, f) == q[f]]
    key = (lambda s: s.created_at) if p.orderby == "create_time" else (lambda s: s.updated_at)
    return [session_view(s) for s in paged(items, p, key)]


@router.get("/chats/{chat_id}/sessions")
def list_sessions(
    chat_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    c.assistants.get(tenant, chat_id)
    return ok(list_sessions_of(c, tenant, chat_id, dict(request.query_params)))


@router.get("/chat/{chat_id}/session")
def list_sessions_singular(
    chat_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    c.assistants.get(tenant, chat_id)
    return ok(list_sessions_of(c, tenant, chat_id, dict(request.query_params)))


@router.delete("/chats/{chat_id}/sessions")
def delete_sessions(
    chat_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.assistants.get(tenant, chat_id)
    ids = (body or {}).get("ids")
    c.assistants.delete_conversations(
        tenant, chat_id, None if ids is None else check_ids(ids, "ids")
    )
    return ok()


@router.delete("/chat/{chat_id}/session/{session_id}")
def delete_session_singular(
    chat_id: str, session_id: str, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    c.assistants.get(tenant, chat_id)
    c.assistants.delete_conversations(tenant, chat_id, [session_id])
    return ok()


# ---------------------------------------------------------------------- completions


async def _complete(
    request: Request,
    c: Container,
    tenant: str,
    chat_id: str,
    body: dict[str, Any],
    session_id: Any,
) -> Response:
    stream = stream_flag(body.get("stream"))
    variables = {k: v for k, v in body.items() if k not in _COMPLETION_FIELDS}
    turn = await c.assistants.ask(
        tenant, chat_id, body.get("question"), session_id, body.get("user_id"), variables
    )
    return await respond(request, turn, stream)


@router.post("/chats/{chat_id}/completions", response_model=None)
async def completions(
    chat_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> Response:
    b = body or {}
    return await _complete(request, c, tenant, chat_id, b, b.get("session_id"))


@router.post("/chat/{chat_id}/session/{session_id}/completion", response_model=None)
async def completion_singular(
    chat_id: str,
    session_id: str,
    request: Request,
    c: ContainerDep,
    tenant: RagflowTenant,
    body: Body = None,
) -> Response:
    await run_in_threadpool(c.assistants.get, tenant, chat_id)
    return await _complete(request, c, tenant, chat_id, body or {}, session_id)
