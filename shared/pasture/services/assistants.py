"""Chat assistants (RAGFlow's "chats"): a name, datasets, LLM settings and a prompt, with
persistent sessions; a turn retrieves from the datasets, fills `{knowledge}` in the system
prompt, generates, and cites the chunks that support each sentence of the answer.

Agents (services/agents.py) run their retrieve -> generate steps through the same turn.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pasture.domain.chat import ChatMessage, Completion, GenerationParams, TextDelta
from pasture.domain.errors import Conflict, Invalid, NotFound
from pasture.domain.projects import ModelConfig
from pasture.ports import ChatModel, Embedder, Record, Records
from pasture.services import keys
from pasture.services.chat import fit_window
from pasture.services.citations import insert_citations
from pasture.services.dataset_search import (
    MAX_TOP_K,
    DatasetSearch,
    DatasetSearchService,
    ScoredChunk,
)
from pasture.services.datasets import DatasetService
from pasture.services.models import SERVER_DEFAULT, ModelCatalog

OPENER = "Hi! I'm your assistant, what can I do for you?"
EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
# Short and factual: SmolLM2-class models answer from a knowledge base put this way, and
# copy a long "say it is not found" instruction instead of answering.
DEFAULT_SYSTEM = (
    "You are a helpful assistant. Use the knowledge base below to answer the user's question"
    " with its facts.\n\nKnowledge base:\n{knowledge}"
)
DEFAULT_LLM: dict[str, Any] = {
    "model_name": None,
    "temperature": 0.1,
    "top_p": 0.3,
    "presence_penalty": 0.4,
    "frequency_penalty": 0.7,
    "max_tokens": 512,
}
DEFAULT_PROMPT: dict[str, Any] = {
    "similarity_threshold": 0.2,
    "keywords_similarity_weight": 0.7,
    "top_n": 6,
    "variables": [{"key": "knowledge", "optional": True}],
    "rerank_model": "",
    "empty_response": EMPTY_RESPONSE,
    "opener": OPENER,
    "show_quote": True,
    "prompt": DEFAULT_SYSTEM,
}
_NUMBERS = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "similarity_threshold": (0.0, 1.0),
    "keywords_similarity_weight": (0.0, 1.0),
}
_MAX_HISTORY_MESSAGES = 200
_CITATION = re.compile(r" ?##\d+\$\$")


def record_data(value: Any) -> dict[str, Any]:
    """A dataclass's fields as a Records item; the tenant is in the key, not the item."""
    return {f.name: getattr(value, f.name) for f in fields(value) if f.name != "tenant"}


@dataclass(frozen=True)
class Assistant:
    tenant: str
    id: str
    name: str
    avatar: str
    description: str
    dataset_ids: list[str]
    llm: dict[str, Any]
    prompt: dict[str, Any]
    top_k: int
    created_at: float
    updated_at: float

    def data(self) -> dict[str, Any]:
        return record_data(self)

    @classmethod
    def of(cls, tenant: str, d: Mapping[str, Any]) -> Assistant:
        return cls(tenant=tenant, **dict(d))


@dataclass(frozen=True)
class Conversation:
    """A session of an assistant or agent; `messages` carry `reference` on answers."""

    id: str
    owner_id: str
    kind: str  # "chat" | "agent"
    name: str
    user_id: str
    messages: list[dict[str, Any]]
    created_at: float
    updated_at: float
    variables: dict[str, Any] = field(default_factory=dict)  # an agent's Begin inputs

    def data(self) -> dict[str, Any]:
        return record_data(self)


@dataclass(frozen=True)
class TurnResult:
    answer: str
    reference: dict[str, Any]
    prompt: str


@dataclass
class AssistantTurn:
    """A prepared turn; run it once with `events()` (cumulative streaming) or `result()`."""

    session_id: str
    message_id: str
    fixed_answer: str | None  # opener or empty_response: no model call
    model: ChatModel | None = None
    prompt: list[ChatMessage] = field(default_factory=list)
    params: GenerationParams | None = None
    chunks: list[ScoredChunk] = field(default_factory=list)
    cite: bool = True
    _finish: Callable[[str], TurnResult] | None = None

    async def events(self) -> AsyncIterator[TextDelta | TurnResult]:
        if self.fixed_answer is not None:
            assert self._finish is not None
            yield TextDelta(self.fixed_answer)
            yield self._finish(self.fixed_answer)
            return
        assert self.model is not None and self.params is not None and self._finish
        stream = self.model.stream(self.prompt, self.params)
        try:
            async for item in stream:
                if isinstance(item, Completion):
                    yield await asyncio.to_thread(self._finish, item.text)
                    return
                yield item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def result(self) -> TurnResult:
        last: TurnResult | None = None
        async for item in self.events():
            if isinstance(item, TurnResult):
                last = item
        assert last is not None
        return last


def _merge(defaults: Mapping[str, Any], given: Any, what: str) -> dict[str, Any]:
    if given is None:
        return dict(defaults)
    if not isinstance(given, dict):
        raise Invalid(f"`{what}` must be an object")
    return {**defaults, **given}


class AssistantService:
    def __init__(
        self,
        records: Records,
        datasets: DatasetService,
        search: DatasetSearchService,
        embedder: Embedder,
        catalog: ModelCatalog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._datasets = datasets
        self._search = search
        self._embedder = embedder
        self._catalog = catalog
        self._clock = clock

    # ------------------------------------------------------------------ models

    def model_config(self, model_name: Any) -> ModelConfig:
        """The model an assistant's `llm.model_name` names; None means the server default."""
        if model_name in (None, ""):
            return SERVER_DEFAULT
        if not isinstance(model_name, str):
            raise Invalid("`model_name` must be a string")
        name = model_name.split("@")[0]  # RAGFlow writes `model@provider`
        if name in (SERVER_DEFAULT.name, SERVER_DEFAULT.model):
            return SERVER_DEFAULT
        mc = ModelConfig(name=name, provider="llamacpp", model=name)
        try:
            self._catalog.check(mc)
        except Invalid:
            raise Invalid(f"`model_name` {model_name} doesn't exist") from None
        return mc

    # ------------------------------------------------------------------ assistants

    def _check_datasets(self, tenant: str, ids: Any) -> list[str]:
        if ids is None:
            return []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise Invalid("`dataset_ids` should be a list")
        out = list(dict.fromkeys(ids))
        for ds_id in out:
            if self.dataset(tenant, ds_id) is None:
                raise NotFound(f"You don't own the dataset {ds_id}")
            docs = self._datasets.documents(tenant, ds_id)
            if not any(d.chunk_count for d in docs):
                raise Invalid(f"The dataset {ds_id} doesn't own parsed file")
        return out

    def _check_settings(self, llm: dict[str, Any], prompt: dict[str, Any]) -> None:
        llm["model_name"] = self.model_config(llm.get("model_name")).model
        for section in (llm, prompt):
            for key, (lo, hi) in _NUMBERS.items():
                if key in section and section[key] is not None:
                    v = section[key]
                    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                        raise Invalid(f"`{key}` must be a number between {lo:g} and {hi:g}")
        mt = llm.get("max_tokens")
        if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or mt < 1):
            raise Invalid("`max_tokens` must be a positive integer")
        top_n = prompt.get("top_n")
        if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= 64:
            raise Invalid("`top_n` must be an integer between 1 and 64")
        if prompt.get("rerank_model"):
            raise Invalid(f"`rerank_model` {prompt['rerank_model']} doesn't exist")
        for key in ("opener", "empty_response", "prompt"):
            if prompt.get(key) is None:
                prompt[key] = ""  # RAGFlow keeps an explicit null as "nothing"
            elif not isinstance(prompt[key], str):
                raise Invalid(f"`{key}` must be a string")
        variables = prompt.get("variables") or []
        if not isinstance(variables, list) or not all(
            isinstance(v, dict) and isinstance(v.get("key"), str) for v in variables
        ):
            raise Invalid("`variables` must be a list of {key, optional}")
        for v in variables:
            if not v.get("optional", False) and "{" + v["key"] + "}" not in prompt["prompt"]:
                raise Invalid(f"Parameter '{v['key']}' is not used")

    def _claim(self, tenant: str, name: str, assistant_id: str, creating: bool) -> None:
        try:
            self._records.put(
                Record(keys.assistant_names(tenant), name.lower(), {"id": assistant_id}),
                if_absent=True,
            )
        except Conflict:
            verb = "creating" if creating else "updating"
            raise Conflict(f"Duplicated chat name in {verb} chat.") from None

    def create(self, tenant: str, fields: Mapping[str, Any]) -> Assistant:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip():
            raise Invalid("`name` is required.")
        dataset_ids = self._check_datasets(tenant, fields.get("dataset_ids"))
        llm = _merge(DEFAULT_LLM, fields.get("llm"), "llm")
        prompt = _merge(DEFAULT_PROMPT, fields.get("prompt"), "prompt")
        self._check_settings(llm, prompt)
        now = self._clock()
        a = Assistant(
            tenant,
            uuid.uuid1().hex,
            name.strip(),
            str(fields.get("avatar") or ""),
            str(fields.get("description") or "A helpful Assistant"),
            dataset_ids,
            llm,
            prompt,
            MAX_TOP_K,
            now,
            now,
        )
        self._records.put(Record(keys.assistants(tenant), a.id, a.data()), if_absent=True)
        try:
            self._claim(tenant, a.name, a.id, creating=True)
        except Conflict:
            self._records.delete(keys.assistants(tenant), a.id)
            raise
        return a

    def get(self, tenant: str, assistant_id: str) -> Assistant:
        rec = self._records.get(keys.assistants(tenant), assistant_id) if assistant_id else None
        if rec is None:
            raise NotFound(f"You don't own the chat {assistant_id}")
        return Assistant.of(tenant, rec.data)

    def all(self, tenant: str) -> list[Assistant]:
        return [
            Assistant.of(tenant, r.data)
            for r in self._records.query(keys.assistants(tenant), "", limit=None)
        ]

    def update(self, tenant: str, assistant_id: str, fields: Mapping[str, Any]) -> Assistant:
        a = self.get(tenant, assistant_id)
        name = a.name
        if "name" in fields:
            if not isinstance(fields["name"], str) or not fields["name"].strip():
                raise Invalid("`name` cannot be empty.")
            name = fields["name"].strip()
        dataset_ids = (
            self._check_datasets(tenant, fields["dataset_ids"])
            if "dataset_ids" in fields
            else a.dataset_ids
        )
        llm = _merge(a.llm, fields.get("llm"), "llm")
        prompt = _merge(a.prompt, fields.get("prompt"), "prompt")
        self._check_settings(llm, prompt)
        new = Assistant(
            tenant,
            a.id,
            name,
            str(fields.get("avatar", a.avatar) or ""),
            str(fields.get("description", a.description) or ""),
            dataset_ids,
            llm,
            prompt,
            a.top_k,
            a.created_at,
            self._clock(),
        )
        if name.lower() != a.name.lower():
            self._claim(tenant, name, a.id, creating=False)
            self._records.put(Record(keys.assistants(tenant), a.id, new.data()), if_absent=False)
            self._records.delete(keys.assistant_names(tenant), a.name.lower())
        else:
            self._records.put(Record(keys.assistants(tenant), a.id, new.data()), if_absent=False)
        return new

    def delete(self, tenant: str, ids: list[str] | None) -> int:
        targets = (
            self.all(tenant) if ids is None else [self.get(tenant, i) for i in dict.fromkeys(ids)]
        )
        for a in targets:
            self.purge_conversations(tenant, a.id)
            self._records.delete(keys.assistants(tenant), a.id)
            self._records.delete(keys.assistant_names(tenant), a.name.lower())
        return len(targets)

    # ------------------------------------------------------------------ conversations

    def dataset(self, tenant: str, dataset_id: str) -> Any:
        """The tenant-level dataset with this id, or None."""
        ds = self._datasets.by_id(tenant, dataset_id)
        return ds if ds is not None and not ds.in_project else None

    def new_conversation(
        self,
        tenant: str,
        owner_id: str,
        kind: str,
        name: Any,
        user_id: Any,
        opener: str,
        variables: Mapping[str, Any] | None = None,
    ) -> Conversation:
        if name is None:
            name = "New session"
        if not isinstance(name, str) or not name.strip():
            raise Invalid("`name` can not be empty.")
        now = self._clock()
        conv = Conversation(
            uuid.uuid1().hex,
            owner_id,
            kind,
            name.strip(),
            str(user_id or ""),
            [{"role": "assistant", "content": opener}] if opener else [],
            now,
            now,
            dict(variables or {}),
        )
        self.save_conversation(tenant, conv)
        return conv

    def save_conversation(self, tenant: str, conv: Conversation) -> None:
        self._records.put(
            Record(keys.conversations(tenant, conv.owner_id), conv.id, conv.data()),
            if_absent=False,
        )

    def conversation(self, tenant: str, owner_id: str, session_id: str) -> Conversation:
        rec = (
            self._records.get(keys.conversations(tenant, owner_id), session_id)
            if session_id
            else None
        )
        if rec is None:
            raise NotFound(f"The session {session_id} doesn't exist")
        return Conversation(**dict(rec.data))

    def conversations(self, tenant: str, owner_id: str) -> list[Conversation]:
        return [
            Conversation(**dict(r.data))
            for r in self._records.query(keys.conversations(tenant, owner_id), "", limit=None)
        ]

    def delete_conversations(self, tenant: str, owner_id: str, ids: list[str] | None) -> int:
        if ids is None:
            return self.purge_conversations(tenant, owner_id)
        pk = keys.conversations(tenant, owner_id)
        wanted = list(dict.fromkeys(ids))
        for i in wanted:
            if self._records.get(pk, i) is None:
                raise NotFound(f"The chat doesn't own the session {i}")
        return sum(self._records.delete(pk, i) for i in wanted)

    def purge_conversations(self, tenant: str, owner_id: str) -> int:
        pk = keys.conversations(tenant, owner_id)
        return sum(self._records.delete(pk, r.sk) for r in self._records.query(pk, "", limit=None))

    # ------------------------------------------------------------------ turns

    async def ask(
        self,
        tenant: str,
        assistant_id: str,
        question: Any,
        session_id: Any,
        user_id: Any = None,
        variables: Mapping[str, Any] | None = None,
    ) -> AssistantTurn:
        a = await asyncio.to_thread(self.get, tenant, assistant_id)
        return await self.turn(
            tenant,
            owner_id=a.id,
            kind="chat",
            dataset_ids=a.dataset_ids,
            llm=a.llm,
            prompt=a.prompt,
            top_k=a.top_k,
            question=question,
            session_id=session_id,
            user_id=user_id,
            variables=variables or {},
        )

    async def turn(
        self,
        tenant: str,
        *,
        owner_id: str,
        kind: str,
        dataset_ids: list[str],
        llm: Mapping[str, Any],
        prompt: Mapping[str, Any],
        top_k: int,
        question: Any,
        session_id: Any,
        user_id: Any,
        variables: Mapping[str, Any],
        session_variables: Mapping[str, Any] | None = None,
    ) -> AssistantTurn:
        """Everything that can fail is checked here, before a dialect starts streaming.
        `session_variables` are kept with a session this turn creates (an agent's inputs)."""
        if question is not None and not isinstance(question, str):
            raise Invalid("`question` must be a string")
        if session_id is not None and not isinstance(session_id, str):
            raise Invalid("`session_id` must be a string")
        message_id = str(uuid.uuid4())

        async def new_session() -> Conversation:
            return await asyncio.to_thread(
                self.new_conversation,
                tenant,
                owner_id,
                kind,
                None,
                user_id,
                prompt.get("opener") or "",
                session_variables,
            )

        if not session_id and not question:
            # No question and no session: the new session's greeting is the answer.
            conv = await new_session()
            opener = prompt.get("opener") or ""
            return AssistantTurn(
                conv.id,
                message_id,
                opener,
                _finish=lambda _text: TurnResult(opener, {}, ""),
            )
        # A session this turn would create is created only once every check has passed.
        found = (
            await asyncio.to_thread(self.conversation, tenant, owner_id, session_id)
            if session_id
            else None
        )
        if not question or not question.strip():
            # RAGFlow's two wordings: chats and agents answer this differently.
            raise Invalid(
                "Please input your question." if kind == "chat" else "`question` is required."
            )
        # RAGFlow checks the prompt's variables before retrieving anything.
        declared = {v["key"]: v for v in prompt.get("variables") or []}
        for key, v in declared.items():
            if key != "knowledge" and key not in variables and not v.get("optional", False):
                raise Invalid(f"Miss parameter: {key}")

        mc = self.model_config(llm.get("model_name"))
        model = await asyncio.to_thread(self._catalog.load, mc)
        chunks: list[ScoredChunk] = []
        live = [i for i in dataset_ids if self.dataset(tenant, i) is not None]
        if live:
            w_kw = float(prompt.get("keywords_similarity_weight", 0.7))
            result = await asyncio.to_thread(
                self._search.search,
                tenant,
                DatasetSearch(
                    question=question,
                    dataset_ids=tuple(live),
                    page=1,
                    page_size=int(prompt.get("top_n", 6)),
                    similarity_threshold=float(prompt.get("similarity_threshold", 0.2)),
                    vector_similarity_weight=1.0 - w_kw,
                    top_k=top_k,
                ),
            )
            chunks = result.chunks
        empty = prompt.get("empty_response") or ""
        if dataset_ids and not chunks and empty:
            conv = found or await new_session()
            return AssistantTurn(
                conv.id,
                message_id,
                empty,
                _finish=self._finisher(tenant, conv, question, message_id, [], False, ""),
            )

        system_template = str(prompt.get("prompt") or "")

        def build(hist: list[ChatMessage], kept: list[ScoredChunk]) -> list[ChatMessage]:
            # Variables first: text inside retrieved chunks is never treated as a template.
            system = system_template
            for key in declared:
                if key != "knowledge":
                    system = system.replace("{" + key + "}", str(variables.get(key, " ")))
            system = system.replace("{knowledge}", _knowledge(kept))
            head = [ChatMessage("system", system)] if system.strip() else []
            return [*head, *hist, ChatMessage("user", question)]

        history = _history(found.messages) if found else []
        max_tokens = int(llm.get("max_tokens") or 512)
        messages, kept, room = fit_window(model, build, history, chunks, max_tokens)
        conv = found or await new_session()
        params = GenerationParams(
            max_tokens=min(max_tokens, room),
            temperature=llm.get("temperature"),
            top_p=llm.get("top_p") or None,
            presence_penalty=llm.get("presence_penalty"),
            frequency_penalty=llm.get("frequency_penalty"),
        )
        prompt_text = "\n\n".join(f"{m.role}: {m.content}" for m in messages)
        cite = bool(prompt.get("show_quote", True))
        return AssistantTurn(
            conv.id,
            message_id,
            None,
            model,
            messages,
            params,
            kept,
            cite,
            self._finisher(tenant, conv, question, message_id, kept, cite, prompt_text),
        )

    def _finisher(
        self,
        tenant: str,
        conv: Conversation,
        question: str,
        message_id: str,
        chunks: list[ScoredChunk],
        cite: bool,
        prompt_text: str,
    ) -> Callable[[str], TurnResult]:
        def finish(answer: str) -> TurnResult:
            if cite and chunks:
                answer, _ = insert_citations(answer, [c.hit.text for c in chunks], self._embed_list)
            reference = reference_of(chunks)
            current = self.conversation(tenant, conv.owner_id, conv.id)
            messages = [
                *current.messages,
                {"role": "user", "content": question, "id": message_id},
                {"role": "assistant", "content": answer, "id": message_id, "reference": reference},
            ][-_MAX_HISTORY_MESSAGES:]
            self.save_conversation(
                tenant, replace(current, messages=messages, updated_at=self._clock())
            )
            return TurnResult(answer, reference, prompt_text)

        return finish

    def _embed_list(self, texts: list[str]) -> Any:
        return self._embedder.embed(texts)


def _knowledge(chunks: list[ScoredChunk]) -> str:
    return "\n------\n".join(f"Document: {c.document_name}\n{c.hit.text}" for c in chunks)


def _history(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for m in messages:
        if m.get("role") not in ("user", "assistant"):
            continue
        if not out and m["role"] == "assistant":
            continue  # the opener is not part of the conversation the model sees
        out.append(ChatMessage(m["role"], _CITATION.sub("", str(m.get("content", "")))))
    return out


def reference_of(chunks: list[ScoredChunk]) -> dict[str, Any]:
    aggs: dict[str, dict[str, Any]] = {}
    for c in chunks:
        a = aggs.setdefault(
            c.hit.document_id,
            {"doc_name": c.document_name, "doc_id": c.hit.document_id, "count": 0},
        )
        a["count"] += 1
    return {
        "total": len(chunks),
        "chunks": [
            {
                "id": c.hit.chunk_id,
                "content": c.hit.text,
                "document_id": c.hit.document_id,
                "document_name": c.document_name,
                "dataset_id": c.hit.dataset_id,
                "image_id": "",
                "similarity": c.similarity,
                "vector_similarity": c.vector_similarity,
                "term_similarity": c.term_similarity,
                "positions": [],
            }
            for c in chunks
        ],
        "doc_aggs": sorted(aggs.values(), key=lambda a: -a["count"]),
    }
