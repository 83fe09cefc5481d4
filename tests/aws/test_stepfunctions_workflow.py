"""StepFunctionsWorkflow beyond the Workflow contract: execution names, idempotent and resumed
starts, status while running, cancel, executions that end outside Pasture, error translation,
and the ingest function's own cold start. moto executes the generated state machine; its Lambda
tasks run functions/ingest/handler.py in process (tests/helpers/stepfunctions.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from pasture.adapters.aws.stepfunctions_workflow import (
    RunStore,
    StepFunctionsWorkflow,
    execution_name,
)
from pasture.domain.errors import NotFound, Unavailable, Upstream
from pasture.ports import ItemOutcome, RunSpec, RunState
from tests.helpers.aws import BUCKET, TABLE
from tests.helpers.stepfunctions import (
    SfnEnv,
    execution_status,
    load_handler_module,
    stepfunctions_env,
    wait_finished,
)


@pytest.fixture
def env() -> Iterator[SfnEnv]:
    with stepfunctions_env() as e:
        yield e


class Gate:
    """An item handler that holds its first batch until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(
        self, spec: RunSpec, items: Sequence[str], cancelled: Callable[[], bool]
    ) -> Mapping[str, ItemOutcome]:
        self.entered.set()
        self.release.wait(10)
        return {
            i: ItemOutcome(False, {"cancelled": True})
            if cancelled()
            else ItemOutcome(True, {"item": i})
            for i in items
        }


def ok(spec: RunSpec, items: Sequence[str], cancelled: Callable[[], bool]) -> dict:
    return {i: ItemOutcome(True, {"item": i}) for i in items}


def _executions(env: SfnEnv, wf: StepFunctionsWorkflow) -> list[dict[str, Any]]:
    return list(env.sfn.list_executions(stateMachineArn=wf._arn)["executions"])


def _wait_execution(env: SfnEnv, wf: StepFunctionsWorkflow, run_id: str, status: str) -> None:
    """moto closes an execution when its interpreter thread ends (after the task in flight)."""
    deadline = time.time() + 10
    while execution_status(env, wf, run_id) != status and time.time() < deadline:
        time.sleep(0.02)
    assert execution_status(env, wf, run_id) == status


def _wait_closed(env: SfnEnv, wf: StepFunctionsWorkflow, run_id: str) -> None:
    deadline = time.time() + 10
    while execution_status(env, wf, run_id) == "RUNNING" and time.time() < deadline:
        time.sleep(0.02)
    assert execution_status(env, wf, run_id) in ("ABORTED", "FAILED")


def test_execution_names_are_valid_deterministic_and_distinct() -> None:
    uid = "0b8f7c1e-3a52-4d5e-9f10-2c3b4a5d6e7f"
    assert execution_name(uid) == uid  # readable in the console
    odd = ["a/b c", "a:b", "x" * 200, "tâche#1", "a/b c "]
    names = [execution_name(r) for r in odd]
    assert len(set(names)) == len(odd)
    for n in names:
        assert 1 <= len(n) <= 80 and all(ch.isalnum() or ch in "-_" for ch in n), n
        assert n.isascii()
    assert execution_name("a/b c") == names[0]


def test_starting_a_run_twice_starts_one_execution(env: SfnEnv) -> None:
    wf = env.workflow({"job": ok})
    first = wf.start(RunSpec("same", "job", "t", ("a", "b"), {"n": 1}))
    again = wf.start(RunSpec("same", "job", "t", ("a", "b", "c"), {"n": 2}))
    assert again.total == first.total == 2 and again.payload == {"n": 1}
    st = wait_finished(wf, "same")
    assert (st.succeeded, st.total) == (2, 2)
    wf.start(RunSpec("same", "job", "t", ("a",), {}))  # after it has closed, too
    assert len(_executions(env, wf)) == 1
    assert _executions(env, wf)[0]["name"] == "same"


def test_a_start_that_died_before_its_execution_is_completed_by_the_next(env: SfnEnv) -> None:
    wf = env.workflow({"job": ok})
    spec = RunSpec("half", "job", "t", ("a", "b", "c", "d"), {})
    RunStore(env.records).create(spec)  # the first starter died right after this
    assert wf.status("half").state == RunState.PENDING
    wf.start(spec)
    st = wait_finished(wf, "half")
    assert (st.state, st.succeeded) == (RunState.SUCCEEDED, 4)
    assert len(_executions(env, wf)) == 1


def test_execution_already_exists_is_not_an_error(env: SfnEnv) -> None:
    """The run says PENDING but an execution of its name has already closed."""
    wf = env.workflow({"job": ok})
    spec = RunSpec("ghost", "job", "t", ("a",), {})
    RunStore(env.records).create(spec)
    env.sfn.start_execution(  # another input: it fails at once (no kind to route on)
        stateMachineArn=wf._arn, name="ghost", input=json.dumps({"run_id": "x", "batches": []})
    )
    _wait_execution(env, wf, "ghost", "FAILED")
    st = wf.start(spec)  # ExecutionAlreadyExists: adopted, not raised
    assert st.state == RunState.FAILED and st.error and "execution failed" in st.error
    assert (st.failed, st.total) == (1, 1)
    assert len(_executions(env, wf)) == 1


def test_status_while_running_and_once_finished(env: SfnEnv) -> None:
    gate = Gate()
    wf = env.workflow({"job": gate}, batch_items=2, max_concurrency=1)
    started = wf.start(RunSpec("r", "job", "tenant-1", ("a", "b", "c"), {"k": "v"}))
    assert started.state == RunState.RUNNING and started.total == 3
    assert gate.entered.wait(10)
    st = wf.status("r")
    assert (st.state, st.kind, st.tenant, st.payload) == (
        RunState.RUNNING,
        "job",
        "tenant-1",
        {"k": "v"},
    )
    assert (st.total, st.finished_items, st.results) == (3, 0, {})
    gate.release.set()
    st = wait_finished(wf, "r")
    assert (st.state, st.succeeded, st.failed, st.cancelled) == (RunState.SUCCEEDED, 3, 0, 0)
    assert st.results == {i: {"item": i} for i in "abc"}
    assert st.updated_at >= st.created_at and st.error is None
    _wait_execution(env, wf, "r", "SUCCEEDED")


def test_cancel_stops_the_execution_and_ends_unfinished_items(env: SfnEnv) -> None:
    gate = Gate()
    wf = env.workflow({"job": gate}, batch_items=2, max_concurrency=1)
    wf.start(RunSpec("c", "job", "t", ("a", "b", "c", "d", "e"), {}))
    assert gate.entered.wait(10)
    st = wf.cancel("c")
    assert st.state == RunState.CANCELLED
    assert (st.cancelled, st.total) == (5, 5)
    gate.release.set()  # the task in flight sees the cancel and reports its items cancelled
    # Step Functions says ABORTED at once; moto 5.2.5 ends an execution stopped while an
    # inline Map iteration is in flight FAILED (States.Runtime, an AttributeError in its
    # state_map.py) once that iteration returns. Either way nothing runs after it.
    _wait_closed(env, wf, "c")
    assert [e["state"]["batch"] for e in env.invocations] == [0]  # no batch started after
    st = wf.status("c")
    assert st.state == RunState.CANCELLED and st.finished_items == 5 and st.succeeded == 0
    assert wf.cancel("c").state == RunState.CANCELLED  # again: nothing changes


def test_cancel_of_a_finished_run_and_unknown_runs(env: SfnEnv) -> None:
    wf = env.workflow({"job": ok})
    wf.start(RunSpec("done", "job", "t", ("a",), {}))
    wait_finished(wf, "done")
    assert wf.cancel("done").state == RunState.SUCCEEDED
    # The run is finished once complete_run has recorded it; the execution closes just after.
    _wait_execution(env, wf, "done", "SUCCEEDED")
    for call in (wf.status, wf.cancel):
        with pytest.raises(NotFound):
            call("nope")


def test_an_execution_that_fails_fails_the_run(env: SfnEnv) -> None:
    wf = env.workflow({"job": ok})

    def lambda_down(event: dict[str, Any]) -> None:  # every task, record_failure too
        raise RuntimeError("the function is broken")

    env.before_invoke = lambda_down
    wf.start(RunSpec("f", "job", "t", ("a", "b"), {}))
    st = wait_finished(wf, "f")
    assert st.state == RunState.FAILED
    assert st.error is not None and "RuntimeError" in st.error
    assert (st.failed, st.total) == (2, 2)
    assert execution_status(env, wf, "f") == "FAILED"


class _Described:
    """The real client, but DescribeExecution answers `status` (what Step Functions says of
    an execution stopped from the console: moto cannot stop one mid-Map cleanly, see above)."""

    def __init__(self, client: Any, status: str) -> None:
        self._client, self._status = client, status

    def describe_execution(self, **kw: Any) -> dict[str, Any]:
        return {**self._client.describe_execution(**kw), "status": self._status}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_execution_stopped_outside_pasture_cancels_the_run(env: SfnEnv) -> None:
    gate = Gate()
    real = env.workflow({"job": gate}, batch_items=1, max_concurrency=1)
    real.start(RunSpec("s", "job", "t", ("a", "b", "c"), {}))
    assert gate.entered.wait(10)
    wf = StepFunctionsWorkflow(
        _Described(env.sfn, "ABORTED"), env.records, real._arn, kinds={"job"}
    )
    st = wf.status("s")
    gate.release.set()
    assert st.state == RunState.CANCELLED and (st.cancelled, st.total) == (3, 3)
    assert wf.status("s").state == RunState.CANCELLED  # recorded: no second look needed


def test_an_execution_that_timed_out_fails_the_run(env: SfnEnv) -> None:
    gate = Gate()
    real = env.workflow({"job": gate})
    real.start(RunSpec("slow", "job", "t", ("a", "b"), {}))
    assert gate.entered.wait(10)
    wf = StepFunctionsWorkflow(
        _Described(env.sfn, "TIMED_OUT"), env.records, real._arn, kinds={"job"}
    )
    st = wf.status("slow")
    gate.release.set()
    assert st.state == RunState.FAILED and st.error == "execution timed out"
    assert st.failed == 2 and st.results["a"] == {"error": "execution timed out"}


class _Failing:
    def __init__(self, code: str) -> None:
        self.code = code

    def __getattr__(self, operation: str) -> Any:
        def call(**_: Any) -> None:
            raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, operation)

        return call


def test_errors_are_translated(env: SfnEnv) -> None:
    arn = env.workflow({"job": ok})._arn
    wf = StepFunctionsWorkflow(_Failing("ThrottlingException"), env.records, arn, kinds={"job"})
    with pytest.raises(Unavailable):
        wf.start(RunSpec("t1", "job", "t", ("a",), {}))
    RunStore(env.records).update_run("t1", execution_arn="arn:x")
    wf = StepFunctionsWorkflow(_Failing("AccessDeniedException"), env.records, arn, kinds={"job"})
    with pytest.raises(Upstream) as err:
        wf.status("t1")
    assert "AccessDeniedException" in err.value.message and arn not in err.value.message


def test_the_ingest_function_builds_its_container_from_the_settings(
    env: SfnEnv, tmp_path: Any
) -> None:
    """Its cold start: no test-provided tasks, the aws backend from the environment."""
    from pasture.config import get_settings

    RunStore(env.records).create(RunSpec("cold", "ingest", "t", (), {}))
    fn = load_handler_module()
    settings = {
        "PASTURE_BACKEND": "aws",
        "PASTURE_TABLE": TABLE,
        "PASTURE_BUCKET": BUCKET,
        "PASTURE_DATA_DIR": str(tmp_path),
        "PASTURE_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:x",
    }
    with mock.patch.dict(os.environ, settings):
        get_settings.cache_clear()
        try:
            out = fn.handler({"step": "complete_run", "state": {"run_id": "cold"}}, None)
        finally:
            get_settings.cache_clear()
    assert out["run_id"] == "cold"
    assert RunStore(env.records).run("cold")["state"] == "SUCCEEDED"  # type: ignore[index]
    assert fn._tasks is not None  # kept for the next (warm) invocation
