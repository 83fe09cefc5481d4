"""Kill the server mid-ingestion (SIGKILL), restart it on the same data dir: every document
ends DONE or FAIL, the resumed task finishes, and no chunk is duplicated."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server
from tests.helpers.llamafarm import LF

pytestmark = pytest.mark.e2e

WORDS = [
    "river",
    "stone",
    "amber",
    "cedar",
    "falcon",
    "harbor",
    "lantern",
    "meadow",
    "orchard",
    "quarry",
    "saddle",
    "thistle",
    "willow",
]


def document(i: int) -> bytes:
    rng = random.Random(i)
    body = " ".join(rng.choice(WORDS) for _ in range(1500))
    return f"Document {i} about topic-{i}.\n\n{body}\n".encode()


def files_state(lf: LF) -> list[dict]:
    return lf.req("GET", "/v1/projects/crash/test/datasets").json()["datasets"][0]["details"][
        "file_details"
    ]


def test_kill_mid_ingestion_then_restart(tmp_path: Path, model_cache: Path) -> None:
    data = tmp_path / "data"
    env = {"PASTURE_INGEST_BATCH_ITEMS": "2"}
    first = Server(data, model_cache, env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as http:
            lf = LF(http)
            lf.create_project("crash", "test")
            lf.create_dataset("crash", "test", "docs")
            for i in range(24):
                assert (
                    lf.upload("crash", "test", "docs", f"doc{i}.txt", document(i)).status_code
                    == 200
                )
            lf.upload("crash", "test", "docs", "bad.exe", b"MZ")  # one that must end FAIL
            task_id = lf.process("crash", "test", "docs", asynchronous=True).json()["task_id"]
            deadline = time.time() + 120
            while time.time() < deadline:
                t = lf.task("crash", "test", task_id).json()
                if t["state"] == "PROGRESS" and t["meta"]["current"] >= 2:
                    break
                assert t["state"] in ("PENDING", "STARTED", "PROGRESS"), t
                time.sleep(0.02)
            running = [f for f in files_state(lf) if f["status"] != "DONE"]
            assert running, "ingestion finished before the kill; the test needs more work per run"
        first.kill()
    finally:
        first.stop()

    second = Server(data, model_cache, env).start()
    try:
        with httpx.Client(base_url=second.url, timeout=60) as http:
            lf = LF(http)
            task = lf.wait_task("crash", "test", task_id, timeout=180)
            assert task["state"] == "SUCCESS", task
            assert task["meta"] == {"current": 25, "total": 25}
            files = files_state(lf)
            statuses = {f["original_filename"]: f["status"] for f in files}
            assert statuses.pop("bad.exe") == "FAIL"
            assert set(statuses.values()) == {"DONE"} and len(statuses) == 24
            chunks_in_records = sum(f["chunks"] for f in files)
            health = lf.req("GET", "/v1/projects/crash/test/rag/health").json()
            indexed = int(health["components"]["vector_store"]["message"].split()[0])
            assert indexed == chunks_in_records  # nothing duplicated, nothing lost
            body = lf.query(
                "crash", "test", query="topic-7", top_k=50, retrieval_strategy="keyword"
            ).json()
            ids = [r["chunk_id"] for r in body["results"]]
            assert len(ids) == len(set(ids))
            assert body["results"][0]["metadata"]["filename"] == "doc7.txt"
    finally:
        second.stop()
