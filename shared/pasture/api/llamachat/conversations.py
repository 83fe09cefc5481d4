"""LlamaChat's conversations (llamachat-api.txt), scoped to the consumer of the `X-Api-Key`.

Documented: `POST /api/conversations` and `POST /api/conversations/{id}/messages`.
Extensions a client needs to be useful: list, get (with messages), messages, delete.
Another consumer's conversation answers 404, exactly like an unknown id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, StrictStr

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamachat.envelope import LLAMACHAT  # noqa: F401  (registers the dialect)
from pasture.api.streaming import until_disconnected
from pasture.services.conversations import Conversation, Message

router = APIRouter(prefix="/api/conversations", tags=["LlamaChat"])


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: StrictStr


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _summary(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "createdAt": _iso(c.created_at),
        "updatedAt": _iso(c.updated_at),
        "messageCount": 2 * c.turns,
    }


def _message(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "createdAt": _iso(m.created_at)}


@router.post("", summary="Create a conversation")
def create_conversation(c: ContainerDep, tenant: TenantDep) -> dict[str, Any]:
    conv = c.conversations.create(tenant)
    return {"id": conv.id, "title": conv.title}


@router.post("/{conversation_id}/messages", summary="Send a message, get the reply")
async def send_message(
    conversation_id: str,
    body: NewMessage,
    request: Request,
    c: ContainerDep,
    tenant: TenantDep,
) -> dict[str, Any]:
    reply = await until_disconnected(
        request, c.conversations.send(tenant, conversation_id, body.content)
    )
    return {"role": reply.role, "content": reply.content}


@router.get("", summary="List conversations, newest first (extension)")
def list_conversations(c: ContainerDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return [_summary(conv) for conv in c.conversations.recent(tenant)]


@router.get("/{conversation_id}", summary="A conversation and its messages (extension)")
def get_conversation(conversation_id: str, c: ContainerDep, tenant: TenantDep) -> dict[str, Any]:
    conv, messages = c.conversations.with_messages(tenant, conversation_id)
    return {**_summary(conv), "messages": [_message(m) for m in messages]}


@router.get("/{conversation_id}/messages", summary="A conversation's messages (extension)")
def list_messages(conversation_id: str, c: ContainerDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return [_message(m) for m in c.conversations.messages(tenant, conversation_id)]


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation (extension)")
def delete_conversation(conversation_id: str, c: ContainerDep, tenant: TenantDep) -> Response:
    c.conversations.delete(tenant, conversation_id)
    return Response(status_code=204)
