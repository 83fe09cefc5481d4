"""Workflow on Step Functions: one execution of the generated state machine per run.

Runs and their progress live in Records, not in the execution: the Lambda tasks write each
batch's item outcomes there, so `status` is one GetItem and one Query (never the execution
history, which is paged, slow and rate-limited). DescribeExecution is consulted only while the
run is not finished, to notice an execution that failed, timed out or was stopped outside
Pasture.

Records layout (one partition per run; runs are looked up by id alone, like ThreadWorkflow's
table, and the run item names its tenant):

    pk WFRUN#<run_id>  sk RUN           kind, tenant, payload, state, error, batches, total,
                                        execution_arn, created_at, updated_at
    pk WFRUN#<run_id>  sk BATCH#<n:06>  items (the batch, in order), results
                                        {item: {state, result}} for the items that finished

Batches (of `batch_items` items) are fixed at start; the Map runs them MaxConcurrency at a
time. Only the tasks of batch n write BATCH#n (so concurrent batches never race), and `cancel`,
which marks what is unfinished CANCELLED; a task finishing after that writes its real outcomes
(ThreadWorkflow does the same), so the counts always add up to the total.

Idempotent start: the RUN item is a conditional put, then the batches are written, then the
execution is started under a name derived from the run id (Step Functions allows one execution
per name). A start that died in between left the run PENDING with no execution; the next start
of the same run writes the batches again and starts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pasture.adapters.aws.errors import error_code, translate
from pasture.domain.errors import Conflict, Invalid, NotFound
from pasture.ports import ItemOutcome, Record, Records, RunSpec, RunState, RunStatus, Workflow

log = logging.getLogger(__name__)

RUN_SK = "RUN"
_BATCH = "BATCH#"
# Step Functions execution names: 1-80 characters; these are always safe.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def run_pk(run_id: str) -> str:
    return f"WFRUN#{run_id}"


def batch_sk(n: int) -> str:
    return f"{_BATCH}{n:06d}"


def execution_name(run_id: str) -> str:
    """The run's execution name: the id itself when it is a valid name (uuids are), else a
    readable prefix plus a hash of the whole id, so distinct ids never share a name."""
    if _SAFE_NAME.fullmatch(run_id):
        return run_id
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:40]
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:32]}"


def item_state(outcome: ItemOutcome) -> str:
    """The same mapping as ThreadWorkflow: ok, cancelled, or failed."""
    if outcome.ok:
        return RunState.SUCCEEDED.value
    return RunState.CANCELLED.value if outcome.result.get("cancelled") else RunState.FAILED.value


@dataclass(frozen=True)
class Batch:
    n: int
    items: tuple[str, ...]
    results: dict[str, dict[str, Any]]  # item -> {"state", "result"}
    updated_at: float = 0.0

    def unfinished(self) -> list[str]:
        return [i for i in self.items if i not in self.results]


def _batch(n: int, data: Mapping[str, Any]) -> Batch:
    return Batch(n, tuple(data["items"]), dict(data["results"]), data.get("updated_at", 0.0))


class RunStore:
    """The records of runs, shared by the workflow (start, status, cancel) and the Lambda tasks
    (workflow_tasks.py), so both read and write one layout."""

    def __init__(self, records: Records) -> None:
        self._records = records

    def run(self, run_id: str) -> dict[str, Any] | None:
        rec = self._records.get(run_pk(run_id), RUN_SK)
        return dict(rec.data) if rec else None

    def create(self, spec: RunSpec) -> bool:
        """Write the run item (PENDING, no batches yet); False when the run already exists."""
        now = time.time()
        data = {
            "run_id": spec.run_id,
            "kind": spec.kind,
            "tenant": spec.tenant,
            "payload": dict(spec.payload),
            "state": RunState.PENDING.value,
            "error": None,
            "batches": 0,
            "total": len(spec.items),
            "execution_arn": None,
            "created_at": now,
            "updated_at": now,
        }
        try:
            self._records.put(Record(run_pk(spec.run_id), RUN_SK, data), if_absent=True)
        except Conflict:
            return False
        return True

    def write_batches(self, run_id: str, items: Sequence[str], batch_items: int) -> int:
        """Cut the items into batches and write them (idempotent); returns how many."""
        batches = [items[i : i + batch_items] for i in range(0, len(items), batch_items)]
        for n, chunk in enumerate(batches):
            self._put_batch(run_id, n, chunk, {})
        return len(batches)

    def update_run(self, run_id: str, **changes: Any) -> dict[str, Any]:
        data = self.run(run_id)
        if data is None:
            raise NotFound(f"run {run_id!r} not found")
        data.update(changes, updated_at=time.time())
        self._records.put(Record(run_pk(run_id), RUN_SK, data), if_absent=False)
        return data

    def batch(self, run_id: str, n: int) -> Batch:
        rec = self._records.get(run_pk(run_id), batch_sk(n))
        if rec is None:
            raise NotFound(f"batch {n} of run {run_id!r} not found")
        return _batch(n, rec.data)

    def batches(self, run_id: str) -> list[Batch]:
        return [
            _batch(int(r.sk[len(_BATCH) :]), r.data)
            for r in self._records.query(run_pk(run_id), _BATCH, limit=None)
        ]

    def record(self, run_id: str, n: int, outcomes: Mapping[str, ItemOutcome]) -> None:
        """Write the outcomes of (some of) batch n's items; other items keep theirs."""
        b = self.batch(run_id, n)
        results = dict(b.results)
        for item in b.items:
            out = outcomes.get(item)
            if out is not None:
                results[item] = {"state": item_state(out), "result": dict(out.result)}
        self._put_batch(run_id, b.n, b.items, results)

    def end_unfinished(self, run_id: str, state: RunState, result: Mapping[str, Any]) -> None:
        """Every item not finished yet ends in `state` with `result`."""
        for b in self.batches(run_id):
            todo = b.unfinished()
            if todo:
                results = dict(b.results)
                for item in todo:
                    results[item] = {"state": state.value, "result": dict(result)}
                self._put_batch(run_id, b.n, b.items, results)

    def _put_batch(
        self, run_id: str, n: int, items: Sequence[str], results: Mapping[str, Any]
    ) -> None:
        self._records.put(
            Record(
                run_pk(run_id),
                batch_sk(n),
                {"items": list(items), "results": dict(results), "updated_at": time.time()},
            ),
            if_absent=False,
        )


class StepFunctionsWorkflow(Workflow):
    """`client`: a boto3 Step Functions client; `state_machine_arn`: the machine generated by
    state_machine.py, whose tasks run the item handlers in the ingest Lambda function.

    `kinds`: the workflow kinds that function serves (default: the pipelines of
    `state_machine.default_pipelines()`, i.e. ingest); starting another kind is Invalid, as it
    is locally. `batch_items`: items per Map iteration (one Lambda invocation per step): small
    enough that a batch fits one 15-minute invocation, big enough to embed chunks together.
    """

    def __init__(
        self,
        client: Any,
        records: Records,
        state_machine_arn: str,
        *,
        kinds: Collection[str] | None = None,
        batch_items: int = 8,
    ) -> None:
        if batch_items < 1:
            raise ValueError("batch_items must be at least 1")
        if kinds is None:
            from pasture.adapters.aws.state_machine import default_pipelines

            kinds = default_pipelines().keys()
        self._client = client
        self._store = RunStore(records)
        self._arn = state_machine_arn
        self._kinds = frozenset(kinds)
        self._batch = batch_items

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "Step Functions", operation) from exc

    def _execution_arn(self, run_id: str) -> str:
        # stateMachine ARN "arn:aws:states:<region>:<account>:stateMachine:<name>" ->
        # execution ARN "arn:aws:states:<region>:<account>:execution:<name>:<execution name>".
        prefix, _, name = self._arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{name}:{execution_name(run_id)}"

    # ------------------------------------------------------------------ port

    def start(self, spec: RunSpec) -> RunStatus:
        if spec.kind not in self._kinds:
            raise Invalid(f"unknown workflow kind {spec.kind!r}")
        created = self._store.create(spec)
        run = self._store.run(spec.run_id)
        assert run is not None  # just written, or there before
        if run["execution_arn"] is None and run["state"] == RunState.PENDING.value:
            # This start created the run, or completes one whose starter died before
            # StartExecution (a retried start: same items). Every start sends the same input
            # under the same name, so Step Functions answers the running execution again, or
            # ExecutionAlreadyExists once it has closed: never a second execution.
            if not created:
                log.info("completing the start of run %s", spec.run_id)
            n = self._store.write_batches(spec.run_id, spec.items, self._batch)
            run = self._store.update_run(spec.run_id, batches=n, total=len(spec.items))
            arn = self._start_execution(run)
            fresh = self._store.run(spec.run_id)
            if fresh is not None and fresh["state"] == RunState.PENDING.value:
                self._store.update_run(spec.run_id, execution_arn=arn, state="RUNNING")
            else:  # cancelled while we were starting it
                self._store.update_run(spec.run_id, execution_arn=arn)
                self._stop(arn)
        return self.status(spec.run_id)

    def _start_execution(self, run: Mapping[str, Any]) -> str:
        execution_input = json.dumps(
            {"run_id": run["run_id"], "kind": run["kind"], "batches": list(range(run["batches"]))},
            separators=(",", ":"),
        )
        try:
            resp = self._client.start_execution(
                stateMachineArn=self._arn,
                name=execution_name(run["run_id"]),
                input=execution_input,
            )
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return self._execution_arn(run["run_id"])
            raise translate(exc, "Step Functions", "StartExecution") from exc
        except BotoCoreError as exc:
            raise translate(exc, "Step Functions", "StartExecution") from exc
        return str(resp["executionArn"])

    def status(self, run_id: str) -> RunStatus:
        run = self._store.run(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        if not RunState(run["state"]).finished and run["execution_arn"]:
            run = self._reconcile(run)
        return self._status(run)

    def cancel(self, run_id: str) -> RunStatus:
        st = self.status(run_id)
        if st.state.finished:
            return st
        # The run goes CANCELLED first: tasks in flight check it before each document and
        # stop early (a Lambda invocation is not interrupted by StopExecution).
        run = self._store.update_run(run_id, state=RunState.CANCELLED.value)
        if run["execution_arn"]:
            self._stop(run["execution_arn"])
        self._store.end_unfinished(run_id, RunState.CANCELLED, {"cancelled": True})
        return self.status(run_id)

    # ------------------------------------------------------------------ internals

    def _stop(self, execution_arn: str) -> None:
        try:
            self._client.stop_execution(executionArn=execution_arn, cause="cancelled in Pasture")
        except ClientError as exc:
            if error_code(exc) != "ExecutionDoesNotExist":
                raise translate(exc, "Step Functions", "StopExecution") from exc
        except BotoCoreError as exc:
            raise translate(exc, "Step Functions", "StopExecution") from exc

    def _reconcile(self, run: dict[str, Any]) -> dict[str, Any]:
        """An execution that ended without its last task (failed, timed out, stopped outside
        Pasture) ends the run: unfinished items FAILED (CANCELLED when stopped)."""
        desc = self._call(
            "DescribeExecution", self._client.describe_execution, executionArn=run["execution_arn"]
        )
        ex_state = desc.get("status")
        if ex_state == "SUCCEEDED":
            # complete_run wrote the run just before the execution ended: read it again.
            fresh = self._store.run(run["run_id"])
            if fresh is not None and RunState(fresh["state"]).finished:
                return fresh
            return self._store.update_run(run["run_id"], state=RunState.SUCCEEDED.value)
        if ex_state in ("FAILED", "TIMED_OUT"):
            error = f"execution {ex_state.lower().replace('_', ' ')}" + (
                f": {desc['error']}" if desc.get("error") else ""
            )
            self._store.end_unfinished(run["run_id"], RunState.FAILED, {"error": error})
            return self._store.update_run(run["run_id"], state=RunState.FAILED.value, error=error)
        if ex_state == "ABORTED":
            self._store.end_unfinished(run["run_id"], RunState.CANCELLED, {"cancelled": True})
            return self._store.update_run(run["run_id"], state=RunState.CANCELLED.value)
        return run

    def _status(self, run: Mapping[str, Any]) -> RunStatus:
        state = RunState(run["state"])
        counts = {s: 0 for s in ("SUCCEEDED", "FAILED", "CANCELLED")}
        results: dict[str, Mapping[str, Any]] = {}
        updated = run["updated_at"]
        for b in self._store.batches(run["run_id"]) if run["total"] else []:
            updated = max(updated, b.updated_at)
            for item in b.items:
                r = b.results.get(item)
                if r is None:
                    continue
                counts[r["state"]] += 1
                if state.finished:
                    results[item] = r["result"]
        return RunStatus(
            run_id=run["run_id"],
            kind=run["kind"],
            tenant=run["tenant"],
            state=state,
            total=run["total"],
            succeeded=counts["SUCCEEDED"],
            failed=counts["FAILED"],
            cancelled=counts["CANCELLED"],
            results=results,
            payload=run["payload"],
            error=run["error"],
            created_at=run["created_at"],
            updated_at=updated,
        )
