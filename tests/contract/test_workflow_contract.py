"""Contract of the Workflow port. Add adapters to WORKFLOWS (Step Functions joins with moto /
stubs); each factory returns a started workflow running the given handlers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from pasture.adapters.local.sqlite_db import SqliteDb
from pasture.adapters.local.thread_workflow import ThreadWorkflow
from pasture.domain.errors import Invalid, NotFound
from pasture.ports import ItemHandler, ItemOutcome, RunSpec, RunState, RunStatus, Workflow


def _thread_workflow(d: Path, handlers: Mapping[str, ItemHandler]) -> ThreadWorkflow:
    wf = ThreadWorkflow(SqliteDb(d / "wf.db"), handlers, workers=2, batch_items=3)
    wf.start_workers()
    return wf


def _stepfunctions_workflow(d: Path, handlers: Mapping[str, ItemHandler]) -> Workflow:
    # The real generated state machine, executed by moto, its tasks in process (the helper).
    from tests.helpers.stepfunctions import contract_workflow

    return contract_workflow(d, handlers)


WORKFLOWS: dict[str, Callable[[Path, Mapping[str, ItemHandler]], Workflow]] = {
    "threads": _thread_workflow,
    "stepfunctions": _stepfunctions_workflow,
}


class Recorder:
    """A handler that records its batches; items named 'bad*' fail, 'boom' raises."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(
        self, spec: RunSpec, items: Sequence[str], cancelled: Callable[[], bool]
    ) -> Mapping[str, ItemOutcome]:
        with self.lock:
            self.batches.append(list(items))
        if "boom" in items:
            raise RuntimeError("handler bug")
        out = {}
        for item in items:
            if cancelled():
                out[item] = ItemOutcome(False, {"cancelled": True})
                continue
            time.sleep(self.delay)
            out[item] = ItemOutcome(
                not item.startswith("bad"), {"item": item, "n": spec.payload.get("n")}
            )
        return out


@pytest.fixture(params=sorted(WORKFLOWS))
def make(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[Recorder], Workflow]]:
    made: list[Workflow] = []

    def factory(handler: Recorder) -> Workflow:
        wf = WORKFLOWS[request.param](tmp_path, {"job": handler})
        made.append(wf)
        return wf

    yield factory
    for wf in made:
        stop = getattr(wf, "stop", None)
        if stop:
            stop()


def wait(wf: Workflow, run_id: str, timeout: float = 10.0) -> RunStatus:
    deadline = time.time() + timeout
    st = wf.status(run_id)
    while not st.state.finished and time.time() < deadline:
        time.sleep(0.02)
        st = wf.status(run_id)
    return st


def test_runs_every_item_in_batches(make: Callable[[Recorder], Workflow]) -> None:
    h = Recorder()
    wf = make(h)
    items = tuple(f"i{n}" for n in range(7))
    wf.start(RunSpec("r1", "job", "t", items, {"n": 42}))
    st = wait(wf, "r1")
    assert st.state == RunState.SUCCEEDED
    assert (st.total, st.succeeded, st.failed) == (7, 7, 0)
    assert st.results["i3"] == {"item": "i3", "n": 42}
    assert sorted(i for b in h.batches for i in b) == sorted(items)
    assert all(len(b) <= 3 for b in h.batches)


def test_a_failing_item_does_not_fail_the_others(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder())
    wf.start(RunSpec("r", "job", "t", ("ok1", "bad1", "ok2"), {}))
    st = wait(wf, "r")
    assert st.state == RunState.SUCCEEDED
    assert (st.succeeded, st.failed) == (2, 1)


def test_a_raising_handler_fails_its_batch_only(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder())
    wf.start(RunSpec("r", "job", "t", ("a", "boom", "c", "d", "e"), {}))
    st = wait(wf, "r")
    assert st.state == RunState.SUCCEEDED
    assert st.failed == 3 and st.succeeded == 2  # batch of 3 holding "boom" fails
    assert "internal error" in st.results["boom"]["error"]


def test_start_is_idempotent_by_run_id(make: Callable[[Recorder], Workflow]) -> None:
    h = Recorder()
    wf = make(h)
    wf.start(RunSpec("same", "job", "t", ("a", "b"), {}))
    wf.start(RunSpec("same", "job", "t", ("a", "b", "c"), {}))
    st = wait(wf, "same")
    assert st.total == 2
    time.sleep(0.1)
    assert sorted(i for b in h.batches for i in b) == ["a", "b"]


def test_empty_run_succeeds(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder())
    wf.start(RunSpec("empty", "job", "t", (), {}))
    st = wait(wf, "empty")
    assert st.state == RunState.SUCCEEDED and st.total == 0


def test_unknown_run_and_kind(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder())
    with pytest.raises(NotFound):
        wf.status("nope")
    with pytest.raises(NotFound):
        wf.cancel("nope")
    with pytest.raises(Invalid):
        wf.start(RunSpec("x", "no-such-kind", "t", ("a",), {}))


def test_cancel_stops_remaining_items(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder(delay=0.05))
    items = tuple(f"i{n}" for n in range(30))
    wf.start(RunSpec("long", "job", "t", items, {}))
    time.sleep(0.15)
    wf.cancel("long")
    st = wait(wf, "long")
    assert st.state == RunState.CANCELLED
    assert st.cancelled > 0 and st.succeeded < 30
    assert st.succeeded + st.failed + st.cancelled == 30


def test_cancel_of_a_finished_run_changes_nothing(make: Callable[[Recorder], Workflow]) -> None:
    wf = make(Recorder())
    wf.start(RunSpec("done", "job", "t", ("a",), {}))
    wait(wf, "done")
    assert wf.cancel("done").state == RunState.SUCCEEDED


def test_thread_workflow_resumes_runs_after_a_crash(tmp_path: Path) -> None:
    """Local adapter durability: a run whose process died mid-item is finished by the next one."""
    db = SqliteDb(tmp_path / "wf.db")
    h1 = Recorder()
    dead = ThreadWorkflow(db, {"job": h1}, workers=1, batch_items=2)  # never starts workers
    dead.start(RunSpec("r", "job", "t", ("a", "b", "c"), {}))
    # Simulate a worker that died holding item "a".
    db.conn().execute("UPDATE wf_items SET state='RUNNING' WHERE item='a'")
    db.conn().execute("UPDATE wf_runs SET state='RUNNING'")
    db.close()

    h2 = Recorder()
    alive = ThreadWorkflow(SqliteDb(tmp_path / "wf.db"), {"job": h2}, workers=1, batch_items=2)
    alive.start_workers()
    try:
        st = wait(alive, "r")
        assert st.state == RunState.SUCCEEDED and st.succeeded == 3
        assert sorted(i for b in h2.batches for i in b) == ["a", "b", "c"]
    finally:
        alive.stop()
