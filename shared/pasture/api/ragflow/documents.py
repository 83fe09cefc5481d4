"""RAGFlow documents, parsing and chunks, plural paths and the singular draft's aliases."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pasture.api.deps import ContainerDep
from pasture.api.ragflow import shapes
from pasture.api.ragflow.envelope import Body, RagflowTenant, ok
from pasture.bootstrap import Container
from pasture.domain.errors import Invalid
from pasture.services.chunks import ChunkView
from pasture.services.tenant_datasets import check_ids, check_page, paged

router = APIRouter(prefix="/api/v1", tags=["ragflow"])

DS = "/datasets/{dataset_id}"
DS1 = "/dataset/{dataset_id}"  # the singular draft
_DOC_READ_ONLY = (
    "document_id",
    "knowledgebase_id",
    "thumbnail",
    "source_type",
    "type",
    "created_by",
    "size",
    "token_count",
    "chunk_count",
    "progress",
    "progress_msg",
    "process_begin_at",
    "process_duation",
    "process_duration",
)


# ---------------------------------------------------------------------- documents


async def _upload(request: Request, c: Container, tenant: str, dataset_id: str) -> JSONResponse:
    c.tenant_datasets.get(tenant, dataset_id)  # an unknown dataset answers before the body
    try:
        form = await request.form(max_files=1000)
    except Exception:
        raise Invalid("No file part!") from None
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    try:
        docs = await run_in_threadpool(
            c.tenant_datasets.upload,
            tenant,
            dataset_id,
            [(f.filename, f.file) for f in files],
        )
    finally:
        await form.close()
    ds = c.tenant_datasets.get(tenant, dataset_id)
    return ok([shapes.document(d, ds, tenant) for d in docs])


@router.post(DS + "/documents")
async def upload_documents(
    dataset_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return await _upload(request, c, tenant, dataset_id)


@router.post(DS1 + "/document")
async def upload_documents_singular(
    dataset_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return await _upload(request, c, tenant, dataset_id)


def _list_documents(
    c: Container, tenant: str, dataset_id: str, q: dict[str, Any], *, zero_page: bool
) -> JSONResponse:
    ds, docs = c.tenant_datasets.documents(tenant, dataset_id)
    page = q.get("page")
    if zero_page and page in ("0", 0):  # the singular draft counts from 0
        page = 1
    p = check_page(page, q.get("page_size"), q.get("orderby"), q.get("desc"), 30)
    if q.get("id"):
        docs = [d for d in docs if d.id == q["id"]]
        if not docs:
            raise Invalid(f"You don't own the document {q['id']}.")
    if q.get("name"):
        docs = [d for d in docs if d.filename == q["name"]]
        if not docs:
            raise Invalid(f"You don't own the document {q['name']}.")
    if q.get("keywords"):
        kw = str(q["keywords"]).casefold()
        docs = [d for d in docs if kw in d.filename.casefold()]
    total = len(docs)
    key = (lambda d: d.created_at) if p.orderby == "create_time" else (lambda d: d.updated_at)
    page_docs = paged(docs, p, key)
    return ok({"total": total, "docs": [shapes.document(d, ds, tenant) for d in page_docs]})


@router.get(DS + "/documents")
def list_documents(
    dataset_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return _list_documents(c, tenant, dataset_id, dict(request.query_params), zero_page=False)


@router.get(DS1 + "/info")
def list_documents_singular(
    dataset_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return _list_documents(c, tenant, dataset_id, dict(request.query_params), zero_page=True)


@router.put(DS + "/documents/{document_id}")
def update_document(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.tenant_datasets.update_document(tenant, dataset_id, document_id, body or {})
    return ok()


@router.put(DS1 + "/info/{document_id}")
def update_document_singular(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    fields = shapes.plural_body(body or {})
    for ro in _DOC_READ_ONLY:
        fields.pop(ro, None)
    c.tenant_datasets.update_document(tenant, dataset_id, document_id, fields)
    return ok()


def _download(c: Container, tenant: str, dataset_id: str, document_id: str) -> StreamingResponse:
    doc, stream = c.tenant_datasets.open(tenant, dataset_id, document_id)

    def body() -> Iterator[bytes]:
        with stream:
            while block := stream.read(256 * 1024):
                yield block

    media = mimetypes.guess_type(doc.filename)[0] or "application/octet-stream"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(doc.filename)}",
            "Content-Length": str(doc.size),
            "Last-Modified": formatdate(doc.updated_at, usegmt=True),
        },
    )


@router.get(DS + "/documents/{document_id}", response_model=None)
def download_document(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant
) -> StreamingResponse:
    return _download(c, tenant, dataset_id, document_id)


@router.get(DS1 + "/document/{document_id}", response_model=None)
def download_document_singular(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant
) -> StreamingResponse:
    return _download(c, tenant, dataset_id, document_id)


@router.delete(DS + "/documents")
def delete_documents(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    ids = (body or {}).get("ids")
    # Left out or null: every document of the dataset, as RAGFlow documents.
    c.tenant_datasets.delete_documents(
        tenant, dataset_id, None if ids is None else check_ids(ids, "ids")
    )
    return ok()


# ---------------------------------------------------------------------- parsing


@router.post(DS + "/chunks")
def parse_documents(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.tenant_datasets.parse(tenant, dataset_id, (body or {}).get("document_ids"))
    return ok()


@router.post(DS1 + "/chunk")
def parse_documents_singular(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    fields = shapes.plural_body(body or {})
    c.tenant_datasets.parse(tenant, dataset_id, fields.get("document_ids"))
    return ok()


@router.delete(DS + "/chunks")
def stop_parsing(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.tenant_datasets.stop(tenant, dataset_id, (body or {}).get("document_ids"))
    return ok()


@router.delete(DS1 + "/chunk")
def stop_parsing_singular(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    fields = shapes.plural_body(body or {})
    c.tenant_datasets.stop(tenant, dataset_id, fields.get("document_ids"))
    return ok()


# ---------------------------------------------------------------------- chunks


def _chunk(v: ChunkView, document_name: str) -> dict[str, Any]:
    c = v.chunk
    created = v.created_at or None
    return {
        "id": c.chunk_id,
        "content": c.text,
        "document_id": c.document_id,
        "document_name": document_name,
        "document_keyword": document_name,
        "docnm_kwd": document_name,
        "dataset_id": c.dataset_id,
        "important_keywords": v.important_keywords,
        "available": v.available,
        "available_int": int(v.available),
        "image_id": "",
        "positions": [],
        "create_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)) if created else "",
        "create_timestamp": created or 0.0,
    }


def _list_chunks(
    c: Container, tenant: str, dataset_id: str, document_id: str, q: dict[str, Any]
) -> JSONResponse:
    p = check_page(q.get("page"), q.get("page_size"), None, None, 1024)
    ds, doc, total, chunks = c.chunks.list(
        tenant,
        dataset_id,
        document_id,
        keywords=q.get("keywords"),
        chunk_id=q.get("id"),
        page=p.page,
        page_size=p.page_size,
    )
    return ok(
        {
            "total": total,
            "chunks": [_chunk(v, doc.filename) for v in chunks],
            "doc": shapes.document(doc, ds, tenant),
        }
    )


@router.get(DS + "/documents/{document_id}/chunks")
def list_chunks(
    dataset_id: str, document_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return _list_chunks(c, tenant, dataset_id, document_id, dict(request.query_params))


@router.get(DS1 + "/document/{document_id}/chunk")
def list_chunks_singular(
    dataset_id: str, document_id: str, request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return _list_chunks(c, tenant, dataset_id, document_id, dict(request.query_params))


@router.post(DS + "/documents/{document_id}/chunks")
def add_chunk(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    b = body or {}
    v = c.chunks.add(tenant, dataset_id, document_id, b.get("content"), b.get("important_keywords"))
    _, doc = c.tenant_datasets.document(tenant, dataset_id, document_id)
    return ok({"chunk": _chunk(v, doc.filename)})


@router.post(DS1 + "/document/{document_id}/chunk")
def add_chunks_singular(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    """The draft sends `content` as a list of texts (or one text)."""
    b = body or {}
    content = b.get("content")
    texts = content if isinstance(content, list) else [content]
    if not texts:  # an empty list adds nothing: say so rather than answer success
        raise Invalid("`content` is required")
    out = [
        c.chunks.add(tenant, dataset_id, document_id, t, b.get("important_keywords")) for t in texts
    ]
    _, doc = c.tenant_datasets.document(tenant, dataset_id, document_id)
    return ok({"chunks": [_chunk(v, doc.filename) for v in out]})


@router.put(DS + "/documents/{document_id}/chunks/{chunk_id}")
def update_chunk(
    dataset_id: str,
    document_id: str,
    chunk_id: str,
    c: ContainerDep,
    tenant: RagflowTenant,
    body: Body = None,
) -> JSONResponse:
    c.chunks.update(tenant, dataset_id, document_id, chunk_id, body or {})
    return ok()


@router.put(DS1 + "/document/{document_id}/chunk")
def update_chunk_singular(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    """The draft names the chunk in the body (`chunk_id`) and its availability `status`."""
    b = dict(body or {})
    chunk_id = b.pop("chunk_id", None)
    if not isinstance(chunk_id, str) or not chunk_id:
        raise Invalid("`chunk_id` is required")
    fields: dict[str, Any] = {
        k: b[k] for k in ("content", "important_keywords", "available") if k in b
    }
    if "status" in b and "available" not in fields:
        fields["available"] = str(b["status"]) == "1"
    c.chunks.update(tenant, dataset_id, document_id, chunk_id, fields)
    return ok()


def _delete_chunks(
    c: Container, tenant: str, dataset_id: str, document_id: str, ids: Any
) -> JSONResponse:
    c.chunks.delete(
        tenant, dataset_id, document_id, None if ids is None else check_ids(ids, "chunk_ids")
    )
    return ok()


@router.delete(DS + "/documents/{document_id}/chunks")
def delete_chunks(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _delete_chunks(c, tenant, dataset_id, document_id, (body or {}).get("chunk_ids"))


@router.delete(DS1 + "/document/{document_id}/chunk")
def delete_chunks_singular(
    dataset_id: str, document_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    fields = shapes.plural_body(body or {})
    return _delete_chunks(c, tenant, dataset_id, document_id, fields.get("chunk_ids"))
