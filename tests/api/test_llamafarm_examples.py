"""LlamaFarm examples API: list, import-project, import-data; success and failure."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pasture.domain.errors import Unavailable
from pasture.services.examples import examples_root
from tests.helpers.llamafarm import LF, uniq

FARM_DATASETS = {
    "handbook": [
        "feeding_schedule.md",
        "shearing_procedure.md",
        "paddock_rotation.txt",
        "herd_health.html",
    ],
    "herd_records": ["herd_roster.csv", "farm_faq.json"],
}
GUIDE_FILES = 7


def import_project(lf: LF, example: str, **body: Any) -> httpx.Response:
    return lf.req("POST", f"/v1/examples/{example}/import-project", json=body)


def import_data(lf: LF, example: str, **body: Any) -> httpx.Response:
    return lf.req("POST", f"/v1/examples/{example}/import-data", json=body)


def datasets(lf: LF, ns: str, p: str) -> dict[str, dict[str, Any]]:
    r = lf.req("GET", f"/v1/projects/{ns}/{p}/datasets")
    assert r.status_code == 200, r.text
    return {d["name"]: d for d in r.json()["datasets"]}


def config(lf: LF, ns: str, p: str) -> dict[str, Any]:
    r = lf.req("GET", f"/v1/projects/{ns}/{p}")
    assert r.status_code == 200, r.text
    cfg: dict[str, Any] = r.json()["project"]["config"]
    return cfg


def top_texts(lf: LF, ns: str, p: str, query: str, **kw: Any) -> str:
    r = lf.query(ns, p, query=query, top_k=3, **kw)
    assert r.status_code == 200, r.text
    return "\n".join(hit["content"] for hit in r.json()["results"])


def test_list_examples_shape_and_sizes(alice: LF) -> None:
    r = alice.req("GET", "/v1/examples")
    assert r.status_code == 200
    examples = {e["id"]: e for e in r.json()["examples"]}
    assert {"farm_handbook", "pasture_guide"} <= set(examples)
    for ex_id, ex in examples.items():
        assert set(ex) == {
            "id",
            "slug",
            "title",
            "description",
            "primaryModel",
            "tags",
            "dataset_count",
            "data_size_bytes",
            "data_size_human",
            "project_size_bytes",
            "project_size_human",
            "updated_at",
        }
        folder = examples_root() / ex_id
        manifest = json.loads(folder.joinpath("example.json").read_text("utf-8"))
        files = [f for ds in manifest["datasets"] for f in ds["files"]]
        size = sum(len(folder.joinpath(f).read_bytes()) for f in files)
        project_size = len(folder.joinpath("project.json").read_bytes())
        assert ex["dataset_count"] == len(manifest["datasets"])
        assert ex["data_size_bytes"] == size
        assert ex["data_size_human"] == f"{size / 1024:.1f}KB"
        assert ex["project_size_bytes"] == project_size
        assert ex["project_size_human"] == f"{project_size / 1024:.1f}KB"
        assert ex["slug"] == manifest["slug"] and ex["title"] == manifest["title"]
        assert ex["primaryModel"] == "smollm2-135m-instruct"
        assert ex["tags"] and ex["updated_at"].startswith("20")
    assert examples["farm_handbook"]["dataset_count"] == 2


def test_every_route_needs_a_key_in_keyed_mode(client: TestClient) -> None:
    anon = LF(client)
    r = anon.req("GET", "/v1/examples")
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    body = {"namespace": "ns", "name": "x"}
    assert import_project(anon, "farm_handbook", **body).status_code == 401
    body = {"namespace": "ns", "project": "x"}
    assert import_data(anon, "farm_handbook", **body).status_code == 401
    wrong = LF(client, {"X-Api-Key": "not-a-key"})
    assert wrong.req("GET", "/v1/examples").status_code == 401


def test_import_project_and_process(alice: LF) -> None:
    ns, name = uniq("ns"), uniq("farm")
    r = import_project(alice, "farm_handbook", namespace=ns, name=name, process=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["project"], body["namespace"]) == (name, ns)
    assert body["datasets"] == ["handbook", "herd_records"]
    assert len(body["task_ids"]) == 2 and len(set(body["task_ids"])) == 2
    for task_id, ds in zip(body["task_ids"], body["datasets"], strict=True):
        task = alice.wait_task(ns, name, task_id)
        assert task["state"] == "SUCCESS", task
        assert task["result"]["processed_files"] == len(FARM_DATASETS[ds])

    cfg = config(alice, ns, name)
    assert (cfg["name"], cfg["namespace"]) == (name, ns)
    assert cfg["rag_enabled_by_default"] is True
    assert cfg["runtime"]["models"][0]["model"] == "smollm2-135m-instruct"
    assert [s["name"] for s in cfg["rag"]["data_processing_strategies"]] == [
        "handbook_processor",
        "records_processor",
    ]
    got = datasets(alice, ns, name)
    assert got["handbook"]["data_processing_strategy"] == "handbook_processor"
    assert got["herd_records"]["data_processing_strategy"] == "records_processor"
    for ds, names in FARM_DATASETS.items():
        details = got[ds]["details"]["file_details"]
        assert sorted(d["original_filename"] for d in details) == sorted(names)
        assert {d["status"] for d in details} == {"DONE"}

    # Facts from the example's own documents are found.
    assert "Rosalind Achterberg" in top_texts(alice, ns, name, "Who is the shearer?")
    assert "North Field west" in top_texts(alice, ns, name, "Which paddock is Bramble in?")
    assert "1.8 kg" in top_texts(alice, ns, name, "How much hay does an adult llama get?")


def test_import_project_without_processing(alice: LF) -> None:
    ns, name = uniq("ns"), uniq("guide")
    r = import_project(alice, "pasture_guide", namespace=ns, name=name, process=False)
    assert r.status_code == 200, r.text
    assert r.json() == {"project": name, "namespace": ns, "datasets": ["guide"], "task_ids": []}
    guide = datasets(alice, ns, name)["guide"]
    assert (guide["database"], guide["data_processing_strategy"]) == ("guide_db", "guide_processor")
    details = guide["details"]
    assert details["total_files"] == GUIDE_FILES == len(guide["files"])
    assert {d["status"] for d in details["file_details"]} == {"UNSTART"}
    assert top_texts(alice, ns, name, "embedding model") == ""  # nothing indexed yet


def test_import_project_failures(alice: LF) -> None:
    ns = uniq("ns")
    r = import_project(alice, "no_such_example", namespace=ns, name="x")
    assert r.status_code == 404 and r.json() == {"detail": "Example no_such_example not found"}

    # An existing project is never overwritten, nor given the example's datasets.
    assert alice.create_project(ns, "taken").status_code == 200
    r = import_project(alice, "farm_handbook", namespace=ns, name="taken")
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    cfg = config(alice, ns, "taken")
    assert [s["name"] for s in cfg["rag"]["data_processing_strategies"]] == ["universal_processor"]
    assert datasets(alice, ns, "taken") == {}

    r = import_project(alice, "farm_handbook", namespace="bad ns", name="x")
    assert r.status_code == 400 and "invalid namespace name" in r.json()["detail"]
    r = import_project(alice, "farm_handbook", namespace=ns, name="../x")
    assert r.status_code == 400 and "invalid project name" in r.json()["detail"]

    r = import_project(alice, "farm_handbook", namespace=ns)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = import_project(alice, "farm_handbook", namespace=ns, name="y", proccess=False)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "proccess"]
    r = import_project(alice, "farm_handbook", namespace=ns, name="y", process=[1])
    assert r.status_code == 422
    r = alice.req(
        "POST",
        "/v1/examples/farm_handbook/import-project",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert alice.req("GET", f"/v1/projects/{ns}").json()["total"] == 1  # only "taken"


def test_import_data_with_strategies(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("proj")
    assert alice.create_project(ns, p).status_code == 200
    r = import_data(alice, "pasture_guide", namespace=ns, project=p, include_strategies=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["project"], body["namespace"], body["datasets"]) == (p, ns, ["guide"])
    assert len(body["task_ids"]) == 1  # process defaults to true, as in LlamaFarm
    assert alice.wait_task(ns, p, body["task_ids"][0])["state"] == "SUCCESS"

    cfg = config(alice, ns, p)
    rag = cfg["rag"]
    # Added by name; the project's own definitions and default are kept.
    assert [d["name"] for d in rag["databases"]] == ["main_db", "guide_db"]
    assert [s["name"] for s in rag["data_processing_strategies"]] == [
        "universal_processor",
        "guide_processor",
    ]
    assert rag["default_database"] == "main_db"
    guide = datasets(alice, ns, p)["guide"]
    assert (guide["database"], guide["data_processing_strategy"]) == ("guide_db", "guide_processor")
    hits = top_texts(alice, ns, p, "Which embedding model does Pasture use?", database="guide_db")
    assert "all-MiniLM-L6-v2" in hits

    # Again: nothing is duplicated (merge and datasets by name, files by content).
    r = import_data(alice, "pasture_guide", namespace=ns, project=p, process=False)
    assert r.status_code == 200 and r.json()["task_ids"] == []
    assert config(alice, ns, p)["rag"] == rag
    again = datasets(alice, ns, p)
    assert list(again) == ["guide"] and again["guide"]["details"]["total_files"] == GUIDE_FILES


def test_import_data_without_strategies(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("proj")
    assert alice.create_project(ns, p).status_code == 200
    before = config(alice, ns, p)
    r = import_data(
        alice, "farm_handbook", namespace=ns, project=p, include_strategies=False, process=False
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "project": p,
        "namespace": ns,
        "datasets": ["handbook", "herd_records"],
        "task_ids": [],
    }
    # Raw data: the project's config is untouched (but for the derived `datasets` list) and
    # its own strategy and database are used.
    after = config(alice, ns, p)
    assert {k: v for k, v in after.items() if k != "datasets"} == {
        k: v for k, v in before.items() if k != "datasets"
    }
    got = datasets(alice, ns, p)
    for ds, names in FARM_DATASETS.items():
        assert (got[ds]["database"], got[ds]["data_processing_strategy"]) == (
            "main_db",
            "universal_processor",
        )
        details = got[ds]["details"]["file_details"]
        assert sorted(d["original_filename"] for d in details) == sorted(names)
        assert {d["status"] for d in details} == {"UNSTART"}
    task_id = alice.process(ns, p, "herd_records", asynchronous=True).json()["task_id"]
    assert alice.wait_task(ns, p, task_id)["state"] == "SUCCESS"
    assert "North Field west" in top_texts(alice, ns, p, "Which paddock is Bramble in?")

    # With strategies, the existing datasets no longer fit: refused before anything changes.
    r = import_data(alice, "farm_handbook", namespace=ns, project=p, include_strategies=True)
    assert r.status_code == 409
    assert "Dataset handbook already exists" in r.json()["detail"]
    assert "handbook_processor" in r.json()["detail"]
    assert [s["name"] for s in config(alice, ns, p)["rag"]["data_processing_strategies"]] == [
        "universal_processor"
    ]


def test_import_data_failures(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("proj")
    assert alice.create_project(ns, p).status_code == 200
    r = import_data(alice, "no_such_example", namespace=ns, project=p)
    assert r.status_code == 404 and r.json() == {"detail": "Example no_such_example not found"}
    r = import_data(alice, "farm_handbook", namespace=ns, project="ghost")
    assert r.status_code == 404 and r.json() == {"detail": f"Project {ns}/ghost not found"}
    r = import_data(alice, "farm_handbook", namespace=ns, project="bad name")
    assert r.status_code == 400 and "invalid project name" in r.json()["detail"]
    r = import_data(alice, "farm_handbook", namespace=ns)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "project"]
    r = import_data(alice, "farm_handbook", namespace=ns, project=p, name="x")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    assert datasets(alice, ns, p) == {}


def test_tenant_isolation(alice: LF, bob: LF) -> None:
    ns, p = uniq("ns"), uniq("farm")
    assert import_project(alice, "farm_handbook", namespace=ns, name=p, process=False).is_success

    # Bob cannot tell Alice's project from a missing one, and cannot touch it.
    on_alices = import_data(bob, "farm_handbook", namespace=ns, project=p)
    on_unknown = import_data(bob, "farm_handbook", namespace=ns, project="zz" + p)
    assert on_alices.status_code == on_unknown.status_code == 404
    assert on_alices.json()["detail"].replace(p, "<p>") == on_unknown.json()["detail"].replace(
        "zz" + p, "<p>"
    )

    # The same name in Bob's own space is a new project of his.
    r = import_project(bob, "farm_handbook", namespace=ns, name=p, process=True)
    assert r.status_code == 200, r.text
    for task_id in r.json()["task_ids"]:
        assert bob.wait_task(ns, p, task_id)["state"] == "SUCCESS"
    assert {d["status"] for d in datasets(bob, ns, p)["handbook"]["details"]["file_details"]} == {
        "DONE"
    }
    # Alice's copy is untouched: still unprocessed, so her search finds nothing.
    alices = datasets(alice, ns, p)
    assert {d["status"] for d in alices["handbook"]["details"]["file_details"]} == {"UNSTART"}
    assert top_texts(alice, ns, p, "Who is the shearer?") == ""
    assert "Rosalind Achterberg" in top_texts(bob, ns, p, "Who is the shearer?")


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, obj: object, attr: str, n: int) -> None:
    original = getattr(obj, attr)
    calls = 0

    def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Unavailable("storage is unavailable, try again")
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, attr, flaky)


@pytest.mark.parametrize(
    ("service", "method", "nth"),
    [("datasets", "upload", 2), ("ingestion", "process", 2)],
    ids=["second upload fails", "second processing start fails"],
)
def test_failed_import_leaves_no_half_project(
    alice: LF,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    method: str,
    nth: int,
) -> None:
    ns, p = uniq("ns"), uniq("farm")
    container = client.app.state.container  # type: ignore[attr-defined]
    _fail_on_call(monkeypatch, getattr(container, service), method, nth)
    r = import_project(alice, "farm_handbook", namespace=ns, name=p, process=True)
    assert r.status_code == 503 and r.json() == {"detail": "storage is unavailable, try again"}
    assert alice.req("GET", f"/v1/projects/{ns}/{p}").status_code == 404
    assert alice.req("GET", f"/v1/projects/{ns}").json()["total"] == 0

    monkeypatch.undo()
    r = import_project(alice, "farm_handbook", namespace=ns, name=p, process=True)
    assert r.status_code == 200, r.text
    for task_id in r.json()["task_ids"]:
        assert alice.wait_task(ns, p, task_id)["state"] == "SUCCESS"
    got = datasets(alice, ns, p)
    assert {ds: got[ds]["details"]["total_files"] for ds in got} == {
        ds: len(names) for ds, names in FARM_DATASETS.items()
    }
