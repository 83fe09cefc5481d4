"""LlamaFarm tasks API: states, meta, unknown ids, cancel (extension)."""

from __future__ import annotations

from tests.helpers.llamafarm import LF


def test_unknown_task_is_404(alice: LF) -> None:
    ns, p, _ = alice.project_with_dataset()
    r = alice.task(ns, p, "no-such-task")
    assert r.status_code == 404 and r.json() == {"detail": "Task no-such-task not found"}
    assert alice.task(ns, "ghost", "x").status_code == 404


def test_task_of_another_project_is_404(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    other = alice.project_with_dataset(ns)[1]
    alice.upload(ns, p, ds, "a.txt", b"Neptune is the windiest planet.")
    tid = alice.process(ns, p, ds, asynchronous=True).json()["task_id"]
    assert alice.task(ns, other, tid).status_code == 404
    assert alice.wait_task(ns, p, tid)["state"] == "SUCCESS"


def test_all_files_failing_is_a_failed_task(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    alice.upload(ns, p, ds, "x.exe", b"MZ")
    tid = alice.process(ns, p, ds, asynchronous=True).json()["task_id"]
    task = alice.wait_task(ns, p, tid)
    assert task["state"] == "FAILURE" and "unsupported file type" in task["error"]
    assert task["result"]["failed_files"] == 1


def test_cancel_finished_task_keeps_its_state(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    alice.upload(ns, p, ds, "a.txt", b"Jupiter has a great red spot.")
    tid = alice.process(ns, p, ds, asynchronous=True).json()["task_id"]
    alice.wait_task(ns, p, tid)
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/tasks/{tid}")
    assert r.status_code == 200 and r.json()["state"] == "SUCCESS"
    assert alice.req("DELETE", f"/v1/projects/{ns}/{p}/tasks/ghost").status_code == 404


def test_cancel_mid_run_leaves_no_document_running(tmp_path, model_cache, api_keys) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from pasture.api.app import create_app
    from tests.api.conftest import keyed_settings

    s = keyed_settings(tmp_path, model_cache, api_keys, ingest_batch_items=1)
    with TestClient(create_app(settings=s)) as c:
        lf = LF(c, {"X-Api-Key": api_keys["alice"]})
        ns, p, ds = lf.project_with_dataset()
        for i in range(40):
            lf.upload(
                ns,
                p,
                ds,
                f"d{i}.txt",
                (f"document {i} " + "lorem ipsum dolor sit amet " * 300).encode(),
            )
        tid = lf.process(ns, p, ds, asynchronous=True).json()["task_id"]
        r = lf.req("DELETE", f"/v1/projects/{ns}/{p}/tasks/{tid}")
        assert r.status_code == 200
        task = lf.wait_task(ns, p, tid)
        assert task["state"] == "REVOKED"
        assert task["result"]["cancelled_files"] > 0
        files = lf.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["datasets"][0]["details"][
            "file_details"
        ]
        statuses = [f["status"] for f in files]
        assert "RUNNING" not in statuses and "CANCEL" in statuses
        assert task["result"]["processed_files"] == statuses.count("DONE")
