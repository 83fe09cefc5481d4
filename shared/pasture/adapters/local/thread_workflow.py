"""Workflow on worker threads over a durable run table (SQLite).

Runs and their items are rows, so a process that dies mid-run loses nothing: on start, runs
left PENDING or RUNNING are queued again and their RUNNING items go back to PENDING. Item
handlers are idempotent (deterministic chunk ids), so redoing an interrupted item is safe.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pasture.adapters.local.sqlite_db import SqliteDb
from pasture.domain.errors import Invalid, NotFound
from pasture.ports import ItemHandler, ItemOutcome, RunSpec, RunState, RunStatus, Workflow

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wf_runs (
  run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, tenant TEXT NOT NULL, payload TEXT NOT NULL,
  state TEXT NOT NULL, error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS wf_items (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, item TEXT NOT NULL, state TEXT NOT NULL,
  result TEXT, PRIMARY KEY (run_id, seq));
CREATE INDEX IF NOT EXISTS wf_runs_state ON wf_runs(state);
"""


class ThreadWorkflow(Workflow):
    def __init__(
        self,
        db: SqliteDb,
        handlers: Mapping[str, ItemHandler],
        *,
        workers: int = 1,
        batch_items: int = 16,
    ) -> None:
        self._db = db
        self._handlers = handlers  # filled by bootstrap once the services exist
        self._workers = workers
        self._batch = batch_items
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._db.conn().executescript(_SCHEMA)

    # ------------------------------------------------------------------ lifecycle

    def start_workers(self) -> None:
        """Start the threads and requeue whatever a previous process left unfinished."""
        if self._threads:
            return
        with self._db.transaction() as c:
            c.execute(
                "UPDATE wf_items SET state='PENDING' WHERE state='RUNNING' AND run_id IN"
                " (SELECT run_id FROM wf_runs WHERE state IN ('PENDING','RUNNING'))"
            )
            unfinished = [
                r[0]
                for r in c.execute(
                    "SELECT run_id FROM wf_runs WHERE state IN ('PENDING','RUNNING')"
                    " ORDER BY created_at"
                )
            ]
        for run_id in unfinished:
            log.info("resuming interrupted run %s", run_id)
            self._queue.put(run_id)
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"pasture-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    # ------------------------------------------------------------------ port

    def start(self, spec: RunSpec) -> RunStatus:
        if spec.kind not in self._handlers:
            raise Invalid(f"unknown workflow kind {spec.kind!r}")
        now = time.time()
        with self._db.transaction() as c:
            inserted = c.execute(
                "INSERT OR IGNORE INTO wf_runs VALUES (?,?,?,?,?,?,?,?)",
                (
                    spec.run_id,
                    spec.kind,
                    spec.tenant,
                    json.dumps(dict(spec.payload)),
                    RunState.PENDING.value,
                    None,
                    now,
                    now,
                ),
            ).rowcount
            if inserted:
                c.executemany(
                    "INSERT INTO wf_items VALUES (?,?,?,?,NULL)",
                    [(spec.run_id, i, item, "PENDING") for i, item in enumerate(spec.items)],
                )
        if inserted:
            self._queue.put(spec.run_id)
        return self.status(spec.run_id)

    def status(self, run_id: str) -> RunStatus:
        c = self._db.conn()
        row = c.execute(
            "SELECT kind, tenant, payload, state, error, created_at, updated_at"
            " FROM wf_runs WHERE run_id=?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        kind, tenant, payload, state, error, created, updated = row
        # Pollers call this often: counts come from one aggregate; the per-item results
        # (a JSON decode per item) only once the run has finished.
        counts = {"SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 0}
        total = 0
        for istate, n in c.execute(
            "SELECT state, COUNT(*) FROM wf_items WHERE run_id=? GROUP BY state", (run_id,)
        ):
            total += n
            if istate in counts:
                counts[istate] = n
        results: dict[str, Mapping[str, Any]] = {}
        if RunState(state).finished:
            for item, result in c.execute(
                "SELECT item, result FROM wf_items WHERE run_id=? AND result IS NOT NULL ORDER BY seq",
                (run_id,),
            ):
                results[item] = json.loads(result)
        return RunStatus(
            run_id=run_id,
            kind=kind,
            tenant=tenant,
            state=RunState(state),
            total=total,
            succeeded=counts["SUCCEEDED"],
            failed=counts["FAILED"],
            cancelled=counts["CANCELLED"],
            results=results,
            payload=json.loads(payload),
            error=error,
            created_at=created,
            updated_at=updated,
        )

    def cancel(self, run_id: str) -> RunStatus:
        st = self.status(run_id)
        if st.state.finished:
            return st
        with self._lock:
            self._cancelled.add(run_id)
        with self._db.transaction() as c:
            c.execute(
                "UPDATE wf_items SET state='CANCELLED', result=? WHERE run_id=? AND state='PENDING'",
                (json.dumps({"cancelled": True}), run_id),
            )
            # A run no worker holds yet finishes now; a running one finishes in its worker.
            c.execute(
                "UPDATE wf_runs SET state='CANCELLED', updated_at=? WHERE run_id=? AND state='PENDING'",
                (time.time(), run_id),
            )
        return self.status(run_id)

    # ------------------------------------------------------------------ worker

    def _is_cancelled(self, run_id: str) -> bool:
        with self._lock:
            if run_id in self._cancelled:
                return True
        row = (
            self._db.conn()
            .execute("SELECT state FROM wf_runs WHERE run_id=?", (run_id,))
            .fetchone()
        )
        return row is not None and row[0] == RunState.CANCELLED.value

    def _set_run(self, run_id: str, state: RunState, error: str | None = None) -> None:
        self._db.conn().execute(
            "UPDATE wf_runs SET state=?, error=?, updated_at=? WHERE run_id=?",
            (state.value, error, time.time(), run_id),
        )

    def _loop(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None:
                return
            try:
                self._run(run_id)
            except Exception as exc:  # never let a worker thread die
                log.exception("workflow run %s crashed", run_id)
                self._set_run(run_id, RunState.FAILED, f"internal error: {type(exc).__name__}")

    def _run(self, run_id: str) -> None:
        c = self._db.conn()
        row = c.execute(
            "SELECT kind, tenant, payload, state FROM wf_runs WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None or RunState(row[3]).finished:
            return
        kind, tenant, payload, _ = row
        handler = self._handlers[kind]
        self._set_run(run_id, RunState.RUNNING)
        cancelled = lambda: self._is_cancelled(run_id)  # noqa: E731
        all_items = tuple(
            r[0]
            for r in c.execute("SELECT item FROM wf_items WHERE run_id=? ORDER BY seq", (run_id,))
        )
        spec = RunSpec(run_id, kind, tenant, all_items, json.loads(payload))
        while True:
            if cancelled():
                break
            batch = c.execute(
                "SELECT seq, item FROM wf_items WHERE run_id=? AND state='PENDING' ORDER BY seq LIMIT ?",
                (run_id, self._batch),
            ).fetchall()
            if not batch:
                break
            items = [item for _, item in batch]
            c.executemany(
                "UPDATE wf_items SET state='RUNNING' WHERE run_id=? AND seq=?",
                [(run_id, seq) for seq, _ in batch],
            )
            outcomes = self._call(handler, spec, items, cancelled)
            with self._db.transaction() as tx:
                for seq, item in batch:
                    out = outcomes.get(item) or ItemOutcome(False, {"error": "no outcome reported"})
                    state = (
                        "SUCCEEDED"
                        if out.ok
                        else ("CANCELLED" if out.result.get("cancelled") else "FAILED")
                    )
                    tx.execute(
                        "UPDATE wf_items SET state=?, result=? WHERE run_id=? AND seq=?",
                        (state, json.dumps(dict(out.result)), run_id, seq),
                    )
                tx.execute("UPDATE wf_runs SET updated_at=? WHERE run_id=?", (time.time(), run_id))
        if cancelled():
            with self._db.transaction() as tx:
                tx.execute(
                    "UPDATE wf_items SET state='CANCELLED', result=? WHERE run_id=? AND state IN ('PENDING','RUNNING')",
                    (json.dumps({"cancelled": True}), run_id),
                )
            self._set_run(run_id, RunState.CANCELLED)
        else:
            self._set_run(run_id, RunState.SUCCEEDED)
        with self._lock:
            self._cancelled.discard(run_id)

    @staticmethod
    def _call(
        handler: ItemHandler, spec: RunSpec, items: Sequence[str], cancelled: Any
    ) -> Mapping[str, ItemOutcome]:
        try:
            return handler(spec, items, cancelled)
        except Exception as exc:
            log.exception("item handler %s failed on %d items", spec.kind, len(items))
            err = {"error": f"internal error: {type(exc).__name__}"}
            return {item: ItemOutcome(False, err) for item in items}
