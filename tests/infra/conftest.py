"""Synthesizing the CDK stack in process (no AWS account, no Docker: synthesis only writes the
template and stages assets). Each configuration is synthesized once per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii starts its Node.js process on the first aws_cdk import and warns there about the Node
# version of the machine; the tests do not need to hear it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "18,20,22,24,26")

LAYERS = ("deps", "ml", "audio", "models", "code")


@dataclass
class Synth:
    template: dict[str, Any]
    outdir: Path
    stack: Any  # infra.stack.PastureStack

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="session")
def fake_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in layer directories: the stack's structure does not depend on their contents
    (tests/infra/test_layers.py checks the real layers, test_app.py synthesizes with them)."""
    base = tmp_path_factory.mktemp("layers")
    for name in LAYERS:
        (base / name / "python").mkdir(parents=True)
        (base / name / "python" / "placeholder.txt").write_text(name)
    return base


@pytest.fixture(scope="session")
def synth(fake_layers: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synth]:
    cache: dict[str, Synth] = {}

    def run(**context: Any) -> Synth:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            from infra.stack import build_app

            outdir = tmp_path_factory.mktemp("cdk.out")
            app, stack = build_app({"layersDir": str(fake_layers), **context}, outdir=str(outdir))
            app.synth()
            template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
            cache[key] = Synth(template, outdir, stack)
        return cache[key]

    return run


# A configuration with every optional part on: GPU endpoint, consumer keys, RAGFlow accounts,
# tracing, a three-node search domain, everything removed with the stack.
FULL = {
    "gpu": "true",
    "modelDataUrl": "s3://models-bucket/pasture/model.tar.gz",
    "consumers": "alice,mobile-app",
    "ragflowAccounts": "true",
    "tracing": "true",
    "removal": "destroy",
    "searchInstanceCount": "3",
    "alarmEmail": "ops@example.com",
}
