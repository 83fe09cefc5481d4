"""Fixtures shared by every layer."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Load onnxruntime before anything can load usearch: the reverse order crashes the process
# (native library clash between usearch 2.26 and onnxruntime 1.31). The adapter does the same.
import onnxruntime  # noqa: F401
import pytest

# The `llama_server` fixture: a real `python -m llama_cpp.server` on loopback.
pytest_plugins = ["tests.helpers.llama_server"]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX build per test session instead of one per data dir."""
    path = Path(os.environ.get("PASTURE_TEST_MODEL_CACHE") or tmp_path_factory.mktemp("models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def api_keys() -> dict[str, str]:
    """Two tenants, keys generated per run."""
    return {"alice": "ak-" + secrets.token_hex(16), "bob": "bk-" + secrets.token_hex(16)}
