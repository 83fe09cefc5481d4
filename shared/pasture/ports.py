"""The small, mandatory interfaces between services and the outside world.

Every port takes and returns domain values. Adapters are named `<Backend><Port>` and live in
`adapters/`; each port has one contract suite in `tests/contract/` that every adapter must pass.
Shared behaviour (the hybrid fusion of SearchIndex) sits in a base method over abstract `_...`
primitives, so no adapter can get it subtly different.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO

from pasture.domain.chat import ChatMessage, Completion, GenerationParams, TextDelta
from pasture.domain.search import (
    IndexedChunk,
    RetrievalMode,
    Scalar,
    SearchHit,
    SearchQuery,
    fuse,
)
from pasture.domain.speech import AudioClip, Transcript
from pasture.domain.web import WebPage, WebResult

if TYPE_CHECKING:
    # A numpy type alias, for annotations only: importing numpy here would load it in
    # every process (see pasture.domain.search).
    from pasture.domain.search import Vector

# --------------------------------------------------------------------------- BlobStore


class BlobStore(ABC):
    """Opaque bytes by key. Keys are `/`-separated paths chosen by services."""

    @abstractmethod
    def put(self, key: str, stream: BinaryIO) -> int:
        """Store everything readable from `stream` under `key` (replacing); returns the size.

        Streams: never holds the whole object in memory. Atomic: a reader sees the old
        object or the new one, never a partial write.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; raises NotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove one object; False when there was none."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`; returns how many."""


# --------------------------------------------------------------------------- Records


@dataclass(frozen=True)
class Record:
    """One item of a single-table store, DynamoDB style: partition key, sort key, attributes.

    `expires_at` (epoch seconds) makes the item invisible once past, like DynamoDB TTL
    (which deletes lazily, so readers must filter too).
    """

    pk: str
    sk: str
    data: Mapping[str, Any]
    expires_at: float | None = None


class Records(ABC):
    """Access patterns only DynamoDB can serve cheaply: get by key, query one partition by
    sort-key prefix, conditional put for uniqueness, TTL. No scans."""

    @abstractmethod
    def get(self, pk: str, sk: str) -> Record | None: ...

    @abstractmethod
    def put(self, record: Record, *, if_absent: bool) -> None:
        """Write the item. With `if_absent`, raise Conflict when a live item has this key."""

    @abstractmethod
    def query(self, pk: str, sk_prefix: str, *, limit: int | None) -> list[Record]:
        """Live items of partition `pk` whose sort key starts with `sk_prefix`, by sort key."""

    @abstractmethod
    def delete(self, pk: str, sk: str) -> bool:
        """Remove the item; False when there was none."""


# --------------------------------------------------------------------------- ApiKeyGateway


class ApiKeyGateway(ABC):
    """The API gateway's own copy of a consumer key, where a gateway in front of the API
    checks keys itself (API Gateway with key source AUTHORIZER wants every key the authorizer
    answers with to be one of its API keys, in a usage plan of the stage). Keys are named by
    consumer and key id (services/consumer_keys.py); the secret is only ever written."""

    @abstractmethod
    def register(self, consumer: str, key_id: str, secret: str) -> str | None:
        """Make the gateway accept `secret` as this consumer's key `key_id`; returns the
        gateway's id for it (None where there is no gateway). All or nothing: on failure,
        nothing of it is left behind."""

    @abstractmethod
    def find(self, consumer: str, key_id: str) -> str | None:
        """The gateway's id of this key; None when it has none."""

    @abstractmethod
    def revoke(self, consumer: str, key_id: str) -> None:
        """Stop the gateway accepting this key. Idempotent: a key it does not have is fine."""


# --------------------------------------------------------------------------- SearchIndex


class SearchIndex(ABC):
    """Chunks with text, vector and metadata; hybrid queries scoped to tenant and datasets.

    `query` is shared: candidates come from each side, every candidate gets both component
    scores (so each hit reports its real keyword and vector score), then `fuse` ranks them.
    """

    @abstractmethod
    def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        """Insert or replace chunks by `chunk_id` (deterministic ids make re-runs idempotent)."""

    @abstractmethod
    def delete_document(self, tenant: str, dataset_id: str, document_id: str) -> int: ...

    @abstractmethod
    def delete_dataset(self, tenant: str, dataset_id: str) -> int: ...

    @abstractmethod
    def count(self, tenant: str, dataset_id: str) -> int: ...

    # Chunk-level reads and edits (an edit is an `upsert` of the same chunk id).
    @abstractmethod
    def list_chunks(
        self,
        tenant: str,
        dataset_id: str,
        document_id: str,
        *,
        keywords: str | None,
        chunk_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[IndexedChunk]]:
        """One document's chunks in reading order: metadata `chunk_index` ascending (chunks
        without a numeric one after those with it, in insertion order: the order of their
        latest upsert), then chunk id.

        `keywords` keeps chunks whose text contains it, case-insensitive (a plain substring,
        not FTS syntax: any characters are safe, `%` and `_` match themselves); None or ""
        keeps all. `chunk_id` keeps only that chunk. Returns (total matching, the page
        [offset:offset+limit]), paged by the store, not in memory; returned chunks may carry
        an empty vector (np.zeros((0,), float32)). Negative offset or limit: ValueError.
        """

    @abstractmethod
    def get_chunks(
        self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]
    ) -> dict[str, IndexedChunk]:
        """The stored chunks with these ids in this tenant's dataset, WITH their vectors; ids
        that are not there (or belong to another tenant/dataset) are simply absent."""

    @abstractmethod
    def delete_chunks(self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]) -> int:
        """Remove these chunks (only those of this tenant and dataset) from every structure
        that `query` reads; returns how many were removed. Unknown ids are ignored."""

    # Primitives for `query`. All of them apply tenant, dataset, document and metadata filters.
    @abstractmethod
    def _keyword_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        """Up to k best chunk ids by BM25, as positive raw BM25 scores (higher is better)."""

    @abstractmethod
    def _vector_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        """Up to k nearest chunk ids by cosine similarity to `q.vector`."""

    @abstractmethod
    def _keyword_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        """Raw BM25 of the given chunks for `q.text` (0.0 where no query term occurs)."""

    @abstractmethod
    def _vector_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        """Exact cosine similarity of the given chunks to `q.vector`."""

    @abstractmethod
    def _load(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, IndexedChunk]:
        """The stored chunks of q's tenant and datasets (vector may be empty: callers only
        read ids, text and metadata)."""

    def query(self, q: SearchQuery) -> list[SearchHit]:
        if not q.dataset_ids or q.top_k <= 0:
            return []
        use_vec = q.vector is not None
        # Text without a word (say "?!") has no keyword evidence to weigh.
        use_kw = any(ch.isalnum() for ch in q.text)
        kw = (
            self._keyword_candidates(q, q.candidates)
            if use_kw and q.mode != RetrievalMode.VECTOR
            else {}
        )
        vec = (
            self._vector_candidates(q, q.candidates)
            if use_vec and q.mode != RetrievalMode.KEYWORD
            else {}
        )
        ids = set(kw) | set(vec)
        if not ids:
            return []
        if use_kw and ids - kw.keys():
            kw.update(self._keyword_scores(q, ids - kw.keys()))
        if use_vec and ids - vec.keys():
            vec.update(self._vector_scores(q, ids - vec.keys()))
        best_bm25 = max(kw.values(), default=0.0)
        weight = {
            RetrievalMode.VECTOR: 1.0,
            RetrievalMode.KEYWORD: 0.0,
            RetrievalMode.HYBRID: q.vector_weight,
        }[q.mode]
        if not use_vec:
            weight = 0.0
        elif not use_kw:
            weight = 1.0
        scored: list[tuple[float, float, float, str]] = []
        for cid in ids:
            k_score = kw.get(cid, 0.0) / best_bm25 if best_bm25 > 0 else 0.0
            v_score = max(0.0, vec.get(cid, 0.0))
            score = fuse(v_score, k_score, weight)
            if score >= q.min_score:
                scored.append((score, k_score, v_score, cid))
        scored.sort(key=lambda t: (-t[0], t[3]))
        top = scored[: q.top_k]
        stored = self._load(q, (cid for *_, cid in top))
        hits = []
        for score, k_score, v_score, cid in top:
            c = stored.get(cid)
            if c is None:  # deleted between candidate search and load
                continue
            hits.append(
                SearchHit(
                    chunk_id=cid,
                    dataset_id=c.dataset_id,
                    document_id=c.document_id,
                    text=c.text,
                    metadata=dict(c.metadata),
                    score=score,
                    keyword_score=k_score,
                    vector_score=v_score,
                )
            )
        return hits


# --------------------------------------------------------------------------- Workflow


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class RunSpec:
    """One run: a `kind` (which item handler), its items (e.g. document keys) and a payload.

    `run_id` is the idempotency key: starting the same id twice returns the first run.
    """

    run_id: str
    kind: str
    tenant: str
    items: tuple[str, ...]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemOutcome:
    """What an item handler reports for one item: `ok` False means the item failed (the run
    goes on with the others); `result` is JSON-serialisable detail."""

    ok: bool
    result: Mapping[str, Any]


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    kind: str
    tenant: str
    state: RunState
    total: int
    succeeded: int
    failed: int
    cancelled: int
    results: Mapping[str, Mapping[str, Any]]  # per item; filled once the run has finished
    payload: Mapping[str, Any]
    error: str | None
    created_at: float
    updated_at: float

    @property
    def finished_items(self) -> int:
        return self.succeeded + self.failed + self.cancelled


# A handler processes a batch of a run's items (the workflow decides the batch size, so small
# documents can be embedded together) and reports an outcome for each. `cancelled()` turns True
# once the run is cancelled, so long batches can stop early (items not done report ok=False
# with result {"cancelled": True}).
ItemHandler = Callable[[RunSpec, Sequence[str], Callable[[], bool]], Mapping[str, ItemOutcome]]


class Workflow(ABC):
    """Durable runs of item handlers: started idempotently, observable, cancellable."""

    @abstractmethod
    def start(self, spec: RunSpec) -> RunStatus: ...

    @abstractmethod
    def status(self, run_id: str) -> RunStatus:
        """Raises NotFound for an unknown run."""

    @abstractmethod
    def cancel(self, run_id: str) -> RunStatus:
        """Stop the run: items not started end cancelled. Finished runs are left as they are."""


# --------------------------------------------------------------------------- Models


class Tokenizer(ABC):
    """The embedder's tokenizer, so chunk sizes are counted in the tokens the model sees."""

    @abstractmethod
    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character (start, end) of each token of each text, special tokens excluded."""


class Embedder(ABC):
    """Text -> L2-normalised float32 vectors, in batches."""

    name: str
    dimension: int

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Vector:
        """Shape (len(texts), dimension); row i is the embedding of texts[i]."""


class ChatModel(ABC):
    """A chat LLM: messages in, text out, whole or as a stream.

    Adapters format the messages with the model's own chat template. Errors are domain errors:
    `Invalid` for a request the model cannot take (a prompt longer than its context),
    `Upstream` for a failing backend, `Unavailable` for one that cannot be reached.
    """

    name: str  # what replies report as "model"
    context_length: int  # prompt + completion tokens the model can hold

    @abstractmethod
    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens the prompt of these messages takes, chat template included. Exact where the
        model's tokenizer is at hand, a documented upper estimate otherwise. Cheap: no I/O."""

    @abstractmethod
    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Completion: ...

    @abstractmethod
    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[TextDelta | Completion]:
        """Text deltas in order, then exactly one Completion (whole text, finish reason, real
        usage). Closing the iterator early (`aclose`, or the consumer being cancelled) stops
        the generation; generation never blocks the event loop."""


# --------------------------------------------------------------------------- speech and web


class Transcriber(ABC):
    """Speech to text. Errors: `Invalid` for audio the backend refuses, `Upstream` for a
    failing backend, `Unavailable` for one that cannot be reached."""

    name: str  # what replies report as the model

    @abstractmethod
    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        """The words spoken in `audio`. `language` (ISO 639-1) None means detect or the
        model's only language; `prompt` is text that guides spelling and style. Blocking:
        services call it from a worker thread."""


class WebSearch(ABC):
    """A web search engine: a query in, result pages out (best first)."""

    @abstractmethod
    def search(self, query: str, limit: int) -> list[WebResult]:
        """At most `limit` results; raises `Upstream` when the engine fails or answers
        something unreadable. No result is an empty list, not an error."""


class PageFetcher(ABC):
    """Fetches a public web page and extracts its readable text."""

    @abstractmethod
    def fetch(self, url: str) -> WebPage:
        """Raises `Invalid` for a URL it must not fetch (scheme, or an address that is not
        public: the SSRF guard) and `Upstream` for a page that fails, times out, is too big or
        is not text."""


__all__ = [
    "ApiKeyGateway",
    "BlobStore",
    "ChatModel",
    "Embedder",
    "ItemHandler",
    "ItemOutcome",
    "PageFetcher",
    "Record",
    "Records",
    "RunSpec",
    "RunState",
    "RunStatus",
    "Scalar",
    "SearchIndex",
    "Tokenizer",
    "Transcriber",
    "WebSearch",
    "Workflow",
]
