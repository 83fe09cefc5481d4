"""Ingestion: parse -> chunk -> embed -> index -> mark, run per batch of documents by a Workflow.

The pipeline is INGEST_STEPS (parse_and_chunk, embed, index, finish), each a method over one
batch of documents (IngestBatch). The local runtime runs them all in one `handle` call in a
worker thread; on AWS each is one Step Functions Lambda task (adapters/aws/workflow_tasks.py),
the batch travelling between them through the BlobStore, and the state machine is generated
from the same tuple (adapters/aws/state_machine.py). Chunk ids are deterministic (tenant,
dataset, document, index), and a document's old chunks are dropped before its new ones go in,
so a re-run replaces, never duplicates. One bad file never fails the others: every per-document
error ends in FAIL with a readable message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pasture.domain.documents import ChunkingSpec, DocStatus, TextChunk
from pasture.domain.errors import Invalid, NotFound, PastureError, Unavailable
from pasture.domain.projects import DataProcessingStrategy, chunking_spec
from pasture.domain.search import IndexedChunk
from pasture.ports import (
    BlobStore,
    Embedder,
    ItemOutcome,
    Record,
    Records,
    RunSpec,
    RunState,
    RunStatus,
    SearchIndex,
    Tokenizer,
    Workflow,
)
from pasture.services import keys
from pasture.services.datasets import Dataset, DatasetService, Document
from pasture.services.projects import ProjectService

log = logging.getLogger(__name__)

INGEST = "ingest"


def chunk_id(tenant: str, dataset_id: str, document_id: str, index: int) -> str:
    raw = f"{tenant}\x1f{dataset_id}\x1f{document_id}\x1f{index}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class Prepared:
    """A document after the parse and chunk steps."""

    doc: Document
    parser: str
    spec: ChunkingSpec
    chunks: list[TextChunk]


@dataclass(frozen=True)
class TaskView:
    task_id: str
    state: str  # Celery vocabulary: PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, REVOKED
    current: int
    total: int
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class ProcessReport:
    task_id: str
    finished: bool
    processed: int
    skipped: int
    failed: int
    strategy: str
    database: str
    details: list[dict[str, Any]]


class IngestionService:
    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        index: SearchIndex,
        embedder: Embedder,
        tokenizer: Tokenizer,
        workflow: Workflow,
        projects: ProjectService,
        datasets: DatasetService,
        *,
        default_chunking: ChunkingSpec,
    ) -> None:
        self._records = records
        self._blobs = blobs
        self._index = index
        self._embedder = embedder
        self._tokenizer = tokenizer
        self._workflow = workflow
        self._projects = projects
        self._datasets = datasets
        self._default_chunking = default_chunking

    # ------------------------------------------------------------------ use cases

    def process(
        self,
        tenant: str,
        namespace: str,
        project: str,
        dataset: str,
        *,
        wait: bool,
        reprocess: bool = False,
        poll_interval: float = 0.02,
    ) -> ProcessReport:
        """Start a run over the dataset's files that are not DONE (all of them with
        `reprocess`); with `wait`, return once it has finished."""
        cfg = self._projects.config(tenant, namespace, project)
        ds = self._datasets.get(tenant, namespace, project, dataset)
        strategy = cfg.strategy(ds.data_processing_strategy)
        docs = self._datasets.documents(tenant, ds.id)
        todo = [d for d in docs if reprocess or d.status != DocStatus.DONE]
        skipped = [d for d in docs if not (reprocess or d.status != DocStatus.DONE)]
        task_id = str(uuid.uuid4())
        payload = {
            "dataset_id": ds.id,
            "namespace": namespace,
            "project": project,
            "strategy": strategy.model_dump(mode="json"),
            "skipped": [d.id for d in skipped],
        }
        self._records.put(
            Record(
                keys.tasks(tenant, namespace, project),
                task_id,
                {"task_id": task_id, "kind": INGEST, "dataset": dataset, "created_at": time.time()},
            ),
            if_absent=True,
        )
        for d in todo:  # visible as queued at once; the worker moves them on
            self._datasets.save_document(
                tenant,
                replace(
                    d, status=DocStatus.UNSTART, progress=0.0, message="queued", run_id=task_id
                ),
            )
        status = self._workflow.start(
            RunSpec(task_id, INGEST, tenant, tuple(d.id for d in todo), payload)
        )
        while wait and not status.state.finished:
            time.sleep(poll_interval)
            poll_interval = min(
                poll_interval * 1.5, 0.5
            )  # short jobs return fast, long ones poll rarely
            status = self._workflow.status(task_id)
        return self._report(tenant, ds, status, docs, skipped, strategy.name)

    def _report(
        self,
        tenant: str,
        ds: Dataset,
        status: RunStatus,
        docs: list[Document],
        skipped: list[Document],
        strategy: str,
    ) -> ProcessReport:
        by_id = {d.id: d for d in docs}
        details: list[dict[str, Any]] = []
        skipped_ids = {d.id for d in skipped}
        for doc_id in [d.id for d in docs if d.id not in skipped_ids]:
            res = status.results.get(doc_id)
            name = by_id[doc_id].filename
            if res is None:
                details.append({"hash": doc_id, "filename": name, "status": "pending"})
            else:
                details.append({"hash": doc_id, "filename": name, **res})
        for d in skipped:
            details.append(
                {
                    "hash": d.id,
                    "filename": d.filename,
                    "status": "skipped",
                    "reason": "already processed",
                    "chunks": d.chunk_count,
                    "parser": d.parser,
                }
            )
        return ProcessReport(
            task_id=status.run_id,
            finished=status.state.finished,
            processed=status.succeeded,
            skipped=len(skipped),
            failed=status.failed + status.cancelled,
            strategy=strategy,
            database=ds.database,
            details=details,
        )

    def parse(
        self,
        tenant: str,
        ds: Dataset,
        docs: Sequence[Document],
        strategies: Mapping[str, DataProcessingStrategy],
    ) -> str:
        """Parse these documents of a tenant-level dataset (RAGFlow's "parse"): each goes
        RUNNING at once, its old chunks are dropped, and one run processes them all with each
        document's own strategy. Returns the run id."""
        run_id = uuid.uuid4().hex
        for d in docs:
            self._index.delete_document(tenant, ds.id, d.id)
            self._datasets.save_document(
                tenant,
                replace(
                    d,
                    status=DocStatus.RUNNING,
                    progress=0.0,
                    message="Task is queued...",
                    chunk_count=0,
                    token_count=0,
                    run_id=run_id,
                    updated_at=time.time(),
                    extra={**d.extra, "process_begin_at": time.time()},
                ),
            )
        first = next(iter(strategies.values()))
        payload = {
            "dataset_id": ds.id,
            "strategy": first.model_dump(mode="json"),
            "doc_strategies": {k: v.model_dump(mode="json") for k, v in strategies.items()},
            "skipped": [],
        }
        self._workflow.start(RunSpec(run_id, INGEST, tenant, tuple(d.id for d in docs), payload))
        return run_id

    def stop(self, tenant: str, docs: Sequence[Document]) -> None:
        """Stop parsing these documents: each ends CANCEL with no chunks. A batch already
        working on one notices before it indexes (and takes back what it indexed)."""
        for d in docs:
            if d.status != DocStatus.RUNNING:
                raise Invalid("Can't stop parsing document with progress at 0 or 100")
        for d in docs:
            self._datasets.save_document(
                tenant,
                replace(
                    d,
                    status=DocStatus.CANCEL,
                    progress=0.0,
                    message="Stopped by user.",
                    chunk_count=0,
                    token_count=0,
                    updated_at=time.time(),
                ),
            )
            self._index.delete_document(tenant, d.dataset_id, d.id)

    def task(self, tenant: str, namespace: str, project: str, task_id: str) -> TaskView:
        self._projects.config(tenant, namespace, project)  # raises NotFound
        if self._records.get(keys.tasks(tenant, namespace, project), task_id) is None:
            raise NotFound(f"Task {task_id} not found")
        return self._task_view(self._workflow.status(task_id))

    def cancel_task(self, tenant: str, namespace: str, project: str, task_id: str) -> TaskView:
        self.task(tenant, namespace, project, task_id)  # ownership check
        return self._task_view(self._workflow.cancel(task_id))

    @staticmethod
    def _task_view(st: RunStatus) -> TaskView:
        done = st.finished_items
        state = {
            RunState.PENDING: "PENDING",
            RunState.RUNNING: "PROGRESS" if done else "STARTED",
            RunState.SUCCEEDED: "SUCCESS",
            RunState.FAILED: "FAILURE",
            RunState.CANCELLED: "REVOKED",
        }[st.state]
        error = st.error
        # Every file failing is a failed task, not a successful one with a footnote.
        if st.state == RunState.SUCCEEDED and st.total and st.succeeded == 0 and st.failed:
            state = "FAILURE"
            first = next((r.get("error") for r in st.results.values() if r.get("error")), None)
            error = f"all {st.failed} file(s) failed" + (f"; first error: {first}" if first else "")
        result = None
        if st.state.finished:
            result = {
                "processed_files": st.succeeded,
                "failed_files": st.failed,
                "cancelled_files": st.cancelled,
                "skipped_files": len(st.payload.get("skipped", [])),
                "details": [{"hash": k, **v} for k, v in st.results.items()],
            }
        return TaskView(st.run_id, state, done, st.total, result, error)

    # ------------------------------------------------------------------ pipeline steps

    def step_parse_and_chunk(self, doc: Document, strategy: DataProcessingStrategy) -> Prepared:
        from pasture.services.chunking import chunk_document
        from pasture.services.parsing import parse_document

        parser_cfg = strategy.parser_for(doc.filename)
        if parser_cfg is None:
            raise Invalid(f"no parser of strategy {strategy.name!r} accepts {doc.filename!r}")
        spec = chunking_spec(parser_cfg, self._default_chunking)
        try:
            stream = self._blobs.open(keys.blob(doc.dataset_id, doc.id))
        except NotFound:
            raise Invalid("the file's content is missing from storage; upload it again") from None
        with stream:
            parsed = parse_document(doc.filename, stream)
        chunks = chunk_document(parsed, spec, self._tokenizer)
        if not chunks:
            raise Invalid("no text found in the file")
        return Prepared(doc, parsed.parser, spec, chunks)

    def step_index(self, tenant: str, p: Prepared, vectors: Any) -> None:
        ds_id, doc_id = p.doc.dataset_id, p.doc.id
        now = time.time()
        indexed = [
            IndexedChunk(
                chunk_id=chunk_id(tenant, ds_id, doc_id, c.index),
                tenant=tenant,
                dataset_id=ds_id,
                document_id=doc_id,
                text=c.text,
                vector=vectors[i],
                metadata={
                    **{
                        k: v
                        for k, v in c.metadata.items()
                        if isinstance(v, str | int | float | bool)
                    },
                    "document_id": doc_id,
                    "filename": p.doc.filename,
                    "chunk_index": c.index,
                    "token_count": c.token_count,
                    "parser": p.parser,
                    "available": True,
                    "created_at": now,
                },
            )
            for i, c in enumerate(p.chunks)
        ]
        self._index.delete_document(tenant, ds_id, doc_id)
        self._index.upsert(indexed)

    def _mark(self, tenant: str, doc: Document, **changes: Any) -> Document:
        current = self._datasets.document(tenant, doc.dataset_id, doc.id)
        if current is None:  # removed while we worked
            return doc
        if current.status == DocStatus.CANCEL:  # stopped: nothing in this run moves it on
            return current
        new = replace(current, updated_at=time.time(), **changes)
        self._datasets.save_document(tenant, new)
        return new

    # ------------------------------------------------------------------ workflow handler

    def pipeline(self, *, raise_transient: bool = False) -> IngestPipeline:
        """The ingestion steps over one batch of documents. `raise_transient`: let `Unavailable`
        out of a step (the Step Functions runtime retries the step with backoff) instead of
        failing the documents at once (what the local runtime, which has no retries, wants)."""
        return IngestPipeline(self, raise_transient=raise_transient)

    def handle(
        self, spec: RunSpec, items: Sequence[str], cancelled: Callable[[], bool]
    ) -> Mapping[str, ItemOutcome]:
        """The item handler of INGEST runs: every step of INGEST_STEPS, in order, in one call."""
        pipe = self.pipeline()
        batch = pipe.begin(items)
        for step in pipe.steps:
            batch = pipe.run(step, spec, batch, cancelled)
        return batch.outcomes

    # ------------------------------------------------------------------ the steps

    def _stopped(self, spec: RunSpec, doc_id: str) -> bool:
        """Stopped by the user (RAGFlow's stop parsing) while this run held the document."""
        cur = self._datasets.document(spec.tenant, spec.payload["dataset_id"], doc_id)
        return cur is not None and cur.status == DocStatus.CANCEL and cur.run_id == spec.run_id

    def _fail(self, spec: RunSpec, batch: IngestBatch, doc: Document, message: str) -> None:
        self._mark(spec.tenant, doc, status=DocStatus.FAIL, progress=1.0, message=message)
        batch.outcomes[doc.id] = ItemOutcome(False, {"status": "failed", "error": message})

    def _cancel(self, spec: RunSpec, batch: IngestBatch, doc: Document) -> None:
        self._mark(spec.tenant, doc, status=DocStatus.CANCEL, message="cancelled")
        batch.outcomes[doc.id] = ItemOutcome(False, {"status": "cancelled", "cancelled": True})

    def _run_parse_and_chunk(
        self, spec: RunSpec, batch: IngestBatch, cancelled: Callable[[], bool], transient: bool
    ) -> None:
        tenant = spec.tenant
        ds_id = spec.payload["dataset_id"]
        default_strategy = DataProcessingStrategy.model_validate(spec.payload["strategy"])
        per_doc = spec.payload.get("doc_strategies") or {}
        for doc_id in batch.items:
            doc = self._datasets.document(tenant, ds_id, doc_id)
            if doc is None:
                batch.outcomes[doc_id] = ItemOutcome(
                    False, {"status": "failed", "error": "file was removed"}
                )
                continue
            if cancelled() or self._stopped(spec, doc_id):
                self._cancel(spec, batch, doc)
                continue
            strategy = (
                DataProcessingStrategy.model_validate(per_doc[doc_id])
                if doc_id in per_doc
                else default_strategy
            )
            doc = self._mark(
                tenant,
                doc,
                status=DocStatus.RUNNING,
                progress=0.1,
                message="parsing",
                run_id=spec.run_id,
            )
            try:
                batch.prepared.append(self.step_parse_and_chunk(doc, strategy))
            except PastureError as exc:
                if transient and isinstance(exc, Unavailable):
                    raise
                self._fail(spec, batch, doc, exc.message)
            except Exception as exc:  # a parser bug must not take the batch down
                log.exception("parsing %s failed", doc.filename)
                self._fail(spec, batch, doc, f"internal error while parsing: {type(exc).__name__}")

    def _run_embed(
        self, spec: RunSpec, batch: IngestBatch, cancelled: Callable[[], bool], transient: bool
    ) -> None:
        if not batch.prepared:
            return
        for p in batch.prepared:
            self._mark(
                spec.tenant, p.doc, progress=0.4, message=f"embedding {len(p.chunks)} chunks"
            )
        try:
            batch.vectors = self._embedder.embed([c.text for p in batch.prepared for c in p.chunks])
        except Exception as exc:
            if transient and isinstance(exc, Unavailable):
                raise
            log.exception("embedding failed")
            for p in batch.prepared:
                self._fail(spec, batch, p.doc, f"embedding failed: {type(exc).__name__}")
            batch.prepared = []

    def _run_index(
        self, spec: RunSpec, batch: IngestBatch, cancelled: Callable[[], bool], transient: bool
    ) -> None:
        indexed: list[Prepared] = []
        offset = 0
        for p in batch.prepared:
            n = len(p.chunks)
            vecs, offset = batch.vectors[offset : offset + n], offset + n
            if cancelled() or self._stopped(spec, p.doc.id):
                self._cancel(spec, batch, p.doc)
                continue
            try:
                self.step_index(spec.tenant, p, vecs)
            except Exception as exc:
                if transient and isinstance(exc, Unavailable):
                    raise
                log.exception("indexing %s failed", p.doc.filename)
                self._fail(spec, batch, p.doc, f"indexing failed: {type(exc).__name__}")
                continue
            indexed.append(p)
        batch.prepared, batch.vectors = indexed, None

    def _run_finish(
        self, spec: RunSpec, batch: IngestBatch, cancelled: Callable[[], bool], transient: bool
    ) -> None:
        tenant, ds_id = spec.tenant, spec.payload["dataset_id"]
        for p in batch.prepared:
            if self._stopped(spec, p.doc.id):  # stopped while indexing: take back what went in
                self._index.delete_document(tenant, ds_id, p.doc.id)
                batch.outcomes[p.doc.id] = ItemOutcome(
                    False, {"status": "cancelled", "cancelled": True}
                )
                continue
            if self._datasets.document(tenant, ds_id, p.doc.id) is None:
                # Removed while processing: take back what we just indexed.
                self._index.delete_document(tenant, ds_id, p.doc.id)
                batch.outcomes[p.doc.id] = ItemOutcome(
                    False, {"status": "failed", "error": "file was removed"}
                )
                continue
            n = len(p.chunks)
            self._mark(
                tenant,
                p.doc,
                status=DocStatus.DONE,
                progress=1.0,
                message=f"{n} chunks",
                chunk_count=n,
                token_count=sum(c.token_count for c in p.chunks),
                parser=p.parser,
            )
            batch.outcomes[p.doc.id] = ItemOutcome(
                True,
                {
                    "status": "processed",
                    "parser": p.parser,
                    "extractors": [],
                    "chunks": n,
                    "chunk_size": p.spec.chunk_size,
                    "embedder": self._embedder.name,
                },
            )
        batch.prepared = []

    def _fail_batch(self, spec: RunSpec, batch: IngestBatch, message: str) -> None:
        """A step gave up (the AWS runtime's Catch): every document of the batch without an
        outcome ends FAIL with `message`; chunks this run may have indexed are taken back."""
        tenant, ds_id = spec.tenant, spec.payload["dataset_id"]
        reached_index = batch.step in ("embed", "index")
        for doc_id in batch.items:
            if doc_id in batch.outcomes:
                continue
            doc = self._datasets.document(tenant, ds_id, doc_id)
            if doc is None:
                batch.outcomes[doc_id] = ItemOutcome(
                    False, {"status": "failed", "error": "file was removed"}
                )
                continue
            if reached_index:
                try:
                    self._index.delete_document(tenant, ds_id, doc_id)
                except Exception:  # best effort: the FAIL status is what must land
                    log.exception("taking back the chunks of %s failed", doc_id)
            self._fail(spec, batch, doc, message)
        batch.prepared, batch.vectors = [], None


# The ingestion pipeline, in order. Both runtimes run exactly these steps: `handle` runs them
# in one call (local worker threads); on AWS each is one Lambda task of the state machine that
# adapters/aws/state_machine.py generates from INGEST_STEPS.
_STEP_METHODS: dict[str, Callable[..., None]] = {
    "parse_and_chunk": IngestionService._run_parse_and_chunk,
    "embed": IngestionService._run_embed,
    "index": IngestionService._run_index,
    "finish": IngestionService._run_finish,
}
INGEST_STEPS: tuple[str, ...] = tuple(_STEP_METHODS)


@dataclass
class IngestBatch:
    """One batch of a run's documents between two steps. `outcomes`: documents that are done
    with (failed, cancelled, or finished); `prepared`: those still going, parsed and chunked;
    `vectors`: one row per chunk of `prepared`, in order, between `embed` and `index`; `step`:
    the last step run. `to_bytes`/`from_bytes` let the AWS runtime keep it in the BlobStore
    between Lambda tasks (the Step Functions state itself carries only its key)."""

    items: tuple[str, ...]
    outcomes: dict[str, ItemOutcome] = field(default_factory=dict)
    prepared: list[Prepared] = field(default_factory=list)
    vectors: Any = None
    step: str = ""

    def to_bytes(self) -> bytes:
        import numpy as np

        vectors = None
        if self.vectors is not None:
            arr = np.ascontiguousarray(self.vectors, dtype="<f4")
            vectors = {"shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode()}
        data = {
            "items": list(self.items),
            "outcomes": {
                k: {"ok": o.ok, "result": dict(o.result)} for k, o in self.outcomes.items()
            },
            "prepared": [
                {
                    "doc": p.doc.to_data(),
                    "parser": p.parser,
                    "spec": {
                        "chunk_size": p.spec.chunk_size,
                        "chunk_overlap": p.spec.chunk_overlap,
                        "delimiters": list(p.spec.delimiters),
                    },
                    "chunks": [
                        {
                            "index": c.index,
                            "text": c.text,
                            "token_count": c.token_count,
                            # Only scalars reach the index (step_index), so only they travel.
                            "metadata": {
                                k: v
                                for k, v in c.metadata.items()
                                if isinstance(v, str | int | float | bool)
                            },
                        }
                        for c in p.chunks
                    ],
                }
                for p in self.prepared
            ],
            "vectors": vectors,
            "step": self.step,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> IngestBatch:
        import numpy as np

        data = json.loads(raw)
        vectors = None
        if data["vectors"] is not None:
            v = data["vectors"]
            vectors = np.frombuffer(base64.b64decode(v["b64"]), dtype="<f4").reshape(v["shape"])
        return cls(
            items=tuple(data["items"]),
            outcomes={k: ItemOutcome(o["ok"], o["result"]) for k, o in data["outcomes"].items()},
            prepared=[
                Prepared(
                    Document.from_data(p["doc"]),
                    p["parser"],
                    ChunkingSpec(
                        p["spec"]["chunk_size"],
                        p["spec"]["chunk_overlap"],
                        tuple(p["spec"]["delimiters"]),
                    ),
                    [TextChunk(**c) for c in p["chunks"]],
                )
                for p in data["prepared"]
            ],
            vectors=vectors,
            step=data["step"],
        )


class IngestPipeline:
    """INGEST_STEPS over one batch. `handle` runs them all in one call; the AWS runtime runs
    each as a Lambda task (`run` with the batch loaded from the BlobStore) and, when a step
    gives up after its retries, `fail` from the state machine's Catch."""

    steps = INGEST_STEPS

    def __init__(self, service: IngestionService, *, raise_transient: bool) -> None:
        self._service = service
        self._transient = raise_transient

    def begin(self, items: Sequence[str]) -> IngestBatch:
        return IngestBatch(tuple(items))

    def run(
        self, step: str, spec: RunSpec, batch: IngestBatch, cancelled: Callable[[], bool]
    ) -> IngestBatch:
        _STEP_METHODS[step](self._service, spec, batch, cancelled, self._transient)
        batch.step = step
        return batch

    def fail(self, spec: RunSpec, batch: IngestBatch, message: str) -> IngestBatch:
        self._service._fail_batch(spec, batch, message)
        return batch

    @staticmethod
    def outcomes(batch: IngestBatch) -> Mapping[str, ItemOutcome]:
        return batch.outcomes

    @staticmethod
    def dump(batch: IngestBatch) -> bytes:
        return batch.to_bytes()

    @staticmethod
    def load(raw: bytes) -> IngestBatch:
        return IngestBatch.from_bytes(raw)
