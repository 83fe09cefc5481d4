"""Regression: a process that loads the local search index and then the embedder must not
crash (usearch loaded before onnxruntime segfaults on onnxruntime's import)."""

from __future__ import annotations

import subprocess
import sys


def test_index_then_embedder_imports_in_a_fresh_process() -> None:
    code = (
        "import pasture.adapters.local.sqlite_search_index\n"
        "import pasture.adapters.local.onnx_embedder\n"
        "import onnxruntime\n"
        "print('alive')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "alive" in r.stdout, r.stderr[-2000:]
