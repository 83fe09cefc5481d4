"""llama_internet_chatbot's chats: `/chats/`, `/chats/{id}`, `/chats/create`,
`/chats/update/{id}`, `/chats/delete/{id}`.

A chat is `{id, name, created_at, updated_at}` with naive ISO timestamps. Create answers 201
with the whole chat (the original echoed only `{name}`; the full row is a superset that tells
the client the new id); update and delete answer the chat as it now is / as it was.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import pasture.api.internet_chatbot.envelope  # noqa: F401  (registers the dialect)
from pasture.api.deps import ContainerDep, TenantDep

router = APIRouter(tags=["llama_internet_chatbot"])


class NewChat(BaseModel):
    name: str


class UpdateChat(BaseModel):
    name: str
    # The original requires it (a chrono NaiveDateTime); optional here: now when left out.
    updated_at: str | None = None


@router.get("/chats/")
async def list_chats(c: ContainerDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return [chat.as_dict() for chat in await run_in_threadpool(c.chatbot.list_chats, tenant)]


@router.get("/chats", include_in_schema=False)
async def list_chats_no_slash(c: ContainerDep, tenant: TenantDep) -> list[dict[str, Any]]:
    return await list_chats(c, tenant)


@router.get("/chats/{chat_id}")
async def get_chat(chat_id: str, c: ContainerDep, tenant: TenantDep) -> dict[str, Any]:
    return (await run_in_threadpool(c.chatbot.get_chat, tenant, chat_id)).as_dict()


@router.post("/chats/create", status_code=201)
async def create_chat(body: NewChat, c: ContainerDep, tenant: TenantDep) -> JSONResponse:
    chat = await run_in_threadpool(c.chatbot.create_chat, tenant, body.name)
    return JSONResponse(chat.as_dict(), status_code=201)


@router.put("/chats/update/{chat_id}")
async def update_chat(
    chat_id: str, body: UpdateChat, c: ContainerDep, tenant: TenantDep
) -> dict[str, Any]:
    chat = await run_in_threadpool(
        c.chatbot.update_chat, tenant, chat_id, body.name, body.updated_at
    )
    return chat.as_dict()


@router.delete("/chats/delete/{chat_id}")
async def delete_chat(chat_id: str, c: ContainerDep, tenant: TenantDep) -> dict[str, Any]:
    return (await run_in_threadpool(c.chatbot.delete_chat, tenant, chat_id)).as_dict()
