"""Each Lambda imports only what its group needs; heavy libraries load on first use.

Every function (each group of the manifest, the authorizer, the ingest function) is imported
in a fresh interpreter with the aws backend and dummy settings, as its Lambda would: the
handler module when `functions/<name>/handler.py` exists, else what it does (the group's
routers in `create_app` over `build_container`). None of the heavy modules below may be in
`sys.modules` afterwards, and nothing may open a connection. Presence, not timing: the
timing budget is `bench/coldstart.py`'s (CI machines are too noisy for it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pasture.api.groups import GROUPS

ROOT = Path(__file__).resolve().parents[2]

# No function imports these when it starts; the ones that use them (the embedder, the
# OpenSearch index, parsers, speech) load them on first use. Same list as bench/coldstart.py.
HEAVY = (
    "numpy",
    "onnxruntime",
    "onnx",
    "tokenizers",
    "safetensors",
    "opensearchpy",
    "llama_cpp",
    "usearch",
    "faster_whisper",
    "ctranslate2",
    "av",
    "pypdf",
    "docx",
    "bs4",
    "lxml",
    "httpx",
)
FUNCTIONS = [g.name for g in GROUPS] + ["authorizer", "ingest", "keys"]

CHILD = """\
import json, socket, sys
attempts = []
def _refuse(*a, **k):
    attempts.append(repr(a[:2])[:200])
    raise OSError("no network while importing a handler")
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.getaddrinfo = socket.create_connection = _refuse
{body}
print("@@" + json.dumps({{
    "heavy": sorted(m for m in {heavy!r} if m in sys.modules),
    "net": attempts,
}}))
"""

HANDLER = """\
import importlib.util
sys.path.insert(0, {dir!r})
spec = importlib.util.spec_from_file_location("handler", {path!r})
mod = importlib.util.module_from_spec(spec)
sys.modules["handler"] = mod
spec.loader.exec_module(mod)
"""

# What a group's handler does, for a handler not written yet (and the part that is ours).
GROUP_APP = """\
from pasture.api.app import create_app
from pasture.api.groups import group
from pasture.bootstrap import build_container
from pasture.config import get_settings
app = create_app([group({name!r})], container=build_container(get_settings()))
"""
CONTAINER = """\
from pasture.bootstrap import build_container
from pasture.config import get_settings
container = build_container(get_settings())
"""


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PASTURE_", "AWS_"))}
    env.update(
        PASTURE_BACKEND="aws",
        PASTURE_DATA_DIR=str(tmp),
        PASTURE_TABLE="pasture-test",
        PASTURE_BUCKET="pasture-test",
        PASTURE_OPENSEARCH_ENDPOINT="https://pasture-test.invalid",
        PASTURE_STATE_MACHINE_ARN="arn:aws:states:us-east-1:000000000000:stateMachine:test",
        PASTURE_SAGEMAKER_ENDPOINT="pasture-test",
        PASTURE_TRANSCRIBER="sagemaker",
        PASTURE_AWS_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="pasture-test",
        POWERTOOLS_METRICS_NAMESPACE="PastureTest",
    )
    return env


def _loaded(body: str, tmp: Path) -> dict[str, list[str]]:
    code = CHILD.format(body=body, heavy=HEAVY)
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("@@"))
    result: dict[str, list[str]] = json.loads(line[2:])
    return result


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_function_starts_without_heavy_modules(name: str, tmp_path: Path) -> None:
    handler = ROOT / "functions" / name / "handler.py"
    if handler.is_file():
        missing = [m for m in ("mangum", "boto3") if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"the handler needs the aws extra ({', '.join(missing)})")
        body = HANDLER.format(dir=str(handler.parent), path=str(handler))
    elif name in ("authorizer", "ingest"):
        body = CONTAINER
    else:
        body = GROUP_APP.format(name=name)
    got = _loaded(body, tmp_path)
    assert got["heavy"] == [], f"{name} imports {got['heavy']} when it starts"
    assert got["net"] == [], f"{name} opened connections while importing: {got['net']}"


def test_vector_alias_still_resolves_at_run_time() -> None:
    # The alias is built on first access (numpy stays out of processes that never ask).
    import numpy as np
    import numpy.typing as npt

    from pasture.domain import search

    assert search.Vector == npt.NDArray[np.float32]
    from pasture.domain.search import Vector

    assert Vector is search.Vector or Vector == search.Vector
    with pytest.raises(AttributeError):
        search.NoSuchName  # noqa: B018
