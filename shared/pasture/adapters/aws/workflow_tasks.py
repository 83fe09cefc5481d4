"""The tasks of the generated state machine, as the ingest Lambda function runs them.

`functions/ingest/handler.py` builds one `WorkflowTasks` per process and hands it every event:
`{"step": <name>, "state": {run_id, kind, batch, work[, error]}}` (state_machine.py). A step:

1. reads the run (kind, tenant, payload) and its batch's items from Records (RunStore);
2. loads the batch's intermediate data from the BlobStore key `work` (none before the first
   step), runs the step, and writes the result under a new key
   `work/<run_id>/<batch>/<step>` (never over its input, so a retried step starts again
   from the same input);
3. after the last step, records the item outcomes in the batch's record and deletes the
   batch's work blobs; returns the next state (keys only: Step Functions caps a state at
   256 KB).

Kinds with a multi-step pipeline (ingest: `IngestionService.pipeline`) run its steps; any other
kind is the one step `handle`, which calls the kind's ItemHandler (HandlerPipeline). Errors:
`Unavailable` leaves as PastureTransientError (the state machine retries it with backoff);
anything else goes to the Catch, and `record_failure` ends the batch's unfinished items FAIL
with a readable reason. Cancellation: steps get `cancelled()`, which reads the run's state.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pasture.adapters.aws.state_machine import (
    COMPLETE_STEP,
    FAIL_STEP,
    HANDLE_STEP,
    TRANSIENT_ERROR,
)
from pasture.adapters.aws.stepfunctions_workflow import RunStore
from pasture.domain.errors import NotFound, PastureError, Unavailable
from pasture.ports import BlobStore, ItemHandler, ItemOutcome, Records, RunSpec, RunState

if TYPE_CHECKING:
    from pasture.bootstrap import Container

log = logging.getLogger(__name__)


class PastureTransientError(Exception):
    """Raised for `Unavailable`: Lambda reports the class name as the error, which the state
    machine's Retry lists (state_machine.TRANSIENT_ERROR)."""


assert PastureTransientError.__name__ == TRANSIENT_ERROR


class StepPipeline(Protocol):
    """Steps over one batch whose state survives a trip through bytes (IngestPipeline)."""

    @property
    def steps(self) -> Sequence[str]: ...

    def begin(self, items: Sequence[str]) -> Any: ...

    def run(self, step: str, spec: RunSpec, batch: Any, cancelled: Callable[[], bool]) -> Any: ...

    def fail(self, spec: RunSpec, batch: Any, message: str) -> Any: ...

    def outcomes(self, batch: Any) -> Mapping[str, ItemOutcome]: ...

    def dump(self, batch: Any) -> bytes: ...

    def load(self, raw: bytes) -> Any: ...


@dataclass
class _HandlerBatch:
    items: tuple[str, ...]
    outcomes: dict[str, ItemOutcome] = field(default_factory=dict)


class HandlerPipeline:
    """A plain ItemHandler as a one-step pipeline (`handle`), for any workflow kind."""

    steps: Sequence[str] = (HANDLE_STEP,)

    def __init__(self, handler: ItemHandler) -> None:
        self._handler = handler

    def begin(self, items: Sequence[str]) -> _HandlerBatch:
        return _HandlerBatch(tuple(items))

    def run(
        self, step: str, spec: RunSpec, batch: _HandlerBatch, cancelled: Callable[[], bool]
    ) -> _HandlerBatch:
        if cancelled():  # as ThreadWorkflow: a cancelled run starts no batch
            batch.outcomes = {i: ItemOutcome(False, {"cancelled": True}) for i in batch.items}
            return batch
        got = self._handler(spec, batch.items, cancelled)
        batch.outcomes = {
            i: got.get(i) or ItemOutcome(False, {"error": "no outcome reported"})
            for i in batch.items
        }
        return batch

    def fail(self, spec: RunSpec, batch: _HandlerBatch, message: str) -> _HandlerBatch:
        for i in batch.items:
            batch.outcomes.setdefault(i, ItemOutcome(False, {"error": message}))
        return batch

    def outcomes(self, batch: _HandlerBatch) -> Mapping[str, ItemOutcome]:
        return batch.outcomes

    def dump(self, batch: _HandlerBatch) -> bytes:
        return json.dumps(
            {
                "items": list(batch.items),
                "outcomes": {k: [o.ok, dict(o.result)] for k, o in batch.outcomes.items()},
            }
        ).encode()

    def load(self, raw: bytes) -> _HandlerBatch:
        data = json.loads(raw)
        return _HandlerBatch(
            tuple(data["items"]),
            {k: ItemOutcome(ok, res) for k, (ok, res) in data["outcomes"].items()},
        )


def failure_message(error: Mapping[str, Any] | None) -> str:
    """A readable reason from a Catch's `{Error, Cause}`. A Lambda function error's Cause is
    its JSON `{errorType, errorMessage, ...}`: Pasture's own errors carry messages meant for
    users; anything else is named, not quoted (no stack traces or internals in a status)."""
    error = error or {}
    name = str(error.get("Error") or "unknown error")
    cause: Any = error.get("Cause")
    try:
        cause = json.loads(cause) if isinstance(cause, str) else cause
    except ValueError:
        cause = None
    message = cause.get("errorMessage") if isinstance(cause, dict) else None
    if name == TRANSIENT_ERROR and message:
        return f"{message} (gave up after retries)"
    if name in _PASTURE_ERRORS and message:
        return str(message)
    if name == "States.Timeout":
        return "internal error: the step timed out"
    return f"internal error: {name}"


def _pasture_error_names() -> frozenset[str]:
    seen: set[str] = set()
    todo: list[type] = [PastureError]
    while todo:
        cls = todo.pop()
        seen.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(seen)


_PASTURE_ERRORS = _pasture_error_names()


class WorkflowTasks:
    """Runs one state-machine task per call (`dispatch`)."""

    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        handlers: Mapping[str, ItemHandler],
        pipelines: Mapping[str, StepPipeline],
    ) -> None:
        self._store = RunStore(records)
        self._blobs = blobs
        self._handlers = handlers
        self._pipelines = pipelines

    @classmethod
    def from_container(cls, c: Container) -> WorkflowTasks:
        from pasture.services.ingestion import INGEST

        return cls(
            c.records,
            c.blobs,
            c.handlers,
            # On AWS a step that meets `Unavailable` is retried by the state machine.
            {INGEST: c.ingestion.pipeline(raise_transient=True)},
        )

    def dispatch(self, event: Mapping[str, Any]) -> dict[str, Any]:
        step = str(event.get("step") or "")
        state = dict(event.get("state") or {})
        try:
            if step == COMPLETE_STEP:
                return self._complete(state)
            if step == FAIL_STEP:
                return self._record_failure(state)
            return self._step(step, state)
        except Unavailable as exc:
            raise PastureTransientError(exc.message) from exc

    # ------------------------------------------------------------------ steps

    def _pipeline(self, kind: str) -> StepPipeline:
        pipe = self._pipelines.get(kind)
        if pipe is not None:
            return pipe
        handler = self._handlers.get(kind)
        if handler is None:
            raise NotFound(f"no handler for workflow kind {kind!r}")
        return HandlerPipeline(handler)

    def _spec(self, run_id: str, items: Sequence[str]) -> RunSpec:
        run = self._store.run(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        # The handler sees the batch's items (all a task reads), not the whole run's.
        return RunSpec(run_id, run["kind"], run["tenant"], tuple(items), run["payload"])

    def _cancelled(self, run_id: str) -> Callable[[], bool]:
        def cancelled() -> bool:
            run = self._store.run(run_id)
            return run is None or run["state"] == RunState.CANCELLED.value

        return cancelled

    def _load(self, pipe: StepPipeline, work: str, items: Sequence[str]) -> Any:
        if not work:
            return pipe.begin(items)
        with self._blobs.open(work) as f:
            return pipe.load(f.read())

    def _step(self, step: str, state: dict[str, Any]) -> dict[str, Any]:
        run_id, kind, n = state["run_id"], state["kind"], int(state["batch"])
        pipe = self._pipeline(kind)
        if step not in pipe.steps:
            raise NotFound(f"workflow kind {kind!r} has no step {step!r}")
        items = self._store.batch(run_id, n).items
        spec = self._spec(run_id, items)
        batch = pipe.run(
            step, spec, self._load(pipe, state.get("work", ""), items), self._cancelled(run_id)
        )
        if step == pipe.steps[-1]:
            self._store.record(run_id, n, pipe.outcomes(batch))
            self._blobs.delete_prefix(_work_prefix(run_id, n))
            return {"run_id": run_id, "kind": kind, "batch": n, "work": ""}
        key = f"{_work_prefix(run_id, n)}{step}"
        self._blobs.put(key, io.BytesIO(pipe.dump(batch)))
        return {"run_id": run_id, "kind": kind, "batch": n, "work": key}

    def _record_failure(self, state: dict[str, Any]) -> dict[str, Any]:
        run_id, kind, n = state["run_id"], state["kind"], int(state["batch"])
        message = failure_message(state.get("error"))
        log.warning("run %s batch %d: a step gave up: %s", run_id, n, message)
        pipe = self._pipeline(kind)
        items = self._store.batch(run_id, n).items
        spec = self._spec(run_id, items)
        try:
            batch = self._load(pipe, state.get("work", ""), items)
        except PastureError:  # the work blob cannot be read (gone, or what failed the step)
            batch = pipe.begin(items)  # fail every item of the batch from scratch
        batch = pipe.fail(spec, batch, message)
        self._store.record(run_id, n, pipe.outcomes(batch))
        self._blobs.delete_prefix(_work_prefix(run_id, n))
        return {"run_id": run_id, "kind": kind, "batch": n, "work": ""}

    def _complete(self, state: dict[str, Any]) -> dict[str, Any]:
        run_id = state["run_id"]
        run = self._store.run(run_id)
        if run is not None and not RunState(run["state"]).finished:
            self._store.update_run(run_id, state=RunState.SUCCEEDED.value)
        self._blobs.delete_prefix(f"work/{run_id}/")
        return {"run_id": run_id, "kind": state.get("kind", "")}


def _work_prefix(run_id: str, n: int) -> str:
    return f"work/{run_id}/{n:06d}/"
