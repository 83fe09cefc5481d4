"""`python infra/app.py`, as CI and `cdk synth` (through cdk.json) run it: a fresh process
synthesizes the stack with the real layers and exits 0 only when cdk-nag has nothing left
unsuppressed. The layers are built once (layers/build.py keeps them while their inputs are
unchanged). No AWS account and no Docker are involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_layers() -> Path:
    from layers.build import BUILD_DIR, build

    build()
    return BUILD_DIR


def _synth(outdir: Path, context: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(context),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "infra" / "app.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_app_synthesizes_with_the_built_layers(built_layers: Path, tmp_path: Path) -> None:
    # When the app runs as `cdk synth` runs it
    proc = _synth(tmp_path, {})
    # Then it succeeds, and the template's layers are the built ones
    assert proc.returncode == 0, proc.stderr[-3000:]
    template = json.loads((tmp_path / "Pasture.template.json").read_text())
    assets = json.loads((tmp_path / "Pasture.assets.json").read_text())["files"]
    staged = {a["source"]["path"] for a in assets.values() if a["source"].get("packaging") == "zip"}
    layers = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert len(layers) == 5
    # Each staged layer is a copy of a built layer directory (same files).
    for name in ("deps", "ml", "audio", "models", "code"):
        built = sorted(
            p.relative_to(built_layers / name).as_posix()
            for p in (built_layers / name).rglob("*")
            if p.is_file()
        )
        matches = [
            s
            for s in staged
            if sorted(
                p.relative_to(tmp_path / s).as_posix()
                for p in (tmp_path / s).rglob("*")
                if p.is_file()
            )
            == built
        ]
        assert matches, f"layer {name} is not staged as built"


def test_app_exits_non_zero_on_a_bad_setting(built_layers: Path, tmp_path: Path) -> None:
    proc = _synth(tmp_path, {"gpu": "true"})
    assert proc.returncode != 0
    assert "modelDataUrl" in proc.stderr


def test_app_refuses_missing_layers(tmp_path: Path) -> None:
    proc = _synth(tmp_path / "out", {"layersDir": str(tmp_path / "none")})
    assert proc.returncode != 0
    assert "layers/build.py" in proc.stderr
