"""LlamaFarm examples: /v1/examples (list), import one as a project, import its data."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from pasture.api.deps import ContainerDep, TenantDep, get_tenant
from pasture.bootstrap import Container
from pasture.services.examples import Example, ExampleService, ImportResult, human_size

router = APIRouter(prefix="/v1/examples", tags=["examples"])


class ExampleSummary(BaseModel):
    id: str
    slug: str
    title: str
    description: str
    primaryModel: str
    tags: list[str]
    dataset_count: int
    data_size_bytes: int
    data_size_human: str
    project_size_bytes: int
    project_size_human: str
    updated_at: str


class ExampleList(BaseModel):
    examples: list[ExampleSummary]


class ImportProjectBody(BaseModel):
    # Unknown fields are refused (422): a misspelt option must not be silently dropped.
    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str
    process: bool = True


class ImportDataBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str
    project: str
    include_strategies: bool = True
    process: bool = True


class ImportPublic(BaseModel):
    project: str
    namespace: str
    datasets: list[str]
    task_ids: list[str]


def examples_of(c: Container) -> ExampleService:
    """Stateless over the container's services (the catalogue itself is cached per process)."""
    return ExampleService(c.projects, c.datasets, c.ingestion)


def _summary(ex: Example) -> ExampleSummary:
    return ExampleSummary(
        id=ex.id,
        slug=ex.slug,
        title=ex.title,
        description=ex.description,
        primaryModel=ex.primary_model,
        tags=list(ex.tags),
        dataset_count=ex.dataset_count,
        data_size_bytes=ex.data_size_bytes,
        data_size_human=human_size(ex.data_size_bytes),
        project_size_bytes=ex.project_size_bytes,
        project_size_human=human_size(ex.project_size_bytes),
        updated_at=ex.updated_at,
    )


def _public(r: ImportResult) -> ImportPublic:
    return ImportPublic(
        project=r.project, namespace=r.namespace, datasets=r.datasets, task_ids=r.task_ids
    )


# The catalogue is no tenant's data, but with keys configured every route needs one.
@router.get("", response_model=ExampleList, dependencies=[Depends(get_tenant)])
def list_examples(c: ContainerDep) -> ExampleList:
    return ExampleList(examples=[_summary(ex) for ex in examples_of(c).list_examples()])


@router.post("/{example_id}/import-project", response_model=ImportPublic)
def import_project(
    example_id: str, body: ImportProjectBody, c: ContainerDep, tenant: TenantDep
) -> ImportPublic:
    return _public(
        examples_of(c).import_project(
            tenant, example_id, body.namespace, body.name, process=body.process
        )
    )


@router.post("/{example_id}/import-data", response_model=ImportPublic)
def import_data(
    example_id: str, body: ImportDataBody, c: ContainerDep, tenant: TenantDep
) -> ImportPublic:
    return _public(
        examples_of(c).import_data(
            tenant,
            example_id,
            body.namespace,
            body.project,
            include_strategies=body.include_strategies,
            process=body.process,
        )
    )
