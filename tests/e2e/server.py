"""Start and stop a real `pasture serve` on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.process import free_port, start_and_wait, stop


class Server:
    def __init__(
        self, data_dir: Path, model_cache: Path, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        self.env = {**os.environ, "PASTURE_MODEL_CACHE_DIR": str(model_cache), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        exe = Path(sys.executable).parent / "pasture"  # the console script the README runs
        args = [str(exe), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.proc = start_and_wait(
            "pasture serve",
            args,
            self.log,
            f"{self.url}/health/liveness",
            timeout=timeout,
            env=self.env,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, like a crash or an OOM kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop(self.proc)
