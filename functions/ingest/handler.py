"""The `ingest` Lambda: every task of the generated workflow state machine.

The container (and the dispatcher over it) is built once per process, on the first event, and
kept for the warm invocations after it; heavy adapters (ONNX, OpenSearch) load on first use.
"""

from __future__ import annotations

from typing import Any

from pasture.adapters.aws.workflow_tasks import WorkflowTasks

_tasks: WorkflowTasks | None = None  # tests put theirs here


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _tasks
    if _tasks is None:
        from pasture.bootstrap import build_container
        from pasture.config import get_settings

        _tasks = WorkflowTasks.from_container(build_container(get_settings()))
    return _tasks.dispatch(event)
