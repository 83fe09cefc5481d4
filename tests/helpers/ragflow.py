"""A thin RAGFlow (`/api/v1`) client over TestClient or httpx: envelope checks, shapes, waits.

RAGFlow answers HTTP 200 almost always and puts the outcome in the body (`{"code": 0, "data"}`
or `{"code": N, "message"}`), so every helper checks the envelope before anything else.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

HEX32 = re.compile(r"[0-9a-f]{32}")
# Pasture's document ids are the sha256 of the content (64 hex), where RAGFlow's are uuid1 (32
# hex); both shapes pass here until that is settled.
DOC_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")
RUN_STATES = ("UNSTART", "RUNNING", "CANCEL", "DONE", "FAIL")
FINISHED = ("DONE", "FAIL", "CANCEL")
CHUNK_METHODS = [
    "naive",
    "manual",
    "qa",
    "table",
    "paper",
    "book",
    "laws",
    "presentation",
    "picture",
    "one",
    "knowledge_graph",
    "email",
]
CANT_STOP = "Can't stop parsing document with progress at 0 or 100"
PARSE_TIMEOUT = 30.0  # seconds for a few small files to finish


def name(prefix: str = "ds") -> str:
    """A unique dataset name within RAGFlow's rules (letters, digits, underscore)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def unknown_dataset_id() -> str:
    return uuid.uuid1().hex


class RF:
    """Speaks RAGFlow's HTTP API as one tenant (an API key) through a TestClient."""

    def __init__(self, client: Any, key: str | None) -> None:
        self.c = client
        self.h = {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ envelope

    def req(self, method: str, path: str, **kw: Any) -> Any:
        """The raw response (starlette's TestClient may answer with httpx or httpx2 types)."""
        headers = {**self.h, **kw.pop("headers", {})}
        r = self.c.request(method, "/api/v1" + path, headers=headers, **kw)
        return r

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        """The `data` of a successful reply (None where RAGFlow sends none)."""
        r = self.req(method, path, **kw)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        body = r.json()
        assert body.get("code") == 0, (method, path, body)
        assert set(body) <= {"code", "data"}, body
        return body.get("data")

    def err(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        """(code, message) of a failed reply: HTTP 200, a non-zero code, never our own crash."""
        r = self.req(method, path, **kw)
        return error_of(r)

    # ------------------------------------------------------------------ datasets

    def create_dataset(self, dataset_name: str | None = None, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok(
            "POST", "/datasets", json={"name": dataset_name or name(), **fields}
        )
        return data

    def datasets(self, **params: Any) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ok("GET", "/datasets", params=params)
        return data

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        (ds,) = self.datasets(id=dataset_id)
        return ds

    # ------------------------------------------------------------------ documents

    def upload(self, dataset_id: str, *files: tuple[str, bytes]) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ok(
            "POST",
            f"/datasets/{dataset_id}/documents",
            files=[("file", (n, io.BytesIO(b))) for n, b in files],
        )
        return data

    def documents(self, dataset_id: str, **params: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("GET", f"/datasets/{dataset_id}/documents", params=params)
        return data

    def document(self, dataset_id: str, document_id: str) -> dict[str, Any]:
        (doc,) = self.documents(dataset_id, id=document_id)["docs"]
        return doc

    def parse(self, dataset_id: str, ids: list[str]) -> None:
        self.ok("POST", f"/datasets/{dataset_id}/chunks", json={"document_ids": ids})

    def wait_parsed(
        self, dataset_id: str, ids: Iterable[str], timeout: float = PARSE_TIMEOUT
    ) -> dict[str, dict[str, Any]]:
        """Each document once its `run` is DONE, FAIL or CANCEL; fails after `timeout`."""
        wanted = list(ids)
        deadline = time.monotonic() + timeout
        while True:
            docs = {d["id"]: d for d in self.documents(dataset_id, page_size=1000)["docs"]}
            missing = [i for i in wanted if i not in docs]
            assert not missing, f"documents {missing} vanished while parsing"
            if all(docs[i]["run"] in FINISHED for i in wanted):
                return {i: docs[i] for i in wanted}
            if time.monotonic() > deadline:
                states = {
                    docs[i]["name"]: (docs[i]["run"], docs[i]["progress_msg"]) for i in wanted
                }
                raise AssertionError(f"parsing did not finish in {timeout}s: {states}")
            time.sleep(0.05)

    def parsed(self, dataset_id: str, *files: tuple[str, bytes]) -> list[dict[str, Any]]:
        """Upload, parse and wait: the documents, all DONE."""
        ids = [d["id"] for d in self.upload(dataset_id, *files)]
        self.parse(dataset_id, ids)
        done = self.wait_parsed(dataset_id, ids)
        for d in done.values():
            assert d["run"] == "DONE", (d["name"], d["run"], d["progress_msg"])
        return [done[i] for i in ids]

    # ------------------------------------------------------------------ chunks

    def chunks(self, dataset_id: str, document_id: str, **params: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok(
            "GET", f"/datasets/{dataset_id}/documents/{document_id}/chunks", params=params
        )
        return data

    def add_chunk(
        self, dataset_id: str, document_id: str, content: str, **fields: Any
    ) -> dict[str, Any]:
        data = self.ok(
            "POST",
            f"/datasets/{dataset_id}/documents/{document_id}/chunks",
            json={"content": content, **fields},
        )
        assert set(data) == {"chunk"}, data
        chunk: dict[str, Any] = data["chunk"]
        return chunk


def error_of(r: Any) -> tuple[int, str]:
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"code", "message"}, body
    code, message = body["code"], body["message"]
    assert isinstance(code, int) and code != 0, body
    # Code 100 is our own unexpected exception ("Internal server error"): never a valid answer.
    assert code != 100, body
    assert isinstance(message, str) and message.strip(), body
    return code, message


# ---------------------------------------------------------------------- shapes


def assert_time_pair(obj: Mapping[str, Any], prefix: str) -> None:
    """`<prefix>_time` in epoch ms and `<prefix>_date` the same instant in RFC 1123 (GMT)."""
    ms, date = obj[f"{prefix}_time"], obj[f"{prefix}_date"]
    assert isinstance(ms, int) and not isinstance(ms, bool), (prefix, ms)
    assert ms > 1_600_000_000_000, ms  # milliseconds, not seconds
    assert isinstance(date, str) and date.endswith(" GMT"), date
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", date), (
        date
    )
    assert int(parsedate_to_datetime(date).timestamp()) == ms // 1000, (date, ms)


def assert_dataset(ds: Mapping[str, Any]) -> None:
    assert HEX32.fullmatch(ds["id"]), ds["id"]
    types = {
        "name": str,
        "chunk_count": int,
        "document_count": int,
        "chunk_method": str,
        "embedding_model": str,
        "language": str,
        "permission": str,
        "parser_config": dict,
        "similarity_threshold": float,
        "vector_similarity_weight": float,
        "tenant_id": str,
        "created_by": str,
        "token_num": int,
        "status": str,
    }
    for key, t in types.items():
        assert isinstance(ds[key], t) and not isinstance(ds[key], bool), (key, ds[key])
    assert ds["chunk_method"] in CHUNK_METHODS
    assert_time_pair(ds, "create")
    assert_time_pair(ds, "update")
    assert ds["update_time"] >= ds["create_time"]


def assert_document(doc: Mapping[str, Any]) -> None:
    assert DOC_ID.fullmatch(doc["id"]), doc["id"]
    assert HEX32.fullmatch(doc["dataset_id"]), doc["dataset_id"]
    types = {
        "name": str,
        "location": str,
        "chunk_method": str,
        "parser_config": dict,
        "run": str,
        "progress": float,
        "progress_msg": str,
        "size": int,
        "type": str,
        "token_count": int,
        "chunk_count": int,
        "created_by": str,
        "process_duation": float,
    }
    for key, t in types.items():
        assert isinstance(doc[key], t) and not isinstance(doc[key], bool), (key, doc[key])
    assert doc["run"] in RUN_STATES, doc["run"]
    assert 0.0 <= doc["progress"] <= 1.0
    assert doc["chunk_method"] in CHUNK_METHODS
    assert doc["location"] == doc["name"]
    assert_time_pair(doc, "create")
    assert_time_pair(doc, "update")


def assert_chunk(chunk: Mapping[str, Any]) -> None:
    assert HEX32.fullmatch(chunk["id"]), chunk["id"]
    assert isinstance(chunk["content"], str) and chunk["content"]
    assert DOC_ID.fullmatch(chunk["document_id"])
    assert HEX32.fullmatch(chunk["dataset_id"])
    assert isinstance(chunk["important_keywords"], list)
    assert all(isinstance(k, str) for k in chunk["important_keywords"])
    assert isinstance(chunk["available"], bool)
    assert chunk["document_keyword"] == chunk["docnm_kwd"]
