"""RAGFlow datasets: `/api/v1/datasets` and the singular draft's `/api/v1/dataset`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pasture.api.deps import ContainerDep
from pasture.api.ragflow import shapes
from pasture.api.ragflow.envelope import Body, RagflowTenant, ok
from pasture.bootstrap import Container
from pasture.domain.errors import Invalid, NotFound
from pasture.services.tenant_datasets import check_ids, check_page, paged

router = APIRouter(prefix="/api/v1", tags=["ragflow"])

# What the singular draft sends back along with a change but that nobody can change.
_DATASET_READ_ONLY = ("tenant_id", "chunk_count", "document_count", "id")


def _view(c: Container, tenant: str, ds: Any) -> dict[str, Any]:
    return shapes.dataset(ds, c.tenant_datasets.stats(tenant, ds))


@router.post("/datasets")
def create_dataset(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    body = body or {}
    return ok(_view(c, tenant, c.tenant_datasets.create(tenant, body)))


@router.post("/dataset")
def create_dataset_singular(
    c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    body = shapes.plural_body(body or {})
    for ro in _DATASET_READ_ONLY:
        body.pop(ro, None)
    return ok(_view(c, tenant, c.tenant_datasets.create(tenant, body)))


@router.delete("/datasets")
def delete_datasets(c: ContainerDep, tenant: RagflowTenant, body: Body = None) -> JSONResponse:
    body = body or {}
    ids = body.get("ids")
    # Left out or null means every dataset, as RAGFlow documents; [] deletes nothing.
    c.tenant_datasets.delete(tenant, None if ids is None else check_ids(ids, "ids"))
    return ok()


def _singular_delete(
    body: dict[str, Any], c: Container, tenant: str, path_id: str | None
) -> JSONResponse:
    ids = body.get("ids")
    names = body.get("names")
    if ids is not None and names is not None:
        raise Invalid("`names` and `ids` are exclusive")
    if names is not None:
        by_name = {d.name.lower(): d.id for d in c.tenant_datasets.datasets(tenant)}
        ids = []
        for n in check_ids(names, "names"):
            if n.lower() not in by_name:
                raise NotFound("Try to delete non-existent dataset.")
            ids.append(by_name[n.lower()])
    elif ids is None:
        if not path_id:
            raise Invalid("`ids` or `names` is required")
        ids = [path_id]
    c.tenant_datasets.delete(tenant, check_ids(ids, "ids"))
    return ok()


@router.delete("/dataset")
def delete_dataset_singular(
    c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _singular_delete(body or {}, c, tenant, None)


@router.delete("/dataset/{dataset_id}")
def delete_dataset_by_id_singular(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    return _singular_delete(body or {}, c, tenant, dataset_id)


@router.put("/datasets/{dataset_id}")
def update_dataset(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    c.tenant_datasets.update(tenant, dataset_id, body or {})
    return ok()


@router.put("/dataset/{dataset_id}")
def update_dataset_singular(
    dataset_id: str, c: ContainerDep, tenant: RagflowTenant, body: Body = None
) -> JSONResponse:
    body = shapes.plural_body(body or {})
    for ro in _DATASET_READ_ONLY:
        body.pop(ro, None)
    c.tenant_datasets.update(tenant, dataset_id, body)
    return ok()


def _list(c: Container, tenant: str, q: dict[str, Any], *, zero_page: bool) -> JSONResponse:
    page = q.get("page")
    if zero_page and page in ("0", 0):  # the draft counts pages from 0
        page = 1
    p = check_page(page, q.get("page_size"), q.get("orderby"), q.get("desc"), 30)
    items = c.tenant_datasets.datasets(tenant)
    if q.get("id"):
        items = [d for d in items if d.id == q["id"]]
    if q.get("name"):
        items = [d for d in items if d.name.lower() == str(q["name"]).lower()]
    if (q.get("id") or q.get("name")) and not items:
        raise NotFound("The dataset doesn't exist")
    key = (lambda d: d.created_at) if p.orderby == "create_time" else (lambda d: d.updated_at)
    return ok([_view(c, tenant, d) for d in paged(items, p, key)])


@router.get("/datasets")
def list_datasets(request: Request, c: ContainerDep, tenant: RagflowTenant) -> JSONResponse:
    return _list(c, tenant, dict(request.query_params), zero_page=False)


@router.get("/dataset")
def list_datasets_singular(
    request: Request, c: ContainerDep, tenant: RagflowTenant
) -> JSONResponse:
    return _list(c, tenant, dict(request.query_params), zero_page=True)
