"""System endpoints and authentication."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.config import Settings
from tests.helpers.llamafarm import LF, uniq


def test_root_info_health(client: TestClient) -> None:
    assert client.get("/").json() == {"message": "Hello, World!"}
    info = client.get("/info").json()
    assert info["version"] == "0.1.0" and info["data_directory"]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert health.json()["services"]["api"] == "healthy"
    assert client.get("/health/liveness").json() == {"status": "alive"}


def test_missing_and_wrong_keys_are_401(client: TestClient) -> None:
    r = client.get("/v1/projects/acme")
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/v1/projects/acme", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}
    r = client.get("/v1/projects/acme", headers={"X-Api-Key": "nope"})
    assert r.status_code == 401


def test_bearer_and_x_api_key_name_the_same_tenant(
    client: TestClient, api_keys: dict[str, str]
) -> None:
    ns = uniq("ns")
    bearer = LF(client, {"Authorization": f"Bearer {api_keys['alice']}"})
    header = LF(client, {"X-Api-Key": api_keys["alice"]})
    assert bearer.create_project(ns, "p").status_code == 200
    assert header.req("GET", f"/v1/projects/{ns}/p").status_code == 200


def test_open_mode_needs_no_key(tmp_path: Path, model_cache: Path) -> None:
    s = Settings(data_dir=tmp_path, model_cache_dir=model_cache)
    with TestClient(create_app(settings=s)) as c:
        assert c.post("/v1/projects/me", json={"name": "p"}).status_code == 200
        assert c.get("/v1/projects/me").json()["total"] == 1


def test_unknown_route_is_404_in_envelope(client: TestClient) -> None:
    r = client.get("/v1/nothing/here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
