"""LlamaFarm projects: /v1/projects/{namespace}[/{project}]."""

from __future__ import annotations

from fastapi import APIRouter

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamafarm.models import (
    ProjectCreate,
    ProjectEnvelope,
    ProjectList,
    ProjectPublic,
    ProjectUpdate,
)
from pasture.services.projects import Project

router = APIRouter(prefix="/v1/projects", tags=["projects"])


def _public(p: Project) -> ProjectPublic:
    return ProjectPublic(
        namespace=p.namespace, name=p.name, config=p.config.model_dump(mode="json")
    )


@router.get("/{namespace}", response_model=ProjectList)
def list_projects(namespace: str, c: ContainerDep, tenant: TenantDep) -> ProjectList:
    projects = c.projects.list_projects(tenant, namespace)
    return ProjectList(total=len(projects), projects=[_public(p) for p in projects])


@router.post("/{namespace}", response_model=ProjectEnvelope)
def create_project(
    namespace: str, body: ProjectCreate, c: ContainerDep, tenant: TenantDep
) -> ProjectEnvelope:
    return ProjectEnvelope(
        project=_public(c.projects.create(tenant, namespace, body.name, body.config_template))
    )


@router.get("/{namespace}/{project}", response_model=ProjectEnvelope)
def get_project(
    namespace: str, project: str, c: ContainerDep, tenant: TenantDep
) -> ProjectEnvelope:
    return ProjectEnvelope(project=_public(c.projects.get(tenant, namespace, project)))


@router.put("/{namespace}/{project}", response_model=ProjectEnvelope)
def update_project(
    namespace: str, project: str, body: ProjectUpdate, c: ContainerDep, tenant: TenantDep
) -> ProjectEnvelope:
    return ProjectEnvelope(
        project=_public(c.projects.update(tenant, namespace, project, body.config))
    )


@router.delete("/{namespace}/{project}", response_model=ProjectEnvelope)
def delete_project(
    namespace: str, project: str, c: ContainerDep, tenant: TenantDep
) -> ProjectEnvelope:
    deleted = c.datasets.delete_project(tenant, namespace, project)
    c.chat.purge_sessions(tenant, namespace, project)  # sessions would outlive it otherwise
    return ProjectEnvelope(project=_public(deleted))
