"""Tenant-level datasets: RAGFlow's knowledge bases over the same core as LlamaFarm's datasets.

A tenant-level dataset is a core dataset with no project. It keeps its own parsing settings
(`chunk_method`, `parser_config`) and retrieval defaults in `Dataset.settings`; its documents,
blobs, chunks and index entries are exactly those of any other dataset. Names are unique per
tenant, case-insensitively (a conditional put on a lowercased name item).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from pasture.domain.documents import DocStatus
from pasture.domain.errors import Conflict, Invalid, NotFound
from pasture.domain.projects import DataProcessingStrategy, ParserConfig
from pasture.services.datasets import Dataset, DatasetService, Document, clean_filename
from pasture.services.ingestion import IngestionService
from pasture.services.parsing import SUPPORTED_EXTENSIONS

CHUNK_METHODS = (
    "naive",
    "manual",
    "qa",
    "table",
    "paper",
    "book",
    "laws",
    "presentation",
    "picture",
    "one",
    "knowledge_graph",
    "email",
)
PERMISSIONS = ("me", "team")
LANGUAGES = ("Chinese", "English")
# RAGFlow stored this with a literal backslash-n (and so split on the letter n); we split on
# newlines and the listed punctuation.
DEFAULT_DELIMITER = "\n!?;。；！？"
DEFAULT_CHUNK_TOKENS = 128
_MAX_NAME = 65535


def default_parser_config(method: str) -> dict[str, Any]:
    if method in ("table", "picture", "one", "email"):
        return {}
    if method == "knowledge_graph":
        return {
            "chunk_token_num": DEFAULT_CHUNK_TOKENS,
            "delimiter": DEFAULT_DELIMITER,
            "entity_types": ["organization", "person", "location", "event", "time"],
        }
    if method != "naive":
        return {"raptor": {"use_raptor": False}}
    return {
        "chunk_token_num": DEFAULT_CHUNK_TOKENS,
        "delimiter": DEFAULT_DELIMITER,
        "html4excel": False,
        "layout_recognize": True,
        "raptor": {"use_raptor": False},
    }


def check_chunk_method(method: Any) -> str:
    if method not in CHUNK_METHODS:
        raise Invalid(f"'{method}' is not in {list(CHUNK_METHODS)}")
    return str(method)


def check_parser_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise Invalid("`parser_config` must be an object")
    # `chunk_token_count` is how the v0.14 document spells what the server stores as
    # `chunk_token_num`; accept both.
    if "chunk_token_count" in config and "chunk_token_num" not in config:
        config = {**config, "chunk_token_num": config["chunk_token_count"]}
        config.pop("chunk_token_count")
    n = config.get("chunk_token_num")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8192):
        raise Invalid("`chunk_token_num` must be an integer between 1 and 8192")
    d = config.get("delimiter")
    if d is not None and (not isinstance(d, str) or not d):
        raise Invalid("`delimiter` must be a non-empty string")
    return dict(config)


def strategy_for(method: str, parser_config: Mapping[str, Any]) -> DataProcessingStrategy:
    """The core chunking strategy a RAGFlow chunk method and parser_config stand for.

    `one` keeps a document whole (up to 8192 tokens a chunk); every other method is parsed as
    `naive` (General) with its `chunk_token_num` and `delimiter`: see docs/architecture.md.
    """
    tokens = int(parser_config.get("chunk_token_num") or DEFAULT_CHUNK_TOKENS)
    size = 8192 if method == "one" else max(16, min(tokens, 8192))
    delims: list[str] = []
    for ch in str(parser_config.get("delimiter") or DEFAULT_DELIMITER).replace("\\n", "\n"):
        if ch not in delims:
            delims.append(ch)
    # Finer cuts after RAGFlow's own, so a long sentence splits at words, not mid-token.
    for d in (". ", ", ", " "):
        if d not in delims:
            delims.append(d)
    return DataProcessingStrategy(
        name=f"ragflow-{method}",
        parsers=[
            ParserConfig(
                type="auto",
                config={"chunk_size": size, "chunk_overlap": 0, "delimiters": delims},
            )
        ],
    )


@dataclass(frozen=True)
class DatasetStats:
    document_count: int
    chunk_count: int
    token_count: int


@dataclass(frozen=True)
class Page:
    page: int
    page_size: int
    orderby: str
    desc: bool


def check_page(page: Any, page_size: Any, orderby: Any, desc: Any, default_size: int) -> Page:
    def as_int(name: str, value: Any, default: int) -> int:
        if value is None or value == "":
            return default
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise Invalid(f"`{name}` must be an integer") from None
        if n < 1:
            raise Invalid(f"`{name}` must be at least 1")
        return n

    order = orderby or "create_time"
    if order not in ("create_time", "update_time"):
        raise Invalid(f"'{order}' is not in ['create_time', 'update_time']")
    flag = True
    if isinstance(desc, bool):
        flag = desc
    elif desc is not None and str(desc).strip().lower() in ("false", "0", "no"):
        flag = False
    return Page(as_int("page", page, 1), as_int("page_size", page_size, default_size), order, flag)


def paged(items: list[Any], p: Page, key: Any) -> list[Any]:
    items = sorted(items, key=key, reverse=p.desc)
    start = (p.page - 1) * p.page_size
    return items[start : start + p.page_size]


class TenantDatasets:
    def __init__(
        self, datasets: DatasetService, ingestion: IngestionService, embedding_model: str
    ) -> None:
        self._ds = datasets
        self._ingestion = ingestion
        self.embedding_model = embedding_model

    # ------------------------------------------------------------------ datasets

    def get(self, tenant: str, dataset_id: str) -> Dataset:
        ds = self._ds.by_id(tenant, dataset_id) if dataset_id else None
        if ds is None or ds.in_project:
            raise NotFound(f"You don't own the dataset {dataset_id}.")
        return ds

    def datasets(self, tenant: str) -> list[Dataset]:
        return [d for d in self._ds.all_datasets(tenant) if not d.in_project]

    def stats(self, tenant: str, ds: Dataset) -> DatasetStats:
        docs = self._ds.documents(tenant, ds.id)
        return DatasetStats(
            len(docs), sum(d.chunk_count for d in docs), sum(d.token_count for d in docs)
        )

    def _check_embedding_model(self, value: Any) -> str:
        if value in (None, ""):
            return self.embedding_model
        name = str(value).split("@")[0]
        if name.lower() not in (
            self.embedding_model.lower(),
            f"sentence-transformers/{self.embedding_model}".lower(),
        ):
            raise Invalid(
                f"`embedding_model` {value} doesn't exist (available: {self.embedding_model})"
            )
        return self.embedding_model

    @staticmethod
    def _check_name(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid("`name` is not empty!")
        name = value.strip()
        if len(name) > _MAX_NAME or any(ord(c) < 32 for c in name):
            raise Invalid("`name` must be at most 65535 printable characters")
        return name

    def create(self, tenant: str, fields: Mapping[str, Any]) -> Dataset:
        for ro in ("tenant_id", "id"):
            if fields.get(ro):
                raise Invalid(f"`{ro}` must not be provided")
        for counter in ("chunk_count", "document_count"):
            if fields.get(counter):
                raise Invalid(f"`{counter}` must be 0")
        name = self._check_name(fields.get("name"))
        method = check_chunk_method(fields.get("chunk_method") or "naive")
        parser_config = {
            **default_parser_config(method),
            **check_parser_config(fields.get("parser_config")),
        }
        permission = fields.get("permission") or "me"
        if permission not in PERMISSIONS:
            raise Invalid(f"'{permission}' is not in {list(PERMISSIONS)}")
        language = fields.get("language") or "English"
        if language not in LANGUAGES:
            raise Invalid(f"'{language}' is not in {list(LANGUAGES)}")
        now = time.time()
        ds = Dataset(
            tenant=tenant,
            id=uuid.uuid1().hex,
            name=name,
            namespace="",
            project="",
            database="",
            data_processing_strategy="",
            created_at=now,
            settings={
                "description": fields.get("description") or None,
                "avatar": fields.get("avatar") or "",
                "language": language,
                "permission": permission,
                "embedding_model": self._check_embedding_model(fields.get("embedding_model")),
                "chunk_method": method,
                "parser_config": parser_config,
                "similarity_threshold": 0.2,
                "vector_similarity_weight": 0.3,
            },
            updated_at=now,
        )
        # Record first, then the unique name: a crash in between leaves an invisible record.
        self._ds.put_dataset(ds)
        try:
            self._ds.claim_name(tenant, name, ds.id)
        except Conflict:
            self._ds.discard(ds)
            raise Conflict("Duplicated dataset name in creating dataset.") from None
        return ds

    def update(self, tenant: str, dataset_id: str, fields: Mapping[str, Any]) -> Dataset:
        ds = self.get(tenant, dataset_id)
        if "tenant_id" in fields and fields["tenant_id"] != tenant:
            raise Invalid("Can't change `tenant_id`.")
        if "id" in fields and fields["id"] != ds.id:
            raise Invalid("Can't change `id`.")
        stats = self.stats(tenant, ds)
        for counter, value in (
            ("chunk_count", stats.chunk_count),
            ("document_count", stats.document_count),
        ):
            if counter in fields and fields[counter] != value:
                raise Invalid(f"Can't change `{counter}`.")
        settings = dict(ds.settings)
        if "chunk_method" in fields and fields["chunk_method"] != settings["chunk_method"]:
            method = check_chunk_method(fields["chunk_method"])
            if stats.chunk_count:
                raise Invalid("If `chunk_count` is not 0, `chunk_method` is not changeable.")
            settings["chunk_method"] = method
            if "parser_config" not in fields:
                settings["parser_config"] = default_parser_config(method)
        if "parser_config" in fields:
            settings["parser_config"] = {
                **default_parser_config(settings["chunk_method"]),
                **check_parser_config(fields["parser_config"]),
            }
        if "embedding_model" in fields:
            model = self._check_embedding_model(fields["embedding_model"])
            if model != settings["embedding_model"] and stats.chunk_count:
                raise Invalid("If `chunk_count` is not 0, `embedding_model` is not changeable.")
            settings["embedding_model"] = model
        if "permission" in fields:
            if fields["permission"] not in PERMISSIONS:
                raise Invalid(f"'{fields['permission']}' is not in {list(PERMISSIONS)}")
            settings["permission"] = fields["permission"]
        if "language" in fields:
            if fields["language"] not in LANGUAGES:
                raise Invalid(f"'{fields['language']}' is not in {list(LANGUAGES)}")
            settings["language"] = fields["language"]
        for key in ("description", "avatar"):
            if key in fields:
                settings[key] = fields[key]
        for key in ("similarity_threshold", "vector_similarity_weight"):
            if key in fields:
                v = fields[key]
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                    raise Invalid(f"`{key}` must be a number between 0 and 1")
                settings[key] = float(v)
        name = ds.name
        if "name" in fields:
            name = self._check_name(fields["name"])
        new = replace(ds, name=name, settings=settings, updated_at=time.time())
        if name.lower() != ds.name.lower():
            try:
                self._ds.claim_name(tenant, name, ds.id)
            except Conflict:
                raise Conflict("Duplicated dataset name in updating dataset.") from None
            self._ds.put_dataset(new)
            self._ds.release_name(tenant, ds.name)
        else:
            self._ds.put_dataset(new)
        return new

    def delete(self, tenant: str, ids: Sequence[str] | None) -> int:
        """Delete these datasets (all of the tenant's with None). Every id is checked before
        anything is deleted, so a bad id deletes nothing."""
        targets = (
            self.datasets(tenant)
            if ids is None
            else [self.get(tenant, i) for i in dict.fromkeys(check_ids(ids, "ids"))]
        )
        for ds in targets:
            self._ds.purge(ds, self._ds.documents(tenant, ds.id))
        return len(targets)

    # ------------------------------------------------------------------ documents

    def document(self, tenant: str, dataset_id: str, doc_id: str) -> tuple[Dataset, Document]:
        ds = self.get(tenant, dataset_id)
        doc = self._ds.document(tenant, ds.id, doc_id) if doc_id else None
        if doc is None:
            raise NotFound(f"You don't own the document {doc_id}.")
        return ds, doc

    def documents(self, tenant: str, dataset_id: str) -> tuple[Dataset, list[Document]]:
        ds = self.get(tenant, dataset_id)
        return ds, self._ds.documents(tenant, ds.id)

    def upload(
        self, tenant: str, dataset_id: str, files: Sequence[tuple[str | None, BinaryIO]]
    ) -> list[Document]:
        ds = self.get(tenant, dataset_id)
        if not files:
            raise Invalid("No file part!")
        names = []
        for filename, _ in files:
            if not filename:
                raise Invalid("No file selected!")
            name = clean_filename(filename)
            ext = os.path.splitext(name)[1].lower()
            if ext not in SUPPORTED_EXTENSIONS:
                raise Invalid(
                    f"This type of file has not been supported yet! ({name}; supported:"
                    f" {', '.join(SUPPORTED_EXTENSIONS)})"
                )
            names.append(name)
        taken = {d.filename for d in self._ds.documents(tenant, ds.id)}
        out = []
        for name, (_, stream) in zip(names, files, strict=True):
            unique = _unique_name(name, taken)
            res = self._ds.upload_to(tenant, ds, unique, stream)
            if not res.duplicate:
                taken.add(unique)
                method = ds.settings.get("chunk_method", "naive")
                doc = replace(
                    res.document,
                    extra={
                        "chunk_method": method,
                        "parser_config": ds.settings.get("parser_config")
                        or default_parser_config(method),
                    },
                )
                self._ds.save_document(tenant, doc)
                out.append(doc)
            else:
                out.append(res.document)
        return out

    def update_document(
        self, tenant: str, dataset_id: str, doc_id: str, fields: Mapping[str, Any]
    ) -> Document:
        ds = self.get(tenant, dataset_id)
        doc = self._ds.document(tenant, ds.id, doc_id)
        if doc is None:
            raise NotFound("The dataset does not have the document.")
        for counter, value in (
            ("chunk_count", doc.chunk_count),
            ("token_count", doc.token_count),
            ("progress", doc.progress),
        ):
            if counter in fields and fields[counter] != value:
                raise Invalid(f"Can't change `{counter}`.")
        extra = dict(doc.extra)
        new = doc
        if "name" in fields and fields["name"] != doc.filename:
            name = clean_filename(fields["name"] if isinstance(fields["name"], str) else None)
            if os.path.splitext(name)[1].lower() != os.path.splitext(doc.filename)[1].lower():
                raise Invalid("The extension of file can't be changed")
            if any(
                d.filename == name and d.id != doc.id for d in self._ds.documents(tenant, ds.id)
            ):
                raise Conflict("Duplicated document name in the same dataset.")
            new = replace(new, filename=name)
        method = extra.get("chunk_method") or ds.settings.get("chunk_method", "naive")
        reset = False
        if "chunk_method" in fields and fields["chunk_method"] != method:
            method = check_chunk_method(fields["chunk_method"])
            extra["chunk_method"] = method
            extra["parser_config"] = default_parser_config(method)
            reset = True
        if "parser_config" in fields:
            extra["parser_config"] = {
                **default_parser_config(method),
                **check_parser_config(fields["parser_config"]),
            }
        if reset and doc.status == DocStatus.RUNNING:
            # The run would finish it DONE with chunks of the old method, and as UNSTART it
            # could no longer be stopped.
            raise Invalid(f"Document {doc.filename} is being parsed; stop it first.")
        new = replace(new, extra=extra, updated_at=time.time())
        if reset and doc.status != DocStatus.UNSTART:
            # A new chunk method makes the old chunks wrong: back to unparsed, as RAGFlow does.
            self._ds.drop_chunks(tenant, doc)
            new = replace(
                new,
                status=DocStatus.UNSTART,
                progress=0.0,
                message="",
                chunk_count=0,
                token_count=0,
            )
        self._ds.save_document(tenant, new)
        return new

    def open(self, tenant: str, dataset_id: str, doc_id: str) -> tuple[Document, BinaryIO]:
        try:
            _, doc = self.document(tenant, dataset_id, doc_id)
        except NotFound:
            # Same answer for another tenant's dataset and a wrong document id.
            raise NotFound(f"The dataset not own the document {doc_id}.") from None
        try:
            return doc, self._ds.open_document(tenant, doc)
        except NotFound:
            raise NotFound(f"The file of document {doc_id} is missing from storage.") from None

    def delete_documents(self, tenant: str, dataset_id: str, ids: Sequence[str] | None) -> int:
        _, docs = self.documents(tenant, dataset_id)
        by_id = {d.id: d for d in docs}
        if ids is None:
            targets = docs
        else:
            targets = []
            for i in dict.fromkeys(check_ids(ids, "ids")):
                if i not in by_id:
                    raise NotFound(f"Document not found: {i}")
                targets.append(by_id[i])
        for d in targets:
            self._ds.remove_document(tenant, d, remove_blob=True)
        return len(targets)

    def _pick(self, tenant: str, dataset_id: str, ids: Any) -> tuple[Dataset, list[Document]]:
        if not ids:
            raise Invalid("`document_ids` is required")
        ds, docs = self.documents(tenant, dataset_id)
        by_id = {d.id: d for d in docs}
        picked = []
        for i in dict.fromkeys(check_ids(ids, "document_ids")):
            if i not in by_id:
                raise NotFound(f"You don't own the document {i}.")
            picked.append(by_id[i])
        return ds, picked

    def parse(self, tenant: str, dataset_id: str, ids: Any) -> str:
        """Start parsing; DONE, FAIL and CANCEL documents may be parsed again."""
        ds, docs = self._pick(tenant, dataset_id, ids)
        for d in docs:
            if d.status == DocStatus.RUNNING:
                raise Invalid(f"Document {d.filename} is being parsed; stop it first.")
        return self._ingestion.parse(tenant, ds, docs, {d.id: self.strategy(ds, d) for d in docs})

    def stop(self, tenant: str, dataset_id: str, ids: Any) -> None:
        _, docs = self._pick(tenant, dataset_id, ids)
        self._ingestion.stop(tenant, docs)

    def strategy(self, ds: Dataset, doc: Document) -> DataProcessingStrategy:
        method = doc.extra.get("chunk_method") or ds.settings.get("chunk_method", "naive")
        config = doc.extra.get("parser_config") or ds.settings.get("parser_config") or {}
        return strategy_for(method, config)


def check_ids(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise Invalid(f"`{field}` must be a list of strings")
    return value


def _unique_name(name: str, taken: set[str]) -> str:
    """RAGFlow's rule: a second `a.txt` in a dataset becomes `a(1).txt`."""
    if name not in taken:
        return name
    stem, ext = os.path.splitext(name)
    n = 1
    while f"{stem}({n}){ext}" in taken:
        n += 1
    return f"{stem}({n}){ext}"
