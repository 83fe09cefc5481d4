"""Datasets and their files: create/list/delete, upload (sha256-addressed), remove."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pasture.domain.documents import DocStatus
from pasture.domain.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from pasture.domain.projects import check_name
from pasture.ports import BlobStore, Record, Records, SearchIndex
from pasture.services import keys
from pasture.services.projects import Project, ProjectService

_READ = 1024 * 1024


@dataclass(frozen=True)
class Dataset:
    tenant: str
    id: str
    name: str
    namespace: str
    project: str
    database: str
    data_processing_strategy: str
    created_at: float
    # Tenant-level datasets (RAGFlow's view) have no project: namespace, project, database and
    # strategy are "" and `settings` holds their parsing and retrieval settings.
    settings: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0

    @property
    def in_project(self) -> bool:
        return bool(self.project)


@dataclass(frozen=True)
class Document:
    id: str  # sha256 hex of the content
    dataset_id: str
    filename: str
    size: int
    content_type: str | None
    status: DocStatus
    progress: float
    message: str
    created_at: float
    updated_at: float
    chunk_count: int = 0
    token_count: int = 0
    parser: str | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "filename": self.filename,
            "size": self.size,
            "content_type": self.content_type,
            "status": self.status.value,
            "progress": self.progress,
            "message": self.message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "chunk_count": self.chunk_count,
            "token_count": self.token_count,
            "parser": self.parser,
            "run_id": self.run_id,
            "extra": self.extra,
        }

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> Document:
        return cls(**{**d, "status": DocStatus(d["status"])})


@dataclass(frozen=True)
class UploadResult:
    document: Document
    duplicate: bool


def clean_filename(name: str | None) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    if not base or base in (".", ".."):
        raise Invalid("the uploaded file has no file name")
    if len(base) > 255 or any(ord(ch) < 32 for ch in base):
        raise Invalid("invalid file name")
    return base


class DatasetService:
    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        index: SearchIndex,
        projects: ProjectService,
        *,
        max_upload_bytes: int,
    ) -> None:
        self._records = records
        self._blobs = blobs
        self._index = index
        self._projects = projects
        self._max_upload = max_upload_bytes

    # ------------------------------------------------------------------ datasets

    @staticmethod
    def _to_dataset(tenant: str, d: dict[str, Any]) -> Dataset:
        return Dataset(
            tenant,
            d["id"],
            d["name"],
            d["namespace"],
            d["project"],
            d["database"],
            d["data_processing_strategy"],
            d["created_at"],
            dict(d.get("settings") or {}),
            d.get("updated_at", d["created_at"]),
        )

    def list_datasets(self, tenant: str, namespace: str, project: str) -> list[Dataset]:
        self._projects.config(tenant, namespace, project)  # raises NotFound
        out = []
        for r in self._records.query(
            keys.dataset_names(tenant, namespace, project), "", limit=None
        ):
            rec = self._records.get(keys.datasets(tenant), r.data["dataset_id"])
            if rec is not None:
                out.append(self._to_dataset(tenant, dict(rec.data)))
        return out

    def get(self, tenant: str, namespace: str, project: str, name: str) -> Dataset:
        self._projects.config(tenant, namespace, project)  # raises NotFound
        ref = self._records.get(keys.dataset_names(tenant, namespace, project), name)
        rec = self._records.get(keys.datasets(tenant), ref.data["dataset_id"]) if ref else None
        if rec is None:
            raise NotFound(f"Dataset {name} not found in project {namespace}/{project}")
        return self._to_dataset(tenant, dict(rec.data))

    def strategies(self, tenant: str, namespace: str, project: str) -> tuple[list[str], list[str]]:
        cfg = self._projects.config(tenant, namespace, project)
        return cfg.strategy_names(), cfg.database_names()

    def create(
        self,
        tenant: str,
        namespace: str,
        project: str,
        name: str,
        strategy: str | None,
        database: str | None,
    ) -> Dataset:
        check_name("dataset", name)
        cfg = self._projects.config(tenant, namespace, project)
        strategies, databases = cfg.strategy_names(), cfg.database_names()
        strategy = strategy or (strategies[0] if strategies else None)
        database = database or cfg.default_database()
        if strategy is None or database is None:
            raise Invalid(
                f"project {namespace}/{project} has no RAG configuration (rag.databases and rag.data_processing_strategies)"
            )
        cfg.strategy(strategy)  # raises Invalid listing the available ones
        if database not in databases:
            raise Invalid(
                f"database {database!r} not found in project (available: {', '.join(databases)})"
            )
        now = time.time()
        dataset_id = uuid.uuid4().hex
        data: dict[str, Any] = {
            "id": dataset_id,
            "name": name,
            "namespace": namespace,
            "project": project,
            "database": database,
            "data_processing_strategy": strategy,
            "created_at": now,
        }
        # The dataset first, then its unique name: a crash in between leaves an unreachable
        # record, never a name pointing nowhere.
        self._records.put(Record(keys.datasets(tenant), dataset_id, data), if_absent=True)
        try:
            self._records.put(
                Record(
                    keys.dataset_names(tenant, namespace, project),
                    name,
                    {
                        "dataset_id": dataset_id,
                        "database": database,
                        "data_processing_strategy": strategy,
                    },
                ),
                if_absent=True,
            )
        except Conflict:
            self._records.delete(keys.datasets(tenant), dataset_id)
            raise Conflict(
                f"Dataset {name} already exists in project {namespace}/{project}"
            ) from None
        return self._to_dataset(tenant, data)

    def delete(
        self, tenant: str, namespace: str, project: str, name: str
    ) -> tuple[Dataset, list[Document]]:
        ds = self.get(tenant, namespace, project, name)
        docs = self.documents(tenant, ds.id)
        self.purge(ds, docs)
        return ds, docs

    def purge(self, ds: Dataset, docs: list[Document]) -> None:
        """Delete a dataset with everything in it. The name goes last: until it is gone a
        retry finds the dataset and finishes the job."""
        self._index.delete_dataset(ds.tenant, ds.id)
        for d in docs:
            self._blobs.delete(keys.blob(ds.id, d.id))
            self._records.delete(keys.documents(ds.tenant, ds.id), d.id)
        self._blobs.delete_prefix(f"datasets/{ds.id}/")
        self._records.delete(keys.datasets(ds.tenant), ds.id)
        if ds.in_project:
            self._records.delete(keys.dataset_names(ds.tenant, ds.namespace, ds.project), ds.name)
        else:
            self._records.delete(keys.tenant_dataset_names(ds.tenant), ds.name.lower())

    def delete_project(self, tenant: str, namespace: str, project: str) -> Project:
        """Really deletes: datasets, files, chunks, tasks, then the project itself."""
        proj = self._projects.get(tenant, namespace, project)
        for ds in self.list_datasets(tenant, namespace, project):
            self.purge(ds, self.documents(tenant, ds.id))
        for t in self._records.query(keys.tasks(tenant, namespace, project), "", limit=None):
            self._records.delete(t.pk, t.sk)
        self._projects.delete_record(tenant, namespace, project)
        return proj

    # ------------------------------------------------------------------ documents

    def documents(self, tenant: str, dataset_id: str) -> list[Document]:
        return [
            Document.from_data(dict(r.data))
            for r in self._records.query(keys.documents(tenant, dataset_id), "", limit=None)
        ]

    def document(self, tenant: str, dataset_id: str, doc_id: str) -> Document | None:
        rec = self._records.get(keys.documents(tenant, dataset_id), doc_id)
        return Document.from_data(dict(rec.data)) if rec else None

    def save_document(self, tenant: str, doc: Document) -> None:
        self._records.put(
            Record(keys.documents(tenant, doc.dataset_id), doc.id, doc.to_data()), if_absent=False
        )

    def upload(
        self,
        tenant: str,
        namespace: str,
        project: str,
        dataset: str,
        filename: str | None,
        stream: BinaryIO,
        content_type: str | None = None,
    ) -> UploadResult:
        ds = self.get(tenant, namespace, project, dataset)
        return self.upload_to(tenant, ds, filename, stream, content_type)

    def upload_to(
        self,
        tenant: str,
        ds: Dataset,
        filename: str | None,
        stream: BinaryIO,
        content_type: str | None = None,
    ) -> UploadResult:
        name = clean_filename(filename)
        # One pass to hash and bound the size; the spool is on disk past 8 MB.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            digest = hashlib.sha256()
            size = 0
            while block := stream.read(_READ):
                size += len(block)
                if size > self._max_upload:
                    raise PayloadTooLarge(f"file is larger than the {self._max_upload} byte limit")
                digest.update(block)
                spool.write(block)
            doc_id = digest.hexdigest()
            existing = self.document(tenant, ds.id, doc_id)
            if existing is not None:
                return UploadResult(existing, duplicate=True)
            spool.seek(0)
            self._blobs.put(keys.blob(ds.id, doc_id), spool)  # type: ignore[arg-type]
        now = time.time()
        doc = Document(
            doc_id, ds.id, name, size, content_type, DocStatus.UNSTART, 0.0, "", now, now
        )
        try:
            self._records.put(
                Record(keys.documents(tenant, ds.id), doc_id, doc.to_data()), if_absent=True
            )
        except Conflict:  # the same bytes uploaded concurrently: one file
            return UploadResult(self.document(tenant, ds.id, doc_id) or doc, duplicate=True)
        return UploadResult(doc, duplicate=False)

    def remove_file(
        self,
        tenant: str,
        namespace: str,
        project: str,
        dataset: str,
        doc_id: str,
        *,
        remove_from_disk: bool,
    ) -> Document:
        ds = self.get(tenant, namespace, project, dataset)
        doc = self.document(tenant, ds.id, doc_id)
        if doc is None:
            raise NotFound(f"File {doc_id} not found in dataset {dataset}")
        self.remove_document(tenant, doc, remove_blob=remove_from_disk)
        return doc

    def remove_document(self, tenant: str, doc: Document, *, remove_blob: bool) -> None:
        # Chunks first: a crash after this leaves a record a retry can remove again.
        self._index.delete_document(tenant, doc.dataset_id, doc.id)
        self._records.delete(keys.documents(tenant, doc.dataset_id), doc.id)
        if remove_blob:
            self._blobs.delete(keys.blob(doc.dataset_id, doc.id))

    def drop_chunks(self, tenant: str, doc: Document) -> None:
        self._index.delete_document(tenant, doc.dataset_id, doc.id)

    def discard(self, ds: Dataset) -> None:
        """Remove a dataset record that never got its name (a lost uniqueness race)."""
        self._records.delete(keys.datasets(ds.tenant), ds.id)

    def open_document(self, tenant: str, doc: Document) -> BinaryIO:
        return self._blobs.open(keys.blob(doc.dataset_id, doc.id))

    # ------------------------------------------------------------------ by id (tenant-wide)

    def by_id(self, tenant: str, dataset_id: str) -> Dataset | None:
        rec = self._records.get(keys.datasets(tenant), dataset_id)
        return self._to_dataset(tenant, dict(rec.data)) if rec else None

    def all_datasets(self, tenant: str) -> list[Dataset]:
        """Every dataset of the tenant (one partition query)."""
        return [
            self._to_dataset(tenant, dict(r.data))
            for r in self._records.query(keys.datasets(tenant), "", limit=None)
        ]

    def put_dataset(self, ds: Dataset) -> None:
        self._records.put(
            Record(keys.datasets(ds.tenant), ds.id, _dataset_data(ds)), if_absent=False
        )

    def claim_name(self, tenant: str, name: str, dataset_id: str) -> None:
        """Tenant-wide, case-insensitive unique names of tenant-level datasets (conditional put)."""
        self._records.put(
            Record(keys.tenant_dataset_names(tenant), name.lower(), {"dataset_id": dataset_id}),
            if_absent=True,
        )

    def release_name(self, tenant: str, name: str) -> None:
        self._records.delete(keys.tenant_dataset_names(tenant), name.lower())


def _dataset_data(ds: Dataset) -> dict[str, Any]:
    return {
        "id": ds.id,
        "name": ds.name,
        "namespace": ds.namespace,
        "project": ds.project,
        "database": ds.database,
        "data_processing_strategy": ds.data_processing_strategy,
        "created_at": ds.created_at,
        "updated_at": ds.updated_at or ds.created_at,
        "settings": ds.settings,
    }
