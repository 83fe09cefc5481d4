"""LlamaFarm chat: OpenAI-compatible completions with sessions and RAG, sessions, models."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.errors import status_of
from pasture.api.streaming import EventStream, until_disconnected
from pasture.domain.chat import ChatMessage, ChatResult, Reference, TextDelta
from pasture.domain.errors import Invalid, PastureError
from pasture.services.chat import ChatRequest, ChatTurn

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/projects/{namespace}/{project}", tags=["chat"])


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    # "developer" is OpenAI's newer name for system.
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def domain(self) -> ChatMessage:
        c = self.content
        text = c if isinstance(c, str) else "".join(p.text for p in c or [])
        return ChatMessage("system" if self.role == "developer" else self.role, text)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request plus LlamaFarm's RAG fields. Other OpenAI fields are accepted and
    ignored when harmless, refused when they would change the answer (see `_refuse`)."""

    model_config = ConfigDict(extra="allow")

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    rag_enabled: bool | None = None
    database: str | None = None
    rag_top_k: int | None = None
    rag_score_threshold: float | None = None

    def domain(self) -> ChatRequest:
        _refuse(self)
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return ChatRequest(
            messages=tuple(m.domain() for m in self.messages),
            model=self.model,
            max_tokens=self.max_tokens
            if self.max_tokens is not None
            else self.max_completion_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=tuple(stop),
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            rag_enabled=self.rag_enabled,
            database=self.database,
            rag_top_k=self.rag_top_k,
            rag_score_threshold=self.rag_score_threshold,
        )


# OpenAI options that would change what the client gets back: refusing is honest, ignoring
# them would return something the client did not ask for.
def _refuse(req: ChatCompletionRequest) -> None:
    if req.n not in (None, 1):
        raise Invalid("n must be 1: one choice per request is supported")
    extra = req.model_extra or {}
    for name in ("tools", "functions", "audio", "logprobs", "top_logprobs"):
        if extra.get(name):
            raise Invalid(f"{name} is not supported by this server")
    for name in ("tool_choice", "function_call"):
        if extra.get(name) not in (None, "none", "auto"):
            raise Invalid(f"{name} is not supported by this server")
    if extra.get("response_format") not in (None, {"type": "text"}):
        raise Invalid("response_format is not supported by this server (only text)")


class SessionMessages(BaseModel):
    messages: list[dict[str, str]]


class MessageReply(BaseModel):
    message: str


class DeletedSessions(BaseModel):
    message: str
    count: int


class ModelInfo(BaseModel):
    name: str
    provider: str
    model: str
    base_url: str | None = None
    default: bool
    description: str | None = None


class ModelList(BaseModel):
    total: int
    models: list[ModelInfo]


# ---------------------------------------------------------------------- wire shapes


def _usage(r: ChatResult) -> dict[str, int]:
    u = r.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _references(refs: tuple[Reference, ...]) -> list[dict[str, Any]]:
    return [
        {
            "number": r.number,
            "chunk_id": r.chunk_id,
            "dataset_id": r.dataset_id,
            "document_id": r.document_id,
            "document_name": r.document_name,
            "content": r.text,
            "score": round(r.score, 6),
            "keyword_score": round(r.keyword_score, 6),
            "vector_score": round(r.vector_score, 6),
        }
        for r in refs
    ]


def _completion_body(turn: ChatTurn, r: ChatResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": r.id,
        "object": "chat.completion",
        "created": r.created,
        "model": r.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason.value,
            }
        ],
        "usage": _usage(r),
    }
    if turn.rag_used:  # extension: which chunks the answer was given
        body["references"] = _references(r.references)
    return body


def _frame(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def _sse(
    turn: ChatTurn, events: AsyncIterator[TextDelta | ChatResult], include_usage: bool
) -> AsyncIterator[bytes]:
    head = {
        "id": turn.id,
        "object": "chat.completion.chunk",
        "created": turn.created,
        "model": turn.model_config.name,
    }
    first = True
    try:
        async for ev in events:
            if isinstance(ev, TextDelta):
                delta = {"role": "assistant", "content": ev.text} if first else {"content": ev.text}
                first = False
                yield _frame(
                    {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                )
                continue
            last: dict[str, Any] = {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant"} if first else {},
                        "finish_reason": ev.finish_reason.value,
                    }
                ],
            }
            if turn.rag_used:
                last["references"] = _references(ev.references)
            yield _frame(last)
            if include_usage:
                yield _frame({**head, "choices": [], "usage": _usage(ev)})
    except PastureError as exc:
        # The status line is long gone: the error travels as an OpenAI error frame.
        yield _frame(
            {"error": {"message": exc.message, "type": type(exc).__name__, "code": status_of(exc)}}
        )
    except Exception:
        log.exception("chat stream failed")
        yield _frame(
            {"error": {"message": "Internal server error", "type": "Internal", "code": 500}}
        )
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    yield _frame("[DONE]")


# ---------------------------------------------------------------------- routes


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    namespace: str,
    project: str,
    body: ChatCompletionRequest,
    request: Request,
    c: ContainerDep,
    tenant: TenantDep,
    x_session_id: Annotated[str | None, Header()] = None,
    x_no_session: Annotated[str | None, Header()] = None,
) -> Response:
    stateless = x_no_session is not None
    turn = await c.chat.start(
        tenant,
        namespace,
        project,
        body.domain(),
        session_id=None if stateless else x_session_id,
        stateless=stateless,
    )
    headers = {"X-Session-ID": turn.session_id} if turn.session_id else {}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = await turn.started()  # errors before the first token keep their status
        return EventStream(_sse(turn, events, include_usage), headers=headers)
    result = await until_disconnected(request, turn.result())
    return JSONResponse(_completion_body(turn, result), headers=headers)


@router.get("/chat/sessions/{session_id}/history", response_model=SessionMessages)
def session_history(
    namespace: str, project: str, session_id: str, c: ContainerDep, tenant: TenantDep
) -> SessionMessages:
    s = c.chat.history(tenant, namespace, project, session_id)
    return SessionMessages(messages=[m.as_dict() for m in s.messages])


@router.delete("/chat/sessions/{session_id}", response_model=MessageReply)
def delete_session(
    namespace: str, project: str, session_id: str, c: ContainerDep, tenant: TenantDep
) -> MessageReply:
    c.chat.delete_session(tenant, namespace, project, session_id)
    return MessageReply(message=f"Session {session_id} deleted")


@router.delete("/chat/sessions", response_model=DeletedSessions)
def delete_sessions(
    namespace: str, project: str, c: ContainerDep, tenant: TenantDep
) -> DeletedSessions:
    n = c.chat.delete_sessions(tenant, namespace, project)
    return DeletedSessions(message=f"Deleted {n} session(s)", count=n)


@router.get("/models", response_model=ModelList)
def list_models(namespace: str, project: str, c: ContainerDep, tenant: TenantDep) -> ModelList:
    models = c.chat.models(tenant, namespace, project)
    return ModelList(
        total=len(models),
        models=[
            ModelInfo(
                name=m.name,
                provider=m.provider,
                model=m.model,
                base_url=m.base_url,
                default=m.default,
                description=m.description,
            )
            for m in models
        ],
    )
