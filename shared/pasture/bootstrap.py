"""The one composition root: settings -> adapters -> services, built once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pasture.config import Settings
from pasture.domain.documents import ChunkingSpec
from pasture.domain.errors import Unavailable
from pasture.ports import (
    BlobStore,
    Embedder,
    ItemHandler,
    Records,
    SearchIndex,
    Tokenizer,
    Workflow,
)
from pasture.services.datasets import DatasetService
from pasture.services.ingestion import INGEST, IngestionService
from pasture.services.projects import ProjectService
from pasture.services.retrieval import RetrievalService
from pasture.services.tenancy import Authenticator

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    records: Records
    blobs: BlobStore
    index: SearchIndex
    embedder: Embedder
    tokenizer: Tokenizer
    workflow: Workflow
    authenticator: Authenticator
    projects: ProjectService
    datasets: DatasetService
    ingestion: IngestionService
    retrieval: RetrievalService
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort; keep closing the rest
                log.exception("error while closing")


def build_container(settings: Settings) -> Container:
    if settings.backend != "local":
        raise Unavailable("the aws backend is not available in this build yet")
    return _build_local(settings)


def _build_local(settings: Settings) -> Container:
    from pasture.adapters.local.file_blob_store import FileBlobStore
    from pasture.adapters.local.hf_tokenizer import HuggingFaceTokenizer
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder
    from pasture.adapters.local.sqlite_db import SqliteDb
    from pasture.adapters.local.sqlite_records import SqliteRecords
    from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex
    from pasture.adapters.local.thread_workflow import ThreadWorkflow

    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    db = SqliteDb(data / "pasture.db")
    records = SqliteRecords(db)
    blobs = FileBlobStore(data / "blobs")
    index = SqliteSearchIndex(data / "index.db", data / "vectors")
    model_dir = minilm_dir()
    embedder = OnnxEmbedder(
        model_dir,
        data / "models",
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
    )
    tokenizer = HuggingFaceTokenizer(model_dir / "tokenizer.json")
    handlers: dict[str, ItemHandler] = {}
    workflow = ThreadWorkflow(
        db, handlers, workers=settings.ingest_workers, batch_items=settings.ingest_batch_items
    )
    projects = ProjectService(records)
    datasets = DatasetService(
        records, blobs, index, projects, max_upload_bytes=settings.max_upload_bytes
    )
    ingestion = IngestionService(
        records,
        blobs,
        index,
        embedder,
        tokenizer,
        workflow,
        projects,
        datasets,
        default_chunking=ChunkingSpec(settings.default_chunk_size, settings.default_chunk_overlap),
    )
    handlers[INGEST] = ingestion.handle
    retrieval = RetrievalService(
        index,
        embedder,
        projects,
        datasets,
        vector_weight=settings.hybrid_vector_weight,
        candidates=settings.retrieval_candidates,
    )
    container = Container(
        settings=settings,
        records=records,
        blobs=blobs,
        index=index,
        embedder=embedder,
        tokenizer=tokenizer,
        workflow=workflow,
        authenticator=Authenticator(settings.consumer_keys(), open_tenant=settings.open_tenant),
        projects=projects,
        datasets=datasets,
        ingestion=ingestion,
        retrieval=retrieval,
    )
    workflow.start_workers()
    container._closers += [db.close, index.close, workflow.stop]
    return container
