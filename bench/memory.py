"""Memory of `pasture serve`: idle RSS, and peak RSS while ingesting SciFact over HTTP.

    .venv/bin/python bench/memory.py [--docs N] [--data-dir DIR]

Starts `.venv/bin/pasture serve` on a free 127.0.0.1 port with a fresh data dir, waits for
/health/liveness, sleeps 2 s and reads VmRSS (target <= 200 MB). Then, through the LlamaFarm
HTTP API, creates a project and a dataset, uploads every SciFact doc as "<doc_id>.txt"
("title\\n\\ntext"), starts async processing and polls the task until SUCCESS/FAILURE while a
thread samples VmRSS every 0.2 s; VmHWM (the kernel's high-water mark) is read at the end
(target peak <= 1.5 GB). The server gets SIGTERM at the end, also on error.
"""

# onnxruntime must be imported before usearch (pulled in by pasture's search index): the
# other order segfaults when onnxruntime loads. Keep this first even once that is fixed.
# (This script imports no pasture module itself; the line is kept for uniformity.)
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchlib import SCIFACT, load_corpus

REPO = Path(__file__).resolve().parent.parent
NS, PROJECT, DATASET = "bench", "sci", "scifact"
MB = 1024 * 1024
IDLE_TARGET_MB = 200
PEAK_TARGET_MB = 1536


def machine() -> str:
    return (
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()}, "
        f"python {platform.python_version()}"
    )


def proc_status(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status in bytes (e.g. VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler(threading.Thread):
    """VmRSS of one process every `interval` seconds, until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.monotonic(), proc_status(self.pid, "VmRSS")))
            except (OSError, KeyError):
                return  # the process is gone
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak(self, since: float = 0.0) -> int:
        return max((rss for t, rss in self.samples if t >= since), default=0)


def wait_live(client: httpx.Client, proc: subprocess.Popen[bytes], timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"pasture serve exited with {proc.returncode} before it was live")
        try:
            if client.get("/health/liveness", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"pasture serve not live after {timeout:.0f} s")


def check(r: httpx.Response) -> dict:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}")
    return r.json()


def bench(args: argparse.Namespace, data_dir: Path, log_path: Path) -> int:
    corpus = load_corpus(args.docs)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASTURE_API_KEYS")}
    cmd = [
        str(REPO / ".venv" / "bin" / "pasture"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    sampler: Sampler | None = None
    rows: list[tuple[str, str]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            started = wait_live(client, proc, timeout=120)
            time.sleep(2)
            idle = proc_status(proc.pid, "VmRSS")
            rows.append(("startup to liveness", f"{started:.1f} s"))
            ok = "ok" if idle <= IDLE_TARGET_MB * MB else "OVER"
            rows.append(("idle RSS", f"{idle / MB:.1f} MB ({ok}, target <= {IDLE_TARGET_MB})"))

            sampler = Sampler(proc.pid)
            sampler.start()
            check(
                client.post(f"/v1/projects/{NS}", json={"name": PROJECT, "config_template": "rag"})
            )
            prefix = f"/v1/projects/{NS}/{PROJECT}"
            check(client.post(f"{prefix}/datasets", json={"name": DATASET}))
            t0 = time.monotonic()
            for doc_id, text in corpus:
                files = {"file": (f"{doc_id}.txt", text.encode(), "text/plain")}
                body = check(client.post(f"{prefix}/datasets/{DATASET}/data", files=files))
                if body.get("duplicate"):
                    print(f"warning: {doc_id}.txt reported as duplicate")
            upload_s = time.monotonic() - t0
            time.sleep(1)
            after_upload = proc_status(proc.pid, "VmRSS")
            rows.append(
                (
                    "upload",
                    f"{len(corpus)} files in {upload_s:.1f} s ({len(corpus) / upload_s:.0f} files/s)",
                )
            )
            rows.append(("RSS after upload", f"{after_upload / MB:.1f} MB"))

            t0 = time.monotonic()
            mark = time.monotonic()
            body = check(
                client.post(
                    f"{prefix}/datasets/{DATASET}/process", params={"async_processing": "true"}
                )
            )
            task_id = body["task_id"]
            state, task = "PENDING", {}
            last_print = time.monotonic()
            while state not in ("SUCCESS", "FAILURE", "REVOKED"):
                time.sleep(1.0)
                if proc.poll() is not None:
                    raise RuntimeError(f"pasture serve died during ingestion ({proc.returncode})")
                task = check(client.get(f"{prefix}/tasks/{task_id}"))
                state = task["state"]
                if time.monotonic() - last_print > 30:
                    last_print = time.monotonic()
                    meta = task.get("meta") or {}
                    rss = sampler.samples[-1][1] if sampler.samples else 0
                    print(
                        f"  {time.monotonic() - t0:5.0f} s: {state} {meta.get('current')}/"
                        f"{meta.get('total')} files, RSS {rss / MB:.0f} MB",
                        flush=True,
                    )
            ingest_s = time.monotonic() - t0
            time.sleep(0.5)
            sampler.stop()
            hwm = proc_status(proc.pid, "VmHWM")
            final = proc_status(proc.pid, "VmRSS")
            peak = max(sampler.peak(since=mark), hwm)
            result = task.get("result") or {}
            processed = result.get("processed_files", 0)
            failed = result.get("failed_files", 0)
            rag = check(client.get(f"{prefix}/rag/health"))
            store = (rag.get("components") or {}).get("vector_store") or {}
            chunks = store.get("message", "?")
            rows.append(
                (
                    "ingestion",
                    f"{state}: {processed} processed, {failed} failed in {ingest_s:.1f} s "
                    f"({processed / ingest_s:.1f} docs/s)",
                )
            )
            rows.append(("index", str(chunks)))
            rows.append(("peak RSS sampled (0.2 s)", f"{sampler.peak(since=mark) / MB:.1f} MB"))
            ok = "ok" if peak <= PEAK_TARGET_MB * MB else "OVER"
            rows.append(("VmHWM at end", f"{hwm / MB:.1f} MB"))
            rows.append(("peak RSS", f"{peak / MB:.1f} MB ({ok}, target <= {PEAK_TARGET_MB})"))
            rows.append(("RSS after ingestion", f"{final / MB:.1f} MB"))
            if state != "SUCCESS" or processed != len(corpus):
                print(
                    f"ERROR: task {state}, {processed}/{len(corpus)} processed: {task.get('error')}"
                )
                return_code = 1
            else:
                return_code = 0
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # our child only, by its PID
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if rows:
            print(f"\n{'measure':<26} value")
            for name, value in rows:
                print(f"{name:<26} {value}")
        graceful = "Finished server process" in log_path.read_text(errors="replace")
        print(
            f"server exit code after SIGTERM: {proc.returncode} "
            f"({'graceful shutdown logged' if graceful else 'NO graceful shutdown in its log'})"
        )
    return return_code


def print_log(path: Path, lines: int = 40) -> None:
    """The server's last lines, access-log lines left out."""
    if not path.exists():
        return
    text = path.read_text(errors="replace").splitlines()
    kept = [line for line in text if '" 200 OK' not in line and "HTTP/1.1" not in line]
    print(f"server log (last {lines} lines, access log left out):")
    print("\n".join(kept[-lines:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=None, help="first N docs (default: all 5,183)")
    ap.add_argument("--data-dir", type=Path, help="data dir for the server (default: temp)")
    args = ap.parse_args()
    print(machine())
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        print(f"skip: SciFact not found at {SCIFACT}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="pasture-bench-memory-"))
    data_dir = args.data_dir or tmp / "data"
    try:
        code = bench(args, data_dir, tmp / "server.log")
        if code:
            print_log(tmp / "server.log")
        return code
    except Exception:
        print_log(tmp / "server.log")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
