"""LlamaFarm datasets: list, strategies, create, delete, upload, process, remove file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamafarm.models import (
    DatasetCreate,
    DatasetDetails,
    DatasetEnvelope,
    DatasetList,
    DatasetPublic,
    FileDetail,
    ProcessPublic,
    RemovedFile,
    Strategies,
    UploadPublic,
)
from pasture.domain.documents import DocStatus
from pasture.services.datasets import Dataset, Document

router = APIRouter(prefix="/v1/projects/{namespace}/{project}/datasets", tags=["datasets"])


def _public(ds: Dataset, docs: list[Document], details: bool) -> DatasetPublic:
    return DatasetPublic(
        name=ds.name,
        database=ds.database,
        data_processing_strategy=ds.data_processing_strategy,
        files=[d.id for d in docs],
        details=DatasetDetails(
            total_files=len(docs),
            total_size_bytes=sum(d.size for d in docs),
            file_details=[
                FileDetail(
                    hash=d.id,
                    original_filename=d.filename,
                    size=d.size,
                    timestamp=d.created_at,
                    status=d.status.value,
                    chunks=d.chunk_count,
                    error=d.message if d.status == DocStatus.FAIL else None,
                )
                for d in docs
            ],
        )
        if details
        else None,
    )


@router.get("", response_model=DatasetList, response_model_exclude_none=True)
def list_datasets(
    namespace: str,
    project: str,
    c: ContainerDep,
    tenant: TenantDep,
    include_extra_details: bool = True,
) -> DatasetList:
    out = [
        _public(ds, c.datasets.documents(tenant, ds.id), include_extra_details)
        for ds in c.datasets.list_datasets(tenant, namespace, project)
    ]
    return DatasetList(total=len(out), datasets=out)


@router.get("/strategies", response_model=Strategies)
def strategies(namespace: str, project: str, c: ContainerDep, tenant: TenantDep) -> Strategies:
    s, d = c.datasets.strategies(tenant, namespace, project)
    return Strategies(data_processing_strategies=s, databases=d)


@router.post("", response_model=DatasetEnvelope, response_model_exclude_none=True)
def create_dataset(
    namespace: str, project: str, body: DatasetCreate, c: ContainerDep, tenant: TenantDep
) -> DatasetEnvelope:
    ds = c.datasets.create(
        tenant, namespace, project, body.name, body.data_processing_strategy, body.database
    )
    return DatasetEnvelope(dataset=_public(ds, [], details=False))


@router.delete("/{dataset}", response_model=DatasetEnvelope, response_model_exclude_none=True)
def delete_dataset(
    namespace: str, project: str, dataset: str, c: ContainerDep, tenant: TenantDep
) -> DatasetEnvelope:
    ds, docs = c.datasets.delete(tenant, namespace, project, dataset)
    return DatasetEnvelope(dataset=_public(ds, docs, details=False))


@router.post("/{dataset}/data", response_model=UploadPublic)
def upload_file(
    namespace: str,
    project: str,
    dataset: str,
    file: Annotated[UploadFile, File()],
    c: ContainerDep,
    tenant: TenantDep,
) -> UploadPublic:
    res = c.datasets.upload(
        tenant, namespace, project, dataset, file.filename, file.file, file.content_type
    )
    doc = res.document
    return UploadPublic(
        filename=doc.filename,
        hash=doc.id,
        processed=doc.status == DocStatus.DONE,
        duplicate=res.duplicate,
    )


@router.post("/{dataset}/process", response_model=ProcessPublic, response_model_exclude_none=True)
def process_dataset(
    namespace: str,
    project: str,
    dataset: str,
    c: ContainerDep,
    tenant: TenantDep,
    async_processing: bool = False,
    reprocess: Annotated[
        bool, Query(description="Extension: process files already DONE again")
    ] = False,
) -> ProcessPublic:
    r = c.ingestion.process(
        tenant, namespace, project, dataset, wait=not async_processing, reprocess=reprocess
    )
    return ProcessPublic(
        message="Dataset processing started asynchronously"
        if async_processing
        else "Dataset processing completed",
        processed_files=r.processed,
        skipped_files=r.skipped,
        failed_files=r.failed,
        strategy=r.strategy,
        database=r.database,
        details=r.details,
        task_id=r.task_id if async_processing else None,
    )


@router.delete("/{dataset}/data/{file_hash}", response_model=RemovedFile)
def remove_file(
    namespace: str,
    project: str,
    dataset: str,
    file_hash: str,
    c: ContainerDep,
    tenant: TenantDep,
    remove_from_disk: bool = False,
) -> RemovedFile:
    c.datasets.remove_file(
        tenant, namespace, project, dataset, file_hash, remove_from_disk=remove_from_disk
    )
    return RemovedFile(file_hash=file_hash)
