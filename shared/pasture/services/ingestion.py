"""Ingestion: parse -> chunk -> embed -> index -> mark, run per batch of documents by a Workflow.

The steps are plain functions of their inputs so the same code runs in local worker threads and
as Step Functions tasks. Chunk ids are deterministic (tenant, dataset, document, index), and a
document's old chunks are dropped before its new ones go in, so a re-run replaces, never
duplicates. One bad file never fails the others: every per-document error ends in FAIL with a
readable message.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pasture.domain.documents import ChunkingSpec, DocStatus, TextChunk
from pasture.domain.errors import Invalid, NotFound, PastureError
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

    def handle(
        self, spec: RunSpec, items: Sequence[str], cancelled: Callable[[], bool]
    ) -> Mapping[str, ItemOutcome]:
        tenant = spec.tenant
        ds_id = spec.payload["dataset_id"]
        default_strategy = DataProcessingStrategy.model_validate(spec.payload["strategy"])
        per_doc = spec.payload.get("doc_strategies") or {}
        out: dict[str, ItemOutcome] = {}
        ready: list[Prepared] = []

        def stopped(doc_id: str) -> bool:
            cur = self._datasets.document(tenant, ds_id, doc_id)
            return cur is not None and cur.status == DocStatus.CANCEL and cur.run_id == spec.run_id

        def fail(doc: Document, message: str) -> None:
            self._mark(tenant, doc, status=DocStatus.FAIL, progress=1.0, message=message)
            out[doc.id] = ItemOutcome(False, {"status": "failed", "error": message})

        for doc_id in items:
            doc = self._datasets.document(tenant, ds_id, doc_id)
            if doc is None:
                out[doc_id] = ItemOutcome(False, {"status": "failed", "error": "file was removed"})
                continue
            if cancelled() or stopped(doc_id):
                self._mark(tenant, doc, status=DocStatus.CANCEL, message="cancelled")
                out[doc_id] = ItemOutcome(False, {"status": "cancelled", "cancelled": True})
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
                ready.append(self.step_parse_and_chunk(doc, strategy))
            except PastureError as exc:
                fail(doc, exc.message)
            except Exception as exc:  # a parser bug must not take the batch down
                log.exception("parsing %s failed", doc.filename)
                fail(doc, f"internal error while parsing: {type(exc).__name__}")

        if not ready:
            return out
        for p in ready:
            self._mark(tenant, p.doc, progress=0.4, message=f"embedding {len(p.chunks)} chunks")
        try:
            vectors = self._embedder.embed([c.text for p in ready for c in p.chunks])
        except Exception as exc:
            log.exception("embedding failed")
            for p in ready:
                fail(p.doc, f"embedding failed: {type(exc).__name__}")
            return out

        offset = 0
        for p in ready:
            n = len(p.chunks)
            vecs, offset = vectors[offset : offset + n], offset + n
            if cancelled() or stopped(p.doc.id):
                self._mark(tenant, p.doc, status=DocStatus.CANCEL, message="cancelled")
                out[p.doc.id] = ItemOutcome(False, {"status": "cancelled", "cancelled": True})
                continue
            try:
                self.step_index(tenant, p, vecs)
            except Exception as exc:
                log.exception("indexing %s failed", p.doc.filename)
                fail(p.doc, f"indexing failed: {type(exc).__name__}")
                continue
            if stopped(p.doc.id):  # stopped while indexing: take back what went in
                self._index.delete_document(tenant, ds_id, p.doc.id)
                out[p.doc.id] = ItemOutcome(False, {"status": "cancelled", "cancelled": True})
                continue
            if self._datasets.document(tenant, ds_id, p.doc.id) is None:
                # Removed while processing: take back what we just indexed.
                self._index.delete_document(tenant, ds_id, p.doc.id)
                out[p.doc.id] = ItemOutcome(
                    False, {"status": "failed", "error": "file was removed"}
                )
                continue
            tokens = sum(c.token_count for c in p.chunks)
            self._mark(
                tenant,
                p.doc,
                status=DocStatus.DONE,
                progress=1.0,
                message=f"{n} chunks",
                chunk_count=n,
                token_count=tokens,
                parser=p.parser,
            )
            out[p.doc.id] = ItemOutcome(
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
        return out
