"""How long the CDK app takes to synthesize, as CI and `cdk synth` run it.

    .venv/bin/python bench/synth.py [--runs 3] [--layers-dir DIR] [-c key=value ...]

Each run is a fresh `python infra/app.py` process (jsii starts Node.js, the stack is built, the
assets are staged into a new temporary cdk.out, cdk-nag runs), timed from the outside, with the
layers `layers/build.py` built (built first if missing; the build is not timed). Prints the
machine, the median and each run's wall time, the template's size and resource count, and the
staged assets' total size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers-dir", default=None, help="built layers (default: layers/build)")
    ap.add_argument("-c", dest="context", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    context = dict(c.split("=", 1) for c in args.context)
    if args.layers_dir:
        context["layersDir"] = args.layers_dir
    else:
        subprocess.run([sys.executable, str(ROOT / "layers" / "build.py")], check=True, cwd=ROOT)
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context)}
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

    print(
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    )
    times, template, assets = [], None, 0
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            env["CDK_OUTDIR"] = out
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(ROOT / "infra" / "app.py")],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
                return proc.returncode
            tpl = next(Path(out).glob("*.template.json"))
            template = json.loads(tpl.read_text())
            assets = sum(_dir_bytes(p) for p in Path(out).glob("asset.*") if p.is_dir())
    assert template is not None
    print(
        f"synth wall time: median {statistics.median(times):.1f} s "
        f"(runs: {', '.join(f'{t:.1f}' for t in times)})"
    )
    print(
        f"template: {len(json.dumps(template)) / 1024:.0f} KiB, "
        f"{len(template['Resources'])} resources; staged assets {assets / 2**20:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
