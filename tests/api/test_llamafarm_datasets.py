"""LlamaFarm datasets API: create/list/strategies/delete, upload, process, remove file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from pasture.api.app import create_app
from tests.api.conftest import keyed_settings
from tests.helpers.files import csv_bytes, docx_bytes, html_bytes, json_bytes, pdf_bytes
from tests.helpers.llamafarm import LF, uniq


def test_create_list_strategies_delete(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("p")
    alice.create_project(ns, p)
    r = alice.create_dataset(
        ns, p, "papers", data_processing_strategy="universal_processor", database="main_db"
    )
    assert r.status_code == 200
    assert r.json() == {
        "dataset": {
            "name": "papers",
            "database": "main_db",
            "data_processing_strategy": "universal_processor",
            "files": [],
        }
    }
    assert alice.create_dataset(ns, p, "defaults").json()["dataset"]["database"] == "main_db"
    listed = alice.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()
    assert listed["total"] == 2 and listed["datasets"][0]["details"]["total_files"] == 0
    brief = alice.req(
        "GET", f"/v1/projects/{ns}/{p}/datasets", params={"include_extra_details": "false"}
    ).json()
    assert "details" not in brief["datasets"][0]
    assert alice.req("GET", f"/v1/projects/{ns}/{p}/datasets/strategies").json() == {
        "data_processing_strategies": ["universal_processor"],
        "databases": ["main_db"],
    }
    # The project config mirrors its datasets.
    cfg = alice.req("GET", f"/v1/projects/{ns}/{p}").json()["project"]["config"]
    assert sorted(d["name"] for d in cfg["datasets"]) == ["defaults", "papers"]
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/datasets/papers")
    assert r.status_code == 200 and r.json()["dataset"]["name"] == "papers"
    assert alice.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["total"] == 1


def test_create_failures(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("p")
    alice.create_project(ns, p)
    alice.create_dataset(ns, p, "d")
    r = alice.create_dataset(ns, p, "d")
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = alice.create_dataset(ns, p, "x", data_processing_strategy="nope")
    assert r.status_code == 400 and "universal_processor" in r.json()["detail"]
    r = alice.create_dataset(ns, p, "x", database="nope")
    assert r.status_code == 400 and "main_db" in r.json()["detail"]
    assert alice.create_dataset(ns, p, "bad name!").status_code == 400
    assert alice.create_dataset(ns, "ghost", "x").status_code == 404
    assert alice.req("POST", f"/v1/projects/{ns}/{p}/datasets", json={}).status_code == 422
    assert alice.req("DELETE", f"/v1/projects/{ns}/{p}/datasets/ghost").status_code == 404
    assert alice.req("GET", f"/v1/projects/{ns}/ghost/datasets").status_code == 404
    assert alice.req("GET", f"/v1/projects/{ns}/ghost/datasets/strategies").status_code == 404


def test_upload_is_content_addressed(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    data = b"Alpacas are smaller than llamas."
    r = alice.upload(ns, p, ds, "alpacas.txt", data)
    assert r.status_code == 200
    assert r.json() == {
        "filename": "alpacas.txt",
        "hash": hashlib.sha256(data).hexdigest(),
        "processed": False,
        "duplicate": False,
    }
    again = alice.upload(ns, p, ds, "renamed.txt", data).json()
    assert (
        again["hash"] == r.json()["hash"]
        and again["duplicate"] is True
        and again["filename"] == "alpacas.txt"
    )
    details = alice.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["datasets"][0]
    assert details["files"] == [r.json()["hash"]]
    assert details["details"]["file_details"][0]["original_filename"] == "alpacas.txt"
    assert details["details"]["total_size_bytes"] == len(data)
    alice.process(ns, p, ds)
    assert alice.upload(ns, p, ds, "again.txt", data).json()["processed"] is True


def test_upload_failures(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    assert alice.upload(ns, p, "ghost", "a.txt", b"x").status_code == 404
    r = alice.req("POST", f"/v1/projects/{ns}/{p}/datasets/{ds}/data", data={"notfile": "x"})
    assert r.status_code == 422


def test_upload_over_the_limit_is_413(
    tmp_path: Path, model_cache: Path, api_keys: dict[str, str]
) -> None:
    s = keyed_settings(tmp_path, model_cache, api_keys, max_upload_bytes=1000)
    with TestClient(create_app(settings=s)) as c:
        lf = LF(c, {"X-Api-Key": api_keys["alice"]})
        ns, p, ds = lf.project_with_dataset()
        assert lf.upload(ns, p, ds, "small.txt", b"x" * 900).status_code == 200
        r = lf.upload(
            ns, p, ds, "big.txt", b"x" * 1500
        )  # under the body guard, over the file limit
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = lf.upload(ns, p, ds, "huge.txt", b"x" * (3 * 1024 * 1024))  # refused by the body guard
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        files = lf.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["datasets"][0]["files"]
        assert len(files) == 1


def test_process_sync_all_types_and_failures(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    good = {
        "guide.pdf": pdf_bytes(
            ["Volcanoes erupt molten rock called lava.", "Page two about basalt."]
        ),
        "notes.docx": docx_bytes(["Penguins live in the southern hemisphere."]),
        "page.html": html_bytes("Bees", "Honey bees communicate with a waggle dance."),
        "table.csv": csv_bytes(
            [{"city": "Oslo", "country": "Norway"}, {"city": "Lima", "country": "Peru"}]
        ),
        "data.json": json_bytes({"planet": {"name": "Mars", "moons": ["Phobos", "Deimos"]}}),
        "readme.md": b"# Tides\n\nTides are caused by the moon's gravity.",
        "plain.txt": b"The mitochondria is the powerhouse of the cell.",
    }
    bad = {"virus.exe": b"MZ\x90\x00", "broken.pdf": b"%PDF-1.7 garbage", "empty.txt": b""}
    for name, data in {**good, **bad}.items():
        assert alice.upload(ns, p, ds, name, data).status_code == 200
    r = alice.process(ns, p, ds)
    assert r.status_code == 200
    body = r.json()
    assert body["message"] == "Dataset processing completed"
    assert (body["processed_files"], body["failed_files"], body["skipped_files"]) == (7, 3, 0)
    assert body["strategy"] == "universal_processor" and body["database"] == "main_db"
    by_name = {d["filename"]: d for d in body["details"]}
    assert by_name["guide.pdf"]["parser"] == "pdf" and by_name["guide.pdf"]["chunks"] >= 1
    assert (
        by_name["notes.docx"]["status"] == "processed"
        and by_name["notes.docx"]["embedder"] == "all-MiniLM-L6-v2"
    )
    assert "unsupported file type" in by_name["virus.exe"]["error"]
    assert "PDF" in by_name["broken.pdf"]["error"]
    assert by_name["empty.txt"]["status"] == "failed"
    files = alice.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["datasets"][0]["details"][
        "file_details"
    ]
    states = {f["original_filename"]: f["status"] for f in files}
    assert states["guide.pdf"] == "DONE" and states["virus.exe"] == "FAIL"
    hits = alice.query(ns, p, query="waggle dance of honey bees").json()["results"]
    assert hits[0]["metadata"]["filename"] == "page.html"
    assert "do-not-index" not in " ".join(h["content"] for h in hits)


def test_process_skips_done_and_reprocess_replaces(alice: LF, client: TestClient) -> None:
    ns, p, ds = alice.project_with_dataset()
    alice.upload(ns, p, ds, "a.txt", b"Saturn has rings made of ice. " * 40)
    first = alice.process(ns, p, ds).json()
    chunks = first["details"][0]["chunks"]
    container = client.app.state.container  # type: ignore[attr-defined]
    ds_id = container.datasets.get("alice", ns, p, ds).id
    assert container.index.count("alice", ds_id) == chunks
    second = alice.process(ns, p, ds).json()
    assert (second["processed_files"], second["skipped_files"]) == (0, 1)
    third = alice.process(ns, p, ds, reprocess="true").json()
    assert third["processed_files"] == 1
    assert container.index.count("alice", ds_id) == chunks  # replaced, not duplicated


def test_process_async_and_task(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    alice.upload(ns, p, ds, "one.txt", b"Quartz is a hard mineral.")
    alice.upload(ns, p, ds, "two.md", b"# Granite\n\nGranite is an igneous rock.")
    r = alice.process(ns, p, ds, asynchronous=True)
    body = r.json()
    assert r.status_code == 200 and body["message"] == "Dataset processing started asynchronously"
    assert body["task_id"] and len(body["details"]) == 2
    assert {d["status"] for d in body["details"]} <= {"pending", "processed"}
    task = alice.wait_task(ns, p, body["task_id"])
    assert task["state"] == "SUCCESS" and task["meta"] == {"current": 2, "total": 2}
    assert (
        task["result"]["processed_files"] == 2
        and task["error"] is None
        and task["traceback"] is None
    )


def test_process_failures(alice: LF) -> None:
    ns, p, ds = alice.project_with_dataset()
    assert alice.process(ns, p, "ghost").status_code == 404
    assert alice.process("nsx", "ghost", ds).status_code == 404
    # An empty dataset processes to nothing, fine.
    assert alice.process(ns, p, ds).json()["processed_files"] == 0


def test_remove_file(alice: LF, client: TestClient) -> None:
    ns, p, ds = alice.project_with_dataset()
    h1 = alice.upload(ns, p, ds, "keep.txt", b"Koalas eat eucalyptus leaves.").json()["hash"]
    h2 = alice.upload(ns, p, ds, "drop.txt", b"Wombats produce cube-shaped droppings.").json()[
        "hash"
    ]
    alice.process(ns, p, ds)
    container = client.app.state.container  # type: ignore[attr-defined]
    ds_id = container.datasets.get("alice", ns, p, ds).id
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/datasets/{ds}/data/{h2}")
    assert r.status_code == 200 and r.json() == {"file_hash": h2}
    hits = alice.query(ns, p, query="wombats cube droppings").json()["results"]
    assert all(h["document_id"] != h2 for h in hits)
    assert container.blobs.exists(f"datasets/{ds_id}/{h2}")  # kept on disk by default
    r = alice.req(
        "DELETE",
        f"/v1/projects/{ns}/{p}/datasets/{ds}/data/{h1}",
        params={"remove_from_disk": "true"},
    )
    assert r.status_code == 200 and not container.blobs.exists(f"datasets/{ds_id}/{h1}")
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/datasets/{ds}/data/{h1}")
    assert r.status_code == 404
