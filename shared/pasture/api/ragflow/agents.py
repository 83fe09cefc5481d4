"""RAGFlow agents: list, sessions, completions; plus `POST /api/v1/agents` and
`DELETE /api/v1/agents/{agent_id}`, Pasture extensions (RAGFlow creates agents in its UI)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pasture.api.deps import ContainerDep
from pasture.api.ragflow.chats import list_sessions_of, listed_messages, respond, stream_flag
from pasture.api.ragflow.envelope import Body, RagflowTenant, ok
from pasture.api.ragflow.shapes import times
from pasture.domain.errors import NotFound
from pasture.services.agents import Agent
from pasture.services.assistants import Conversation
from pasture.services.tenant_datasets import check_page, paged

router = APIRouter(prefix="/api/v1", tags=["ragflow"])


def agent_view(a: Agent) -> dict[str, Any]:
    return {
        "id": a.id,
        "title": a.title,
        "description": a.description,
        "avatar": a.avatar,
        "canvas_type": None,
        "dsl": a.dsl,
        "user_id": a.tenant,
        **times(a.created_at, a.updated_at),
    }


def agent_session_view(a: Agent, conv: Conversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "agent_id": a.id,
        "dsl": a.dsl,
        "message": listed_messages(conv.messages),  # RAGFlow's name for an agent's messages
        "messages": listed_messages(conv.messages),
        "source": "agent",
        "user_id": conv.user_id,
        **times(conv.created_at, conv.updated_at),
    }


@router.post("/agents")
def create_agent(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    return ok(agent_view(c.agents.create(tenant, body or {})))


@router.get("/agents")
def list_agents(request: Request, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    q = dict(request.query_params)
    p = check_page(q.get("page"), q.get("page_size"), q.get("orderby"), q.get("desc"), 30)
    items = c.agents.all(tenant)
    if q.get("id"):
        items = [a for a in items if a.id == q["id"]]
    title = q.get("name") or q.get("title")
    if title:
        items = [a for a in items if a.title == title]
    if (q.get("id") or title) and not items:
        raise NotFound("The agent doesn't exist.")
    key = (lambda a: a.created_at) if p.orderby == "create_time" else (lambda a: a.updated_at)
    return ok([agent_view(a) for a in paged(items, p, key)])


@router.delete("/agents/{agent_id}")
def delete_agent(agent_id: str, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    c.agents.delete(tenant, agent_id)
    return ok()


@router.post("/agents/{agent_id}/sessions")
def create_agent_session(
    agent_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    agent, conv = c.agents.new_session(tenant, agent_id, body or {})
    return ok(agent_session_view(agent, conv))


@router.get("/agents/{agent_id}/sessions")
def list_agent_sessions(
    agent_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    agent = c.agents.get(tenant, agent_id)
    sessions = list_sessions_of(c, tenant, agent.id, dict(request.query_params))
    by_id = {s.id: s for s in c.assistants.conversations(tenant, agent.id)}
    return ok([agent_session_view(agent, by_id[s["id"]]) for s in sessions])


@router.post("/agents/{agent_id}/completions", response_model=None)
async def agent_completions(
    agent_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> Response:
    b = body or {}
    stream = stream_flag(b.get("stream"))
    turn = await c.agents.ask(tenant, agent_id, b)
    return await respond(request, turn, stream)
