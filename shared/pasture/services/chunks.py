"""Chunks of a tenant-level dataset's documents, edited one by one (RAGFlow's chunk API).

A chunk added by hand has the id md5(content + document id + dataset id), so adding the same
text to the same document twice is one chunk. (RAGFlow hashes content + document id only, but
its document ids are unique; ours are content hashes, so the same file in two datasets, or in
two tenants', has one document id, while chunk ids are unique index-wide.) Edits re-embed the
text; `available` false keeps a chunk stored but out of retrieval. The document's chunk and
token counts follow.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pasture.domain.documents import DocStatus
from pasture.domain.errors import Invalid, NotFound
from pasture.domain.search import IndexedChunk
from pasture.ports import Embedder, SearchIndex, Tokenizer
from pasture.services.datasets import Dataset, DatasetService, Document
from pasture.services.tenant_datasets import TenantDatasets, check_ids


@dataclass(frozen=True)
class ChunkView:
    chunk: IndexedChunk
    important_keywords: list[str]
    available: bool
    created_at: float


def keywords_of(meta: Any) -> list[str]:
    raw = meta.get("important_keywords")
    if not raw:
        return []
    try:
        value = json.loads(str(raw))
    except ValueError:
        return [str(raw)]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def view(c: IndexedChunk) -> ChunkView:
    md = c.metadata
    return ChunkView(
        c,
        keywords_of(md),
        md.get("available", True) is not False,
        float(md.get("created_at", 0.0) or 0.0),
    )


def chunk_id(content: str, document_id: str, dataset_id: str) -> str:
    """The id of a chunk added by hand: the same text in the same document is one chunk."""
    return hashlib.md5((content + document_id + dataset_id).encode("utf-8")).hexdigest()


def _check_keywords(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise Invalid("`important_keywords` is required to be a list")
    return [k.strip() for k in value if k.strip()]


class ChunkService:
    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder,
        tokenizer: Tokenizer,
        datasets: DatasetService,
        tenant_datasets: TenantDatasets,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._tokenizer = tokenizer
        self._datasets = datasets
        self._kb = tenant_datasets

    def _embed(self, content: str, keywords: list[str]) -> Any:
        # Keywords are part of what the vector means, as RAGFlow weighs them in.
        text = content if not keywords else f"{content}\n{' '.join(keywords)}"
        return self._embedder.embed([text])[0]

    def _recount(self, tenant: str, doc: Document) -> Document:
        total, chunks = self._index.list_chunks(
            tenant, doc.dataset_id, doc.id, keywords=None, chunk_id=None, offset=0, limit=100_000
        )
        tokens = sum(int(c.metadata.get("token_count", 0) or 0) for c in chunks)
        new = replace(doc, chunk_count=total, token_count=tokens, updated_at=time.time())
        self._datasets.save_document(tenant, new)
        return new

    def list(
        self,
        tenant: str,
        dataset_id: str,
        doc_id: str,
        *,
        keywords: str | None,
        chunk_id: str | None,
        page: int,
        page_size: int,
    ) -> tuple[Dataset, Document, int, list[ChunkView]]:
        ds, doc = self._kb.document(tenant, dataset_id, doc_id)
        total, chunks = self._index.list_chunks(
            tenant,
            ds.id,
            doc.id,
            keywords=keywords or None,
            chunk_id=chunk_id or None,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        return ds, doc, total, [view(c) for c in chunks]

    def add(
        self, tenant: str, dataset_id: str, doc_id: str, content: Any, keywords: Any
    ) -> ChunkView:
        ds, doc = self._kb.document(tenant, dataset_id, doc_id)
        if not isinstance(content, str) or not content.strip():
            raise Invalid("`content` is required")
        kws = _check_keywords(keywords)
        cid = chunk_id(content, doc.id, ds.id)
        existing = self._index.get_chunks(tenant, ds.id, [cid]).get(cid)
        created = float(existing.metadata.get("created_at", 0.0) or 0.0) if existing else 0.0
        now = time.time()
        chunk = IndexedChunk(
            chunk_id=cid,
            tenant=tenant,
            dataset_id=ds.id,
            document_id=doc.id,
            text=content,
            vector=self._embed(content, kws),
            metadata={
                "document_id": doc.id,
                "filename": doc.filename,
                "token_count": len(self._tokenizer.spans([content])[0]),
                "parser": "manual",
                "available": True,
                "important_keywords": json.dumps(kws, ensure_ascii=False),
                "created_at": created or now,
            },
        )
        self._index.upsert([chunk])
        doc = self._recount(tenant, doc)
        if doc.status == DocStatus.UNSTART:  # a document with chunks is searchable: done
            self._datasets.save_document(
                tenant, replace(doc, status=DocStatus.DONE, progress=1.0, message="")
            )
        return view(chunk)

    def update(
        self, tenant: str, dataset_id: str, doc_id: str, chunk_id: str, fields: dict[str, Any]
    ) -> ChunkView:
        ds, doc = self._kb.document(tenant, dataset_id, doc_id)
        found = self._index.get_chunks(tenant, ds.id, [chunk_id]).get(chunk_id)
        if found is None or found.document_id != doc.id:
            raise NotFound(f"Can't find this chunk {chunk_id}")
        md = dict(found.metadata)
        content = found.text
        if "content" in fields:
            if not isinstance(fields["content"], str) or not fields["content"].strip():
                raise Invalid("`content` is required")
            content = fields["content"]
            md["token_count"] = len(self._tokenizer.spans([content])[0])
        kws = keywords_of(md)
        if "important_keywords" in fields:
            kws = _check_keywords(fields["important_keywords"])
            md["important_keywords"] = json.dumps(kws, ensure_ascii=False)
        if "available" in fields:
            flag = fields["available"]
            if flag in (0, 1) and not isinstance(flag, bool):
                flag = bool(flag)
            if not isinstance(flag, bool):
                raise Invalid("`available` must be a boolean")
            md["available"] = flag
        vector = found.vector
        if content != found.text or "important_keywords" in fields:
            vector = self._embed(content, kws)
        chunk = replace(found, text=content, vector=vector, metadata=md)
        self._index.upsert([chunk])
        self._recount(tenant, doc)
        return view(chunk)

    def delete(self, tenant: str, dataset_id: str, doc_id: str, ids: Sequence[str] | None) -> int:
        ds, doc = self._kb.document(tenant, dataset_id, doc_id)
        if ids is None:
            n = self._index.delete_document(tenant, ds.id, doc.id)
        else:
            wanted = list(dict.fromkeys(check_ids(ids, "chunk_ids")))
            found = self._index.get_chunks(tenant, ds.id, wanted)
            missing = [i for i in wanted if i not in found or found[i].document_id != doc.id]
            if missing:
                raise NotFound(f"Chunks not found in the document: {', '.join(missing)}")
            n = self._index.delete_chunks(tenant, ds.id, wanted)
        self._recount(tenant, doc)
        return n
