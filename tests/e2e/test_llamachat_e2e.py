"""LlamaChat end to end: consumer keys made with the `pasture keys` console script, the real
`pasture serve` on 127.0.0.1 with the embedded SmolLM2 model, driven over HTTP with httpx
the way LlamaChat's own clients call it (X-Api-Key, JSON bodies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e
EXE = str(Path(sys.executable).parent / "pasture")


def keys(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "keys", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("lc-e2e")
    # LlamaChat's own secrets file, in the data dir, names one consumer...
    (data / "appsettings.secrets.json").write_text(
        json.dumps({"Consumer": {"ApiKeys": {"zapier": "def456-" + os.urandom(8).hex()}}})
    )
    # ...and the CLI makes two more.
    made = {}
    for name in ("mobile-app", "web"):
        r = keys(data, "create", name)
        assert r.returncode == 0, r.stderr
        made[name] = r.stdout.strip()
        assert made[name].startswith("pst-") and "shown only now" in r.stderr
    zapier = json.loads((data / "appsettings.secrets.json").read_text())["Consumer"]["ApiKeys"]
    server = Server(data, model_cache, {"PASTURE_CHAT_MAX_TOKENS": "24"}).start(timeout=120)
    try:
        yield {"url": server.url, "data": str(data), **made, "zapier": zapier["zapier"]}
    finally:
        server.stop()


def test_keys_list_never_shows_secrets(setup: dict[str, str]) -> None:
    r = keys(Path(setup["data"]), "list")
    assert r.returncode == 0, r.stderr
    assert "mobile-app\t" in r.stdout and "web\t" in r.stdout and "zapier\t(settings)" in r.stdout
    for secret in (setup["mobile-app"], setup["web"], setup["zapier"]):
        assert secret not in r.stdout and secret[4:12] not in r.stdout


def test_conversation_with_the_real_model(setup: dict[str, str]) -> None:
    with httpx.Client(base_url=setup["url"], timeout=120) as http:
        h = {"X-Api-Key": setup["mobile-app"]}
        conv = http.post("/api/conversations", headers=h)
        assert conv.status_code == 200, conv.text
        cid = conv.json()["id"]
        assert conv.json()["title"] == "New Conversation"
        r = http.post(
            f"/api/conversations/{cid}/messages",
            headers={**h, "Content-Type": "application/json"},
            content=json.dumps({"content": "What is the capital of France?"}),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["role"] == "assistant" and body["content"].strip()
        r2 = http.post(
            f"/api/conversations/{cid}/messages", headers=h, json={"content": "And Spain?"}
        )
        assert r2.status_code == 200, r2.text
        got = http.get(f"/api/conversations/{cid}", headers=h).json()
        assert got["title"] == "What is the capital of France?"
        assert [m["role"] for m in got["messages"]] == ["user", "assistant"] * 2
        assert got["messages"][1]["content"] == body["content"]

        # Another consumer (the secrets file's) cannot see it; a bad key is 401.
        other = http.post(
            f"/api/conversations/{cid}/messages",
            headers={"X-Api-Key": setup["zapier"]},
            json={"content": "hi"},
        )
        assert other.status_code == 404 and other.json() == {"error": "Conversation not found."}
        bad = http.post("/api/conversations", headers={"X-Api-Key": "wrong"})
        assert bad.status_code == 401 and "error" in bad.json()


def test_revoked_key_stops_working_at_once(setup: dict[str, str]) -> None:
    with httpx.Client(base_url=setup["url"], timeout=30) as http:
        h = {"X-Api-Key": setup["web"]}
        assert http.post("/api/conversations", headers=h).status_code == 200
        r = keys(Path(setup["data"]), "revoke", "web")
        assert r.returncode == 0 and "revoked 1 key" in r.stderr, r.stderr
        assert http.post("/api/conversations", headers=h).status_code == 401
        assert keys(Path(setup["data"]), "revoke", "web").returncode == 1
