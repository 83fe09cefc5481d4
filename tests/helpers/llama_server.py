"""A real `python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible server) with the
packaged SmolLM2 GGUF, on a free loopback port, for tests of the remote chat adapter.

Registered in tests/conftest.py through `pytest_plugins`. It skips when llama-cpp-python, its
`[server]` packages or the model are not installed, like the other model-backed suites.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.process import free_port, start_and_wait, stop

# What `llama-cpp-python[server]` adds (import names); uvicorn, fastapi, pydantic-settings and
# PyYAML come with Pasture's own extras.
_SERVER_MODULES = ("llama_cpp", "sse_starlette", "starlette_context", "uvicorn", "yaml")
N_CTX = 2048
# One thread: llama.cpp's worker threads spin-wait for each other, so on a 2-core machine
# shared with other work two threads can be 100x slower than one (measured: 23.6 s against
# 0.16 s for a 16-token answer while a parallel test run kept the cores busy).
THREADS = 1


class LlamaServer:
    def __init__(
        self, model: Path, log: Path, *, n_ctx: int = N_CTX, threads: int = THREADS
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.args = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            # Its default ends a running stream early (with [DONE]) whenever another request
            # arrives; a server meant to serve concurrent clients must queue them instead.
            "--interrupt_requests",
            "False",
            "--verbose",
            "False",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> LlamaServer:
        self.proc = start_and_wait(
            "llama_cpp.server", self.args, self.log, f"{self.base_url}/models", timeout=timeout
        )
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop(proc)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (`http://127.0.0.1:<port>/v1`) of a running llama_cpp.server with SmolLM2."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python[server] is not installed (missing {', '.join(missing)})")
    from pasture.adapters.local.model_files import smollm2_gguf
    from pasture.domain.errors import Unavailable

    try:
        model = smollm2_gguf()
    except Unavailable as e:
        pytest.skip(e.message)
    server = LlamaServer(model, tmp_path_factory.mktemp("llama-server") / "server.log")
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
