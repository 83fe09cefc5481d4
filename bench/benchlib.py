"""What the benchmark scripts share: where SciFact is, the corpus reader, the machine line,
and a real `pasture serve` on a free loopback port."""

from __future__ import annotations

import gzip
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx

# The BEIR copy beside the repository (../shared/datasets), or PASTURE_SCIFACT_DIR.
SCIFACT = Path(
    os.environ.get("PASTURE_SCIFACT_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
)


def machine() -> str:
    return (
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()}, "
        f"python {platform.python_version()}, onnxruntime {version('onnxruntime')}"
    )


def load_corpus(limit: int | None = None) -> list[tuple[str, str]]:
    """(doc_id, "title\\n\\ntext") for the first `limit` SciFact documents (all when None)."""
    out = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append((d["_id"], f"{d['title']}\n\n{d['text']}"))
            if limit is not None and len(out) >= limit:
                break
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, log: Path, settings: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """`pasture serve` (the console script) with these PASTURE_* settings and no others from
    the caller's shell; returns once /health/liveness answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTURE_")}
    env.update(settings)
    exe = Path(sys.executable).parent / "pasture"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health/liveness", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
