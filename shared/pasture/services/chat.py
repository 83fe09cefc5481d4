"""Chat: one turn of a conversation, dialect-neutral.

A turn is prepared first (project, model, session history, retrieval, prompt window), so every
input error surfaces before a dialect starts streaming; then it yields text deltas and one
final ChatResult, and stores the exchange in the session.

Prompt layout: the system prompt (the request's, else the project's), as much recent history
as fits, then the new messages; retrieved knowledge goes into the last user message as numbered
sources (small models use context next to the question far better than in a system prompt).
Stored history keeps the user's own words, never the sources.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pasture.domain.chat import (
    ChatMessage,
    ChatResult,
    Completion,
    GenerationParams,
    Reference,
    TextDelta,
)
from pasture.domain.errors import Invalid, NotFound
from pasture.domain.projects import ModelConfig, ProjectConfig
from pasture.domain.search import SearchHit
from pasture.ports import ChatModel, Record, Records
from pasture.services import keys
from pasture.services.models import ModelCatalog
from pasture.services.projects import ProjectService
from pasture.services.retrieval import RetrievalRequest, RetrievalService

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
DEFAULT_RAG_TOP_K = 5
# The least room a completion gets; below it the request cannot be served at all.
MIN_COMPLETION_TOKENS = 16
_MAX_QUERY_CHARS = 2000
T = TypeVar("T")


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    rag_enabled: bool | None = None
    database: str | None = None
    rag_top_k: int | None = None
    rag_score_threshold: float | None = None


@dataclass(frozen=True)
class Session:
    session_id: str
    messages: list[ChatMessage]
    created_at: float
    updated_at: float


@dataclass
class ChatTurn:
    """A prepared turn: run it once, with `events()` (stream) or `result()`."""

    id: str
    created: int
    model_config: ModelConfig
    model: ChatModel
    prompt: list[ChatMessage]
    params: GenerationParams
    session_id: str | None
    rag_used: bool
    references: tuple[Reference, ...]
    _save: Callable[[str], None]

    def _result(self, c: Completion) -> ChatResult:
        return ChatResult(
            id=self.id,
            created=self.created,
            model=self.model_config.name,
            text=c.text,
            finish_reason=c.finish_reason,
            usage=c.usage,
            session_id=self.session_id,
            references=self.references,
        )

    async def result(self) -> ChatResult:
        c = await self.model.complete(self.prompt, self.params)
        self._save(c.text)
        return self._result(c)

    async def started(self) -> AsyncIterator[TextDelta | ChatResult]:
        """`events()` with its first item already produced: a model that cannot start (server
        unreachable, prompt refused) fails here, while the caller can still answer with an
        error status instead of a stream. Costs nothing: the first token is awaited anyway."""
        events = self.events()
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()  # type: ignore[attr-defined]
            raise

        async def chained() -> AsyncIterator[TextDelta | ChatResult]:
            try:
                yield first
                async for item in events:
                    yield item
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        return chained()

    async def events(self) -> AsyncIterator[TextDelta | ChatResult]:
        stream = self.model.stream(self.prompt, self.params)
        try:
            async for item in stream:
                if isinstance(item, Completion):
                    self._save(item.text)
                    yield self._result(item)
                    return
                yield item
        finally:
            # Stops the model when our consumer goes away (client disconnect).
            await stream.aclose()  # type: ignore[attr-defined]


class ChatService:
    def __init__(
        self,
        records: Records,
        projects: ProjectService,
        retrieval: RetrievalService,
        catalog: ModelCatalog,
        *,
        default_max_tokens: int,
        session_ttl: float,
        session_max_messages: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._projects = projects
        self._retrieval = retrieval
        self.catalog = catalog
        self._max_tokens = default_max_tokens
        self._ttl = session_ttl
        self._max_messages = session_max_messages
        self._clock = clock

    # ------------------------------------------------------------------ models

    def models(self, tenant: str, namespace: str, project: str) -> list[ModelConfig]:
        return ModelCatalog.configured(self._projects.config(tenant, namespace, project))

    # ------------------------------------------------------------------ turns

    async def start(
        self,
        tenant: str,
        namespace: str,
        project: str,
        req: ChatRequest,
        *,
        session_id: str | None,
        stateless: bool,
    ) -> ChatTurn:
        _validate(req)
        cfg = self._projects.config(tenant, namespace, project)
        mc, model = await asyncio.to_thread(self.catalog.resolve, cfg, req.model)
        if stateless:
            sid: str | None = None
            history: list[ChatMessage] = []
        else:
            sid = check_session_id(session_id) if session_id else str(uuid.uuid4())
            found = self._load(tenant, namespace, project, sid)
            history = found.messages if found else []

        system = [m for m in req.messages if m.role == "system"]
        incoming = [m for m in req.messages if m.role != "system"]
        # Clients that resend the whole conversation with the session header: only the part
        # after the stored history is new.
        if history and incoming[: len(history)] == history and len(incoming) > len(history):
            incoming = incoming[len(history) :]
        if not incoming or incoming[-1].role != "user":
            raise Invalid("the last message must be a user message")
        system_text = "\n\n".join(m.content for m in system) or _project_system_prompt(cfg)

        rag = _rag_enabled(cfg, req)
        hits: list[SearchHit] = []
        if rag:
            result = await asyncio.to_thread(
                self._retrieval.query,
                tenant,
                namespace,
                project,
                RetrievalRequest(
                    query=incoming[-1].content[-_MAX_QUERY_CHARS:],
                    database=req.database,
                    top_k=req.rag_top_k or DEFAULT_RAG_TOP_K,
                    score_threshold=req.rag_score_threshold,
                ),
            )
            hits = result.hits

        max_tokens = req.max_tokens or self._max_tokens
        prompt, used_hits, room = _fit(model, system_text, history, incoming, hits, max_tokens)
        params = GenerationParams(
            max_tokens=min(max_tokens, room),
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            stop=req.stop,
            seed=req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )
        refs = tuple(_reference(i + 1, h) for i, h in enumerate(used_hits))

        def save(answer: str) -> None:
            if sid is not None:
                self._append(
                    tenant,
                    namespace,
                    project,
                    sid,
                    [*incoming, ChatMessage("assistant", answer)],
                    mc.name,
                )

        return ChatTurn(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(self._clock()),
            model_config=mc,
            model=model,
            prompt=prompt,
            params=params,
            session_id=sid,
            rag_used=rag,
            references=refs,
            _save=save,
        )

    # ------------------------------------------------------------------ sessions

    def _load(self, tenant: str, namespace: str, project: str, sid: str) -> Session | None:
        rec = self._records.get(keys.chat_sessions(tenant, namespace, project), sid)
        if rec is None:
            return None
        d = rec.data
        return Session(
            sid,
            [ChatMessage(m["role"], m["content"]) for m in d["messages"]],
            d["created_at"],
            d["updated_at"],
        )

    def _append(
        self,
        tenant: str,
        namespace: str,
        project: str,
        sid: str,
        messages: Sequence[ChatMessage],
        model: str,
    ) -> None:
        # Read-modify-write with no await in between: two turns of one session running at
        # once in this process both land, in the order they finish.
        now = self._clock()
        current = self._load(tenant, namespace, project, sid)
        stored = [*(current.messages if current else []), *messages][-self._max_messages :]
        self._records.put(
            Record(
                keys.chat_sessions(tenant, namespace, project),
                sid,
                {
                    "messages": [m.as_dict() for m in stored],
                    "created_at": current.created_at if current else now,
                    "updated_at": now,
                    "model": model,
                },
                expires_at=now + self._ttl,  # sliding: every turn pushes expiry out
            ),
            if_absent=False,
        )

    def history(self, tenant: str, namespace: str, project: str, session_id: str) -> Session:
        self._projects.config(tenant, namespace, project)
        found = self._load(tenant, namespace, project, check_session_id(session_id))
        if found is None:
            raise NotFound(f"Session {session_id} not found")
        return found

    def delete_session(self, tenant: str, namespace: str, project: str, session_id: str) -> None:
        self._projects.config(tenant, namespace, project)
        sid = check_session_id(session_id)
        if self._load(tenant, namespace, project, sid) is None:
            raise NotFound(f"Session {session_id} not found")
        self._records.delete(keys.chat_sessions(tenant, namespace, project), sid)

    def delete_sessions(self, tenant: str, namespace: str, project: str) -> int:
        """Every live session of the project; returns how many there were."""
        self._projects.config(tenant, namespace, project)
        return self.purge_sessions(tenant, namespace, project)

    def purge_sessions(self, tenant: str, namespace: str, project: str) -> int:
        """Like delete_sessions, without requiring the project (used when deleting it)."""
        pk = keys.chat_sessions(tenant, namespace, project)
        return sum(self._records.delete(pk, r.sk) for r in self._records.query(pk, "", limit=None))


# ---------------------------------------------------------------------- helpers


def check_session_id(value: str) -> str:
    if not SESSION_ID_RE.fullmatch(value):
        raise Invalid(
            "invalid session id: use 1-128 letters, digits, '.', '_', ':' or '-',"
            " starting with a letter or digit"
        )
    return value


def _validate(req: ChatRequest) -> None:
    if not req.messages:
        raise Invalid("messages must not be empty")
    for m in req.messages:
        if m.role not in ("system", "user", "assistant"):
            raise Invalid(f"unsupported message role {m.role!r} (use system, user or assistant)")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise Invalid("max_tokens must be at least 1")
    if req.temperature is not None and not 0.0 <= req.temperature <= 2.0:
        raise Invalid("temperature must be between 0 and 2")
    if req.top_p is not None and not 0.0 < req.top_p <= 1.0:
        raise Invalid("top_p must be greater than 0 and at most 1")
    if req.top_k is not None and req.top_k < 0:
        raise Invalid("top_k must be 0 (disabled) or positive")
    for name, v in (
        ("presence_penalty", req.presence_penalty),
        ("frequency_penalty", req.frequency_penalty),
    ):
        if v is not None and not -2.0 <= v <= 2.0:
            raise Invalid(f"{name} must be between -2 and 2")
    if len(req.stop) > 4 or any(not s for s in req.stop):
        raise Invalid("stop takes at most 4 non-empty strings")
    if req.rag_top_k is not None and not 1 <= req.rag_top_k <= 100:
        raise Invalid("rag_top_k must be between 1 and 100")
    if req.rag_score_threshold is not None and not 0.0 <= req.rag_score_threshold <= 1.0:
        raise Invalid("rag_score_threshold must be between 0 and 1")


def _project_system_prompt(cfg: ProjectConfig) -> str:
    """System text from `prompts`: llamafarm.yaml has both `[{role, content}]` and
    `[{name, messages: [{role, content}]}]` forms."""
    parts: list[str] = []
    for p in cfg.prompts:
        for m in p.get("messages", [p]) if isinstance(p, dict) else []:
            if isinstance(m, dict) and m.get("role") == "system" and m.get("content"):
                parts.append(str(m["content"]))
    return "\n\n".join(parts)


def _rag_enabled(cfg: ProjectConfig, req: ChatRequest) -> bool:
    if req.rag_enabled is not None:
        if req.rag_enabled and not cfg.database_names():
            raise Invalid("rag_enabled is true but the project has no RAG database configured")
        return req.rag_enabled
    if req.database is not None:  # naming a database is asking for retrieval
        return True
    default = bool((cfg.model_extra or {}).get("rag_enabled_by_default", False))
    return default and bool(cfg.database_names())


def _with_sources(question: ChatMessage, hits: Sequence[SearchHit]) -> ChatMessage:
    if not hits:
        return question
    lines = ["Sources:"]
    for i, h in enumerate(hits, 1):
        name = h.metadata.get("filename") or h.document_id
        lines.append(f"[{i}] ({name}) {' '.join(h.text.split())}")
    lines += [
        "",
        "Answer the question using the sources above when they are relevant; cite them like [1].",
        "",
        f"Question: {question.content}",
    ]
    return ChatMessage("user", "\n".join(lines))


def _fit(
    model: ChatModel,
    system: str,
    history: list[ChatMessage],
    new: list[ChatMessage],
    hits: list[SearchHit],
    max_tokens: int,
) -> tuple[list[ChatMessage], list[SearchHit], int]:
    """LlamaFarm's layout: sources next to the question in the last user message."""
    head = [ChatMessage("system", system)] if system else []

    def build(hist: list[ChatMessage], kept: list[SearchHit]) -> list[ChatMessage]:
        return [*head, *hist, *new[:-1], _with_sources(new[-1], kept)]

    return fit_window(model, build, history, hits, max_tokens)


def fit_window(
    model: ChatModel,
    build: Callable[[list[ChatMessage], list[T]], list[ChatMessage]],
    history: list[ChatMessage],
    items: list[T],
    max_tokens: int,
) -> tuple[list[ChatMessage], list[T], int]:
    """The prompt `build(history kept, items kept)` that fits the model's context, the items
    kept, and the room left for the answer.

    The completion is promised min(max_tokens, half the context); the weakest items (the last
    ones) go first, then history, oldest whole turns first. Only a prompt that cannot fit even
    with neither is an error.
    """
    ctx = model.context_length
    budget = ctx - min(max_tokens, ctx // 2)
    kept = list(items)
    used = model.count_tokens(build([], kept))
    while kept and used > budget:
        kept.pop()
        used = model.count_tokens(build([], kept))
    prompt = build([], kept)
    if history and used <= budget:
        # Keep the longest recent suffix of whole turns that fits (binary search: the
        # count is monotone in how much history is kept). Each count is taken once.
        starts = [i for i, m in enumerate(history) if m.role == "user"] or [0]
        starts.append(len(history))  # the last start keeps no history: `used` fits
        counts = {len(starts) - 1: used}
        lo, hi = 0, len(starts) - 1  # index into starts: keep history[starts[i]:]
        while lo < hi:
            mid = (lo + hi) // 2
            counts[mid] = model.count_tokens(build(history[starts[mid] :], kept))
            if counts[mid] <= budget:
                hi = mid
            else:
                lo = mid + 1
        prompt, used = build(history[starts[lo] :], kept), counts[lo]
    room = ctx - used
    if room < MIN_COMPLETION_TOKENS:
        raise Invalid(
            f"the messages take {used} tokens; model {model.name!r} holds {ctx} in all,"
            " so there is no room for an answer: shorten them"
        )
    return prompt, kept, room


def _reference(number: int, h: SearchHit) -> Reference:
    md = h.metadata
    return Reference(
        number=number,
        chunk_id=h.chunk_id,
        dataset_id=h.dataset_id,
        document_id=h.document_id,
        document_name=str(md.get("filename") or h.document_id),
        text=h.text,
        score=h.score,
        keyword_score=h.keyword_score,
        vector_score=h.vector_score,
    )


__all__ = ["ChatRequest", "ChatService", "ChatTurn", "Session", "check_session_id", "fit_window"]
