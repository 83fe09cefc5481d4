"""How core values look on RAGFlow's wire: field names, epoch-millisecond times and RFC 1123
dates, `run` states, and the singular draft's field names mapped onto the plural ones."""

from __future__ import annotations

import os
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

from pasture.services.datasets import Dataset, Document
from pasture.services.tenant_datasets import DatasetStats, default_parser_config


def ms(ts: float) -> int:
    return int(ts * 1000)


def date(ts: float | None) -> str | None:
    return formatdate(ts, usegmt=True) if ts else None


def times(created: float, updated: float) -> dict[str, Any]:
    return {
        "create_time": ms(created),
        "create_date": date(created),
        "update_time": ms(updated),
        "update_date": date(updated),
    }


def dataset(ds: Dataset, stats: DatasetStats) -> dict[str, Any]:
    s = ds.settings
    return {
        "id": ds.id,
        "name": ds.name,
        "avatar": s.get("avatar", ""),
        "description": s.get("description"),
        "language": s.get("language", "English"),
        "embedding_model": s.get("embedding_model", ""),
        "permission": s.get("permission", "me"),
        "chunk_method": s.get("chunk_method", "naive"),
        "parser_config": _config(s.get("parser_config"), s.get("chunk_method", "naive")),
        "similarity_threshold": s.get("similarity_threshold", 0.2),
        "vector_similarity_weight": s.get("vector_similarity_weight", 0.3),
        "chunk_count": stats.chunk_count,
        "document_count": stats.document_count,
        "token_num": stats.token_count,
        "status": "1",
        "tenant_id": ds.tenant,
        "created_by": ds.tenant,
        **times(ds.created_at, ds.updated_at or ds.created_at),
    }


def _config(stored: Any, method: str) -> Any:
    # `{}` is a real config (table, one, ...); only a missing one falls back to the defaults.
    return default_parser_config(method) if stored is None else stored


def file_type(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return "pdf" if ext == ".pdf" else "doc"


def document(doc: Document, ds: Dataset, tenant: str) -> dict[str, Any]:
    method = doc.extra.get("chunk_method") or ds.settings.get("chunk_method", "naive")
    begin = doc.extra.get("process_begin_at")
    duration = (
        max(0.0, doc.updated_at - begin)
        if begin and doc.status.value in ("DONE", "FAIL", "CANCEL")
        else 0.0
    )
    return {
        "id": doc.id,
        "name": doc.filename,
        "location": doc.filename,
        "dataset_id": doc.dataset_id,
        "knowledgebase_id": doc.dataset_id,
        "chunk_method": method,
        "parser_config": _config(
            doc.extra.get("parser_config")
            if "parser_config" in doc.extra
            else ds.settings.get("parser_config"),
            method,
        ),
        "run": doc.status.value,
        "progress": doc.progress if doc.status.value != "CANCEL" else 0.0,
        "progress_msg": doc.message,
        "process_begin_at": date(begin),
        "process_duation": duration,  # sic: RAGFlow's own spelling, kept for its clients
        "process_duration": duration,
        "size": doc.size,
        "type": file_type(doc.filename),
        "token_count": doc.token_count,
        "chunk_count": doc.chunk_count,
        "status": "1",
        "source_type": "local",
        "thumbnail": "",
        "created_by": tenant,
        **times(doc.created_at, doc.updated_at),
    }


# The singular draft's names for the plural API's fields.
SINGULAR_FIELDS = {
    "dataset_name": "name",
    "parse_method": "chunk_method",
    "parser_method": "chunk_method",
    "document_name": "name",
    "documents": "document_ids",
    "chunks": "chunk_ids",
    "query_text": "question",
}
_PARSE_METHODS = {"general": "naive"}


def plural_body(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        key = SINGULAR_FIELDS.get(k, k)
        if key == "chunk_method" and isinstance(v, str):
            v = _PARSE_METHODS.get(v, v)
        out.setdefault(key, v)
    return out
