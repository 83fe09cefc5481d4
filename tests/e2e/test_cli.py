"""`pasture ingest` and `pasture query` through the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pasture.cli import data_dir_lock

pytestmark = pytest.mark.e2e
EXE = str(Path(sys.executable).parent / "pasture")


def run(args: list[str], data: Path, model_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PASTURE_MODEL_CACHE_DIR": str(model_cache), "COLUMNS": "200"}
    return subprocess.run(
        [EXE, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=180, env=env
    )


def test_ingest_then_query(tmp_path: Path, model_cache: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "otters.md").write_text(
        "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart."
    )
    (docs / "bread.txt").write_text(
        "Sourdough bread rises thanks to wild yeast and lactic acid bacteria."
    )
    (docs / "junk.exe").write_bytes(b"MZ\x00")
    data = tmp_path / "data"

    r = run(["ingest", "demo/notes", "kb", *map(str, sorted(docs.iterdir()))], data, model_cache)
    assert r.returncode == 1, r.stderr  # one file failed, and the exit code says so
    assert (
        "2 processed, 1 failed" in r.stdout and "FAIL junk.exe: unsupported file type" in r.stdout
    )

    r = run(["query", "demo/notes", "why do sea otters hold hands?"], data, model_cache)
    assert r.returncode == 0, r.stderr
    assert r.stdout.index("otters.md") < r.stdout.index("bread.txt")

    r = run(["query", "demo/ghost", "x"], data, model_cache)
    assert r.returncode == 1 and "Project demo/ghost not found" in r.stderr


def test_bad_arguments(tmp_path: Path, model_cache: Path) -> None:
    r = run(["ingest", "no-slash", "kb", __file__], tmp_path, model_cache)
    assert r.returncode != 0 and "NAMESPACE/PROJECT" in r.stderr
    r = run(["ingest", "a/b", "kb", str(tmp_path / "missing.txt")], tmp_path, model_cache)
    assert r.returncode != 0 and "not a file" in r.stderr


def test_a_held_data_dir_is_refused(tmp_path: Path, model_cache: Path) -> None:
    with data_dir_lock(tmp_path, "pasture serve"):
        r = run(["query", "a/b", "x"], tmp_path, model_cache)
    assert r.returncode != 0 and "in use by pasture serve" in r.stderr
