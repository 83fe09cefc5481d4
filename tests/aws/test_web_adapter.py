"""The chat group behind the AWS Lambda Web Adapter (functions/chat/run.sh): the same app,
served by uvicorn, with the request context in the `x-amzn-request-context` header.

In process, the app is what `web_adapter_app` builds (TestClient speaks ASGI to it); at the
end run.sh itself starts the server on loopback and answers the adapter's readiness check.
The header is the adapter's, set from the event (it replaces a client's header of that name),
so these requests send it as the adapter would: the REST request context, authorizer flat.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pasture.api.lambda_app import READY_PATH, web_adapter_app
from tests.helpers.apigw import rest_event
from tests.helpers.lambda_env import ROOT, AwsStack, aws_stack, restored_logging


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[AwsStack]:
    with restored_logging(), aws_stack(tmp_path_factory.mktemp("lwa"), model_cache, api_keys) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: AwsStack) -> Iterator[TestClient]:
    with TestClient(web_adapter_app("chat", container=stack.container)) as c:
        yield c


def context(tenant: str | None) -> str:
    """The header the adapter writes: the event's requestContext as JSON."""
    ctx = rest_event("POST", "/api/conversations", tenant=tenant)["requestContext"]
    return json.dumps(ctx)


def as_(tenant: str | None) -> dict[str, str]:
    return {"x-amzn-request-context": context(tenant)}


def test_readiness_path_needs_nothing(client: TestClient) -> None:
    assert client.get(READY_PATH).status_code == 200


def test_llamachat_streams_for_the_context_tenant(client: TestClient) -> None:
    cid = client.post("/api/conversations", headers=as_("alice")).json()["id"]
    with client.stream(
        "POST",
        f"/api/conversations/{cid}/messages",
        headers=as_("alice"),
        json={"content": "What grows here?"},
    ) as r:
        assert r.status_code == 200
        chunks = list(r.iter_text())
    assert "Grass grows in the pasture." in "".join(chunks)
    theirs = client.get(f"/api/conversations/{cid}", headers=as_("bob"))
    unknown = client.get("/api/conversations/00000000000000000000000000000000", headers=as_("bob"))
    assert theirs.status_code == unknown.status_code == 404
    assert client.get(f"/api/conversations/{cid}", headers=as_("alice")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-amzn-request-context": "{not json"},
        {"x-amzn-request-context": json.dumps({"authorizer": {}})},
        {"x-amzn-request-context": json.dumps(["alice"])},
    ],
)
def test_no_usable_context_is_401(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/api/conversations", headers=headers)
    assert r.status_code == 401 and set(r.json()) == {"error"}


def test_two_context_headers_are_refused(client: TestClient) -> None:
    """The adapter sets exactly one; a second can only come from somewhere else."""
    r = client.post(
        "/api/conversations",
        headers=[
            ("x-amzn-request-context", context("alice")),
            ("x-amzn-request-context", context("bob")),
        ],
    )
    assert r.status_code == 401


def test_key_headers_are_not_read(client: TestClient, api_keys: dict[str, str]) -> None:
    r = client.post("/api/conversations", headers={"X-Api-Key": api_keys["alice"]})
    assert r.status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_sh_serves_the_chat_app(stack: AwsStack, tmp_path: Path) -> None:
    """run.sh as the adapter's wrapper runs it: uvicorn on loopback, the readiness path up,
    chat routes there, and nothing served without the adapter's header."""
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PASTURE_", "AWS_LWA"))},
        **stack.env(),
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "shared"),
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "chat"),
        "AWS_LWA_PORT": str(port),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "functions" / "chat" / "run.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready: Any = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(base + READY_PATH, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, log.read_text()
        r = httpx.post(base + "/api/conversations", timeout=10)
        assert r.status_code == 401 and set(r.json()) == {"error"}
        assert httpx.get(base + "/health", timeout=10).status_code == 404  # system's, not here
    finally:
        proc.terminate()
        proc.wait(timeout=10)
