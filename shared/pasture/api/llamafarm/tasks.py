"""LlamaFarm tasks: status of async work; DELETE cancels (a Pasture extension)."""

from __future__ import annotations

from fastapi import APIRouter

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamafarm.models import TaskPublic
from pasture.services.ingestion import TaskView

router = APIRouter(prefix="/v1/projects/{namespace}/{project}/tasks", tags=["tasks"])


def _public(t: TaskView) -> TaskPublic:
    return TaskPublic(
        task_id=t.task_id,
        state=t.state,
        meta={"current": t.current, "total": t.total},
        result=t.result,
        error=t.error,
        traceback=None,
    )


@router.get("/{task_id}", response_model=TaskPublic)
def get_task(
    namespace: str, project: str, task_id: str, c: ContainerDep, tenant: TenantDep
) -> TaskPublic:
    return _public(c.ingestion.task(tenant, namespace, project, task_id))


@router.delete("/{task_id}", response_model=TaskPublic)
def cancel_task(
    namespace: str, project: str, task_id: str, c: ContainerDep, tenant: TenantDep
) -> TaskPublic:
    return _public(c.ingestion.cancel_task(tenant, namespace, project, task_id))
