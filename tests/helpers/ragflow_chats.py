"""A small RAGFlow client for the chat-assistant tests: envelope checks, datasets with parsed
files, and completion streams read frame by frame (exact bytes kept)."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from pasture.config import Settings
from pasture.domain.projects import ModelConfig
from pasture.ports import ChatModel
from pasture.services.models import ModelFactory
from tests.helpers.fakes import FakeChatModel

API = "/api/v1"
PARSE_TIMEOUT = 60.0
FINAL_FRAME = b'data:{"code": 0, "message": "", "data": true}\n\n'


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def fake_factory(settings: Settings, fakes: dict[str, FakeChatModel]) -> ModelFactory:
    """The server's own factory decides which model names exist (an unknown one is refused
    exactly as in production); the model built is a fake, one per model name."""
    from pasture.bootstrap import chat_model_factory

    real = chat_model_factory(settings)

    def factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
        real(mc)  # raises Invalid for a model this server cannot run
        name = mc.model or mc.name
        if name not in fakes:
            fakes[name] = FakeChatModel(name)
        return ("fake", name), lambda: fakes[name]

    return factory


def reset(fake: FakeChatModel, reply: str) -> FakeChatModel:
    fake.reply, fake.delay, fake.fail_after, fake.context_length = reply, 0.0, None, 4096
    fake.prompts.clear()
    fake.params.clear()
    fake.abandoned = 0
    return fake


@dataclass(frozen=True)
class Stream:
    status: int
    headers: httpx.Headers
    raw: bytes

    @property
    def frames(self) -> list[bytes]:
        """Each frame's bytes without the blank line; the body must be made only of frames."""
        assert self.raw.endswith(b"\n\n"), self.raw[-200:]
        parts = self.raw[:-2].split(b"\n\n")
        assert all(p.startswith(b"data:{") for p in parts), parts
        return parts

    @property
    def payloads(self) -> list[Any]:
        return [json.loads(p[len(b"data:") :]) for p in self.frames]

    @property
    def content(self) -> list[dict[str, Any]]:
        """The `data` of every frame but the final `data: true`."""
        return [p["data"] for p in self.payloads if isinstance(p["data"], dict)]

    @property
    def answers(self) -> list[str]:
        """The `answer` of every content frame (not an error frame, not the final `data: true`)."""
        return [
            p["data"]["answer"]
            for p in self.payloads
            if p["code"] == 0 and isinstance(p["data"], dict)
        ]


class RF:
    """Speaks the RAGFlow API as one tenant."""

    def __init__(self, client: Any, key: str) -> None:
        self.c = client
        self.h = {"Authorization": f"Bearer {key}"}

    def req(self, method: str, path: str, **kw: Any) -> httpx.Response:
        url = path if path.startswith("/api/") else API + path
        return self.c.request(method, url, headers={**self.h, **kw.pop("headers", {})}, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.req(method, path, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == 0, body
        return body.get("data")

    def fail(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        """(code, message) of a RAGFlow failure: HTTP 200, exactly {code, message}."""
        r = self.req(method, path, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"code", "message"} and body["code"] != 0, body
        return body["code"], body["message"]

    def stream(self, path: str, body: dict[str, Any]) -> Stream:
        url = path if path.startswith("/api/") else API + path
        with self.c.stream("POST", url, json=body, headers=self.h) as r:
            raw = r.read()
            return Stream(r.status_code, r.headers, raw)

    # ------------------------------------------------------------------ datasets

    def dataset(self, name: str | None = None, **fields: Any) -> str:
        data = self.ok("POST", "/datasets", json={"name": name or uniq("ds"), **fields})
        return str(data["id"])

    def upload(self, dataset_id: str, filename: str, content: bytes) -> str:
        data = self.ok(
            "POST",
            f"/datasets/{dataset_id}/documents",
            files={"file": (filename, io.BytesIO(content))},
        )
        return str(data[0]["id"])

    def parse(self, dataset_id: str, doc_ids: list[str]) -> None:
        self.ok("POST", f"/datasets/{dataset_id}/chunks", json={"document_ids": doc_ids})
        deadline = time.time() + PARSE_TIMEOUT
        while True:
            docs = self.ok("GET", f"/datasets/{dataset_id}/documents")["docs"]
            runs = {d["id"]: d["run"] for d in docs if d["id"] in doc_ids}
            if all(r in ("DONE", "FAIL", "CANCEL") for r in runs.values()):
                assert set(runs.values()) == {"DONE"}, docs
                return
            assert time.time() < deadline, docs
            time.sleep(0.05)

    def parsed_dataset(self, files: dict[str, bytes], chunk_token_num: int = 32) -> str:
        """A dataset whose files are parsed (small chunks: a paragraph each)."""
        ds = self.dataset(chunk_method="naive", parser_config={"chunk_token_num": chunk_token_num})
        ids = [self.upload(ds, name, content) for name, content in files.items()]
        self.parse(ds, ids)
        return ds

    # ------------------------------------------------------------------ chats

    def chat(self, dataset_ids: list[str], name: str | None = None, **fields: Any) -> Any:
        return self.ok(
            "POST",
            "/chats",
            json={"name": name or uniq("chat"), "dataset_ids": dataset_ids, **fields},
        )

    def session(self, chat_id: str, **fields: Any) -> Any:
        return self.ok("POST", f"/chats/{chat_id}/sessions", json=fields)

    def sessions(self, chat_id: str, **params: Any) -> Any:
        return self.ok("GET", f"/chats/{chat_id}/sessions", params=params)


# ---------------------------------------------------------------------- an app with fakes


@contextmanager
def fake_client(
    data_dir: Path, model_cache: Path, keys: dict[str, str], fakes: dict[str, FakeChatModel]
) -> Iterator[TestClient]:
    """The real app, storage, embedder and retrieval; chat models are fakes. Besides the
    server default, one more local model is installed: `other`."""
    from pasture.api.app import create_app
    from pasture.bootstrap import build_container
    from tests.api.conftest import keyed_settings

    gguf = data_dir / "gguf"
    gguf.mkdir(parents=True, exist_ok=True)
    (gguf / "other.gguf").write_bytes(b"")  # never loaded: the fake stands in for it
    s = keyed_settings(data_dir, model_cache, keys, chat_models_dir=gguf)
    container = build_container(s, chat_factory=fake_factory(s, fakes))
    try:
        with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
            yield c
    finally:
        container.close()


# ---------------------------------------------------------------------- ragflow-sdk


class _SdkResponse:
    """What ragflow-sdk reads of a `requests` response: json() and iter_lines() of bytes."""

    def __init__(self, r: Any) -> None:  # an httpx response
        self._r = r

    def json(self) -> Any:
        return self._r.json()

    def iter_lines(self) -> Iterator[bytes]:
        yield from self._r.content.splitlines()


def sdk(client: TestClient, key: str) -> Any:
    """ragflow-sdk's own `RAGFlow` client, its HTTP calls sent through the TestClient (as
    `requests` would send them: None params left out, other params as str())."""
    from ragflow_sdk import RAGFlow

    class TestRAGFlow(RAGFlow):
        def post(self, path, json=None, stream=False, files=None):
            return _SdkResponse(
                client.post(self.api_url + path, json=json, headers=self.authorization_header)
            )

        def get(self, path, params=None, json=None):
            q = {k: str(v) for k, v in (params or {}).items() if v is not None}
            return _SdkResponse(
                client.get(self.api_url + path, params=q, headers=self.authorization_header)
            )

        def delete(self, path, json):
            return _SdkResponse(
                client.request(
                    "DELETE", self.api_url + path, json=json, headers=self.authorization_header
                )
            )

        def put(self, path, json):
            return _SdkResponse(
                client.put(self.api_url + path, json=json, headers=self.authorization_header)
            )

    return TestRAGFlow(key, "")
