"""A thin LlamaFarm client over TestClient or httpx, and name factories."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import httpx


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class LF:
    """Speaks the LlamaFarm API as one tenant (headers) through any httpx-compatible client."""

    def __init__(self, client: Any, headers: dict[str, str] | None = None) -> None:
        self.c = client
        self.h = headers or {}

    def req(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.c.request(method, path, headers={**self.h, **kw.pop("headers", {})}, **kw)

    def create_project(self, ns: str, name: str, template: str | None = "rag") -> httpx.Response:
        body: dict[str, Any] = {"name": name}
        if template:
            body["config_template"] = template
        return self.req("POST", f"/v1/projects/{ns}", json=body)

    def create_dataset(self, ns: str, p: str, name: str, **extra: Any) -> httpx.Response:
        return self.req("POST", f"/v1/projects/{ns}/{p}/datasets", json={"name": name, **extra})

    def upload(self, ns: str, p: str, ds: str, filename: str, data: bytes) -> httpx.Response:
        return self.req(
            "POST",
            f"/v1/projects/{ns}/{p}/datasets/{ds}/data",
            files={"file": (filename, io.BytesIO(data))},
        )

    def process(
        self, ns: str, p: str, ds: str, *, asynchronous: bool = False, **params: Any
    ) -> httpx.Response:
        if asynchronous:
            params["async_processing"] = "true"
        return self.req("POST", f"/v1/projects/{ns}/{p}/datasets/{ds}/process", params=params)

    def query(self, ns: str, p: str, **body: Any) -> httpx.Response:
        return self.req("POST", f"/v1/projects/{ns}/{p}/rag/query", json=body)

    def task(self, ns: str, p: str, task_id: str) -> httpx.Response:
        return self.req("GET", f"/v1/projects/{ns}/{p}/tasks/{task_id}")

    def wait_task(self, ns: str, p: str, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while True:
            body = self.task(ns, p, task_id).json()
            if body["state"] in ("SUCCESS", "FAILURE", "REVOKED") or time.time() > deadline:
                return body  # type: ignore[no-any-return]
            time.sleep(0.05)

    def project_with_dataset(self, ns: str | None = None) -> tuple[str, str, str]:
        ns, p, ds = ns or uniq("ns"), uniq("proj"), uniq("ds")
        assert self.create_project(ns, p).status_code == 200
        assert self.create_dataset(ns, p, ds).status_code == 200
        return ns, p, ds
