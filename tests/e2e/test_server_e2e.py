"""The real server on 127.0.0.1 driven over HTTP: the LlamaFarm document flow end to end."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server
from tests.helpers.files import docx_bytes, pdf_bytes
from tests.helpers.llamafarm import LF

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[tuple[Server, str]]:
    key = secrets.token_hex(16)
    s = Server(
        tmp_path_factory.mktemp("e2e") / "data", model_cache, {"PASTURE_API_KEYS": f"e2e:{key}"}
    )
    s.start()
    try:
        yield s, key
    finally:
        s.stop()


def test_create_upload_process_query(server: tuple[Server, str]) -> None:
    srv, key = server
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        lf = LF(http, {"Authorization": f"Bearer {key}"})
        assert lf.create_project("acme", "handbook").status_code == 200
        assert lf.create_dataset("acme", "handbook", "manuals").status_code == 200
        files = {
            "pumps.pdf": pdf_bytes(
                [
                    "Centrifugal pumps must be primed before start-up.",
                    "Check the impeller for wear monthly.",
                ]
            ),
            "safety.docx": docx_bytes(["Always wear ear protection near the compressor room."]),
            "vacation.md": b"# Leave policy\n\nEmployees accrue 2.5 vacation days per month of service.",
        }
        hashes = {}
        for name, data in files.items():
            r = lf.upload("acme", "handbook", "manuals", name, data)
            assert r.status_code == 200 and r.json()["processed"] is False
            hashes[name] = r.json()["hash"]
        r = lf.process("acme", "handbook", "manuals", asynchronous=True)
        assert r.status_code == 200
        task = lf.wait_task("acme", "handbook", r.json()["task_id"], timeout=120)
        assert task["state"] == "SUCCESS", task
        assert task["meta"] == {"current": 3, "total": 3} and task["result"]["processed_files"] == 3

        for question, expected in [
            ("how many vacation days do employees get", "vacation.md"),
            ("what must be done to a centrifugal pump before starting", "pumps.pdf"),
            ("hearing protection compressor", "safety.docx"),
        ]:
            body = lf.query("acme", "handbook", query=question, top_k=3).json()
            top = body["results"][0]
            assert top["document_id"] == hashes[expected], (question, body)
            assert 0 <= top["keyword_score"] <= 1 and 0 <= top["vector_score"] <= 1

        # Without the key nothing is visible.
        assert http.get("/v1/projects/acme/handbook").status_code == 401


def test_serve_refuses_open_mode_off_loopback(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "pasture"
    r = subprocess.run(
        [str(exe), "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert r.returncode == 2 and "127.0.0.1 only" in r.stderr
