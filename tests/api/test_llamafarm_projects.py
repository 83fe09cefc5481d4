"""LlamaFarm projects API: success and failure of every endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers.llamafarm import LF, uniq


def test_create_get_list_project(alice: LF) -> None:
    ns, name = uniq("ns"), uniq("p")
    r = alice.create_project(ns, name, "server")
    assert r.status_code == 200
    project = r.json()["project"]
    assert (project["namespace"], project["name"]) == (ns, name)
    cfg = project["config"]
    assert cfg["version"] == "v1" and cfg["name"] == name and cfg["namespace"] == ns
    assert cfg["runtime"]["default_model"] == "default"
    assert cfg["runtime"]["models"][0]["provider"] == "llamacpp"
    assert [d["name"] for d in cfg["rag"]["databases"]] == ["main_db"]
    assert [s["name"] for s in cfg["rag"]["data_processing_strategies"]] == ["universal_processor"]

    assert alice.req("GET", f"/v1/projects/{ns}/{name}").json()["project"]["config"] == cfg
    listed = alice.req("GET", f"/v1/projects/{ns}").json()
    assert listed["total"] == 1 and listed["projects"][0]["name"] == name


def test_templates_differ_and_default_is_server(alice: LF) -> None:
    ns = uniq("ns")
    server = alice.create_project(ns, "a", None).json()["project"]["config"]
    rag = alice.create_project(ns, "b", "rag").json()["project"]["config"]
    assert server["rag_enabled_by_default"] is False and rag["rag_enabled_by_default"] is True
    assert alice.req("GET", f"/v1/projects/{ns}").json()["total"] == 2


def test_create_failures(alice: LF) -> None:
    ns = uniq("ns")
    assert alice.create_project(ns, "dup").status_code == 200
    r = alice.create_project(ns, "dup")
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = alice.create_project(ns, "x", "nonsense")
    assert r.status_code == 400 and "config_template" in r.json()["detail"]
    r = alice.create_project(ns, "bad/name")
    assert r.status_code == 400 and "invalid project name" in r.json()["detail"]
    r = alice.req("POST", f"/v1/projects/{ns}", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = alice.req(
        "POST",
        f"/v1/projects/{ns}",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422


def test_update_project_config(alice: LF) -> None:
    ns, name = uniq("ns"), uniq("p")
    cfg = alice.create_project(ns, name).json()["project"]["config"]
    cfg["runtime"]["models"].append(
        {"name": "big", "provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}
    )
    cfg["runtime"]["default_model"] = "big"
    cfg["my_extension"] = {"kept": True}
    r = alice.req("PUT", f"/v1/projects/{ns}/{name}", json={"config": cfg})
    assert r.status_code == 200, r.text
    got = alice.req("GET", f"/v1/projects/{ns}/{name}").json()["project"]["config"]
    assert got["runtime"]["default_model"] == "big" and got["my_extension"] == {"kept": True}
    assert [m["name"] for m in got["runtime"]["models"]] == ["default", "big"]


def test_update_failures(alice: LF) -> None:
    ns, name = uniq("ns"), uniq("p")
    cfg = alice.create_project(ns, name).json()["project"]["config"]
    url = f"/v1/projects/{ns}/{name}"
    bad = dict(cfg, runtime={"models": [], "default_model": "ghost"})
    r = alice.req("PUT", url, json={"config": bad})
    assert r.status_code == 400 and "default_model" in r.json()["detail"]
    r = alice.req("PUT", url, json={"config": dict(cfg, name="other")})
    assert r.status_code == 400 and "does not match" in r.json()["detail"]
    r = alice.req("PUT", url, json={"config": dict(cfg, runtime="not an object")})
    assert r.status_code == 400 and "runtime" in r.json()["detail"]
    r = alice.req("PUT", url, json={"config": dict(cfg, version="v9")})
    assert r.status_code == 400 and "version" in r.json()["detail"]
    strategies = cfg["rag"]["data_processing_strategies"]
    strategies[0]["parsers"][0]["config"]["chunk_overlap"] = 500
    r = alice.req("PUT", url, json={"config": cfg})
    assert r.status_code == 400 and "chunk_overlap" in r.json()["detail"]
    assert alice.req("PUT", url, json={}).status_code == 422
    assert alice.req("PUT", f"/v1/projects/{ns}/ghost", json={"config": cfg}).status_code == 404


def test_get_and_delete_unknown(alice: LF) -> None:
    ns = uniq("ns")
    r = alice.req("GET", f"/v1/projects/{ns}/ghost")
    assert r.status_code == 404 and r.json() == {"detail": f"Project {ns}/ghost not found"}
    assert alice.req("DELETE", f"/v1/projects/{ns}/ghost").status_code == 404


def test_delete_really_deletes(alice: LF, client: TestClient) -> None:
    ns, p, ds = alice.project_with_dataset()
    alice.upload(ns, p, ds, "llamas.txt", b"Llamas are domesticated South American camelids.")
    assert alice.process(ns, p, ds).json()["processed_files"] == 1
    container = client.app.state.container  # type: ignore[attr-defined]
    ds_id = container.datasets.get("alice", ns, p, ds).id
    blob_dir = Path(container.settings.data_dir) / "blobs" / "datasets" / ds_id
    assert blob_dir.is_dir() and container.index.count("alice", ds_id) == 1

    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}")
    assert r.status_code == 200 and r.json()["project"]["name"] == p
    assert alice.req("GET", f"/v1/projects/{ns}/{p}").status_code == 404
    assert not blob_dir.exists() and container.index.count("alice", ds_id) == 0

    # Re-creating the name starts empty: nothing of the old project leaks back.
    assert alice.create_project(ns, p).status_code == 200
    assert alice.req("GET", f"/v1/projects/{ns}/{p}/datasets").json()["total"] == 0
    assert alice.query(ns, p, query="llamas").json()["results"] == []
