"""RAGFlow retrieval: `POST /api/v1/retrieval`, and the singular draft's
`GET /api/v1/dataset/{dataset_id}/retrieval` (a GET with a JSON body `{"query_text"}`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pasture.api.deps import ContainerDep
from pasture.api.ragflow import shapes
from pasture.api.ragflow.envelope import Body, RagflowTenant, ok
from pasture.bootstrap import Container
from pasture.domain.errors import Invalid
from pasture.services.chunks import keywords_of
from pasture.services.dataset_search import DatasetSearch, DatasetSearchResult

router = APIRouter(prefix="/api/v1", tags=["ragflow"])


def _number(body: dict[str, Any], key: str, default: float, kind: type = float) -> Any:
    v = body.get(key)
    if v is None:
        return kind(default)
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise Invalid(f"`{key}` must be a number")
    try:
        return kind(v) if kind is float else int(float(v))
    except ValueError:
        raise Invalid(f"`{key}` must be a number") from None


def _ids(body: dict[str, Any], *keys: str) -> tuple[str, ...]:
    for k in keys:
        v = body.get(k)
        if v is None or v == []:
            continue
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
            raise Invalid(f"`{k}` should be a list")
        return tuple(v)
    return ()


def request_of(body: dict[str, Any]) -> DatasetSearch:
    if body.get("rerank_id"):
        raise Invalid(
            f"`rerank_id` {body['rerank_id']} doesn't exist: no reranking model is configured"
        )
    q = body.get("question")
    if q is not None and not isinstance(q, str):
        raise Invalid("`question` must be a string")
    return DatasetSearch(
        question=q or "",
        # RAGFlow's client sends `documents` where the server reads `document_ids`.
        dataset_ids=_ids(body, "dataset_ids", "datasets"),
        document_ids=_ids(body, "document_ids", "documents"),
        page=_number(body, "page", 1, int),
        page_size=_number(body, "page_size", 30, int),
        similarity_threshold=_number(body, "similarity_threshold", 0.2),
        vector_similarity_weight=_number(body, "vector_similarity_weight", 0.3),
        top_k=_number(body, "top_k", 1024, int),
        keyword=bool(body.get("keyword")),
        highlight=bool(body.get("highlight")),
    )


def view(r: DatasetSearchResult) -> dict[str, Any]:
    chunks = []
    for c in r.chunks:
        h = c.hit
        item = {
            "id": h.chunk_id,
            "content": h.text,
            "content_ltks": " ".join(h.text.lower().split()),
            "document_id": h.document_id,
            "document_keyword": c.document_name,
            "document_name": c.document_name,
            "dataset_id": h.dataset_id,
            "kb_id": h.dataset_id,
            "image_id": "",
            "important_keywords": keywords_of(h.metadata),
            "positions": [],
            "similarity": c.similarity,
            "vector_similarity": c.vector_similarity,
            "term_similarity": c.term_similarity,
        }
        if c.highlight is not None:
            item["highlight"] = c.highlight
        chunks.append(item)
    return {
        "total": r.total,
        "chunks": chunks,
        "doc_aggs": [
            {"doc_name": a.doc_name, "doc_id": a.doc_id, "count": a.count} for a in r.doc_aggs
        ],
    }


async def _retrieve(c: Container, tenant: str, req: DatasetSearch) -> JSONResponse:
    extra = ""
    if req.keyword:  # check before the model call; otherwise `search` checks
        await run_in_threadpool(c.dataset_search.check, tenant, req)
        extra = await c.dataset_search.keywords(req.question)
    result = await run_in_threadpool(c.dataset_search.search, tenant, req, extra)
    return ok(view(result))


@router.post("/retrieval")
async def retrieval(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    return await _retrieve(c, tenant, request_of(body or {}))


@router.get("/dataset/{dataset_id}/retrieval")
async def retrieval_singular(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    fields = shapes.plural_body(body or {})
    fields["dataset_ids"] = [dataset_id]
    return await _retrieve(c, tenant, request_of(fields))
