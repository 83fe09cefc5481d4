"""The cold-start budget: each Lambda handler's import time next to a bare FastAPI Lambda's.

    .venv/bin/python bench/coldstart.py [--runs 7] [--budget 1.2] [--only system,chat]
                                        [--check] [--profile GROUP] [--json PATH]

What a cold Lambda pays before its first request is importing its handler module: for every
group in `pasture/api/groups.py` that is `functions/<group>/handler.py`, plus
`functions/authorizer/handler.py` and `functions/ingest/handler.py`. Each is imported by path
(`functions/` is not a package) in a fresh interpreter, `--runs` times, and timed inside the
child (perf_counter around the import; the parent also times the whole process, interpreter
start included). The reference is a bare `import fastapi, mangum, boto3` measured in the same
run, interleaved: every handler run is preceded by a bare run, and the order of the handlers
rotates per round, so machine drift hits both. A handler file that does not exist yet is
replaced by a stand-in doing what it will do (marked `stand-in`).

Children run with PASTURE_BACKEND=aws, dummy settings (table, bucket, OpenSearch endpoint,
state machine, SageMaker endpoint, region), dummy AWS credentials, no instance metadata, and a
socket guard: any connection or DNS lookup during the import is refused and counted (the
import must not touch AWS; clients may be built, never used).

Reports per function: median import ms, ratio to the bare import (of medians, and the median
of the per-pair ratios: the budget is checked on the paired one), median process ms, and which
heavy modules were in `sys.modules` after the import. Heavy modules are allowed at import time
by no function (they load on first use); each is also listed with the ports that may need it
at run time (from the group's `ports` in the manifest), so one showing up in a function that
never needs it is named as such. With `--check` the exit status is 1 when a function exceeds
the budget, imports a heavy module, or touched the network; otherwise always 0.

The handlers build their app inside `lambda_app.init_phase()` (the cyclic GC off, then
`gc.freeze()`), as they do on Lambda; the bare import runs as Python starts, GC on.

`--profile GROUP` adds `python -X importtime` of that function against the bare import: the
packages it adds, by self time (one run, so noisy; use it to find what to defer).
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
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

from pasture.api.groups import GROUPS  # noqa: E402  (the manifest only: fastapi, no services)

# Heavy modules -> the ports (or function kinds) that may need them at run time. None of them
# belongs in a handler's import: they load on first use.
HEAVY: dict[str, frozenset[str]] = {
    "numpy": frozenset({"search_index", "embedder", "transcriber", "parsing"}),
    "onnxruntime": frozenset({"embedder"}),
    "onnx": frozenset({"embedder"}),
    "tokenizers": frozenset({"embedder"}),
    "safetensors": frozenset({"embedder"}),
    "opensearchpy": frozenset({"search_index"}),
    "llama_cpp": frozenset(),  # no GGUF model runs in a Lambda
    "usearch": frozenset(),  # the local index; OpenSearch on AWS
    "faster_whisper": frozenset({"transcriber"}),
    "ctranslate2": frozenset({"transcriber"}),
    "av": frozenset({"transcriber"}),
    "pypdf": frozenset({"parsing"}),
    "docx": frozenset({"parsing"}),
    "bs4": frozenset({"parsing", "web"}),
    "lxml": frozenset({"parsing", "web"}),
    "httpx": frozenset({"web", "chat_model", "transcriber"}),  # remote servers, web answers
}
# Reported, not checked: needed by every function (settings, AWS clients, the framework), or
# light enough that the time budget covers them.
NOTED = (
    "pydantic_settings",
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "aws_xray_sdk",
    "pydantic.v1",
    "rich",
    "click",
)
# The non-HTTP functions and the ports they use (the groups' come from the manifest).
EXTRA_FUNCTIONS = {
    "authorizer": frozenset({"records"}),
    "ingest": frozenset({"records", "blobs", "search_index", "embedder", "workflow", "parsing"}),
}

BARE = "import fastapi, mangum, boto3"

# Runs in the child: a guard on the network, then the timed import, then what is loaded.
CHILD = """\
import json, socket, sys, time
attempts = []
def _refuse(*a, **k):
    attempts.append(repr(a[:2])[:120])
    raise OSError("network refused by bench/coldstart.py")
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.getaddrinfo = socket.create_connection = _refuse
import importlib.util
before = len(sys.modules)
t0 = time.perf_counter()
{body}
ms = (time.perf_counter() - t0) * 1000
print("@@coldstart@@" + json.dumps({{
    "ms": ms,
    "modules": len(sys.modules) - before,
    "loaded": sorted(m for m in {watch!r} if m in sys.modules),
    "net": attempts,
}}))
"""

HANDLER_BODY = """\
sys.path.insert(0, {dir!r})  # as the Lambda runtime puts the function's directory first
spec = importlib.util.spec_from_file_location("handler", {path!r})
mod = importlib.util.module_from_spec(spec)
sys.modules["handler"] = mod
spec.loader.exec_module(mod)
"""

# What a group's handler will do, for a handler file not written yet.
GROUP_STAND_IN = """\
import boto3, mangum
from pasture.api.app import create_app
from pasture.api.groups import group
from pasture.bootstrap import build_container
from pasture.config import get_settings
handler = mangum.Mangum(
    create_app([group({name!r})], container=build_container(get_settings())), lifespan="off"
)
"""
FUNCTION_STAND_IN = """\
import boto3
from pasture.bootstrap import build_container
from pasture.config import get_settings
container = build_container(get_settings())
"""


@dataclass
class Target:
    name: str
    ports: frozenset[str]
    body: str
    stand_in: bool = False
    ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # per pair, to the bare run before it
    modules: list[int] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    net: list[str] = field(default_factory=list)


def targets(only: set[str] | None) -> list[Target]:
    fns = [(g.name, g.ports) for g in GROUPS] + list(EXTRA_FUNCTIONS.items())
    out = []
    for name, ports in fns:
        if only and name not in only:
            continue
        path = REPO / "functions" / name / "handler.py"
        if path.is_file():
            body = HANDLER_BODY.format(dir=str(path.parent), path=str(path))
            out.append(Target(name, ports, body))
        elif name in EXTRA_FUNCTIONS:
            out.append(Target(name, ports, FUNCTION_STAND_IN, stand_in=True))
        else:
            out.append(Target(name, ports, GROUP_STAND_IN.format(name=name), stand_in=True))
    return out


def child_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASTURE_", "AWS_", "POWERTOOLS_", "PYTHON"))
    }
    env.update(
        PYTHONPATH=str(REPO / "shared"),
        PASTURE_BACKEND="aws",
        PASTURE_DATA_DIR=str(tmp / "data"),
        PASTURE_TABLE="pasture-bench",
        PASTURE_BUCKET="pasture-bench",
        PASTURE_OPENSEARCH_ENDPOINT="https://pasture-bench.invalid",
        PASTURE_STATE_MACHINE_ARN="arn:aws:states:us-east-1:000000000000:stateMachine:bench",
        PASTURE_SAGEMAKER_ENDPOINT="pasture-bench",
        PASTURE_TRANSCRIBER="sagemaker",
        PASTURE_AWS_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIDBENCHCOLDSTART",
        AWS_SECRET_ACCESS_KEY="bench-coldstart-secret",
        AWS_EC2_METADATA_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="pasture-bench",
        POWERTOOLS_METRICS_NAMESPACE="PastureBench",
    )
    return env


def run_child(body: str, env: dict[str, str], cwd: Path, *flags: str) -> tuple[dict, float, str]:
    code = CHILD.format(body=body, watch=(*HEAVY, *NOTED))
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = (time.perf_counter() - t0) * 1000
    line = next((x for x in r.stdout.splitlines() if x.startswith("@@coldstart@@")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"child failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(line.removeprefix("@@coldstart@@")), wall, r.stderr


def importtime_by_package(stderr: str) -> dict[str, int]:
    """Self time (us) per module from `-X importtime` output."""
    out: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, _cum, name = line.split("|", 2)
        out[name.strip()] = int(head.split(":")[1])
    return out


def profile(t: Target, env: dict[str, str], cwd: Path) -> None:
    _, _, bare_err = run_child(BARE, env, cwd, "-X", "importtime")
    _, _, err = run_child(t.body, env, cwd, "-X", "importtime")
    bare, mine = importtime_by_package(bare_err), importtime_by_package(err)
    extra = {k: v for k, v in mine.items() if k not in bare}
    by: Counter[str] = Counter()
    for mod, us in extra.items():
        parts = mod.split(".")
        by[".".join(parts[:3]) if parts[0] == "pasture" else parts[0]] += us
    print(f"\n-X importtime, {t.name} minus the bare import (one run, self times):")
    print(f"  {sum(extra.values()) / 1000:7.1f} ms in {len(extra)} modules beyond the bare import")
    for pkg, us in by.most_common(25):
        print(f"  {us / 1000:7.1f} ms  {pkg}")


def versions() -> str:
    out = []
    for dist in ("fastapi", "mangum", "boto3", "pydantic", "aws-lambda-powertools"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} (absent)")
    return ", ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh interpreters per function")
    ap.add_argument("--budget", type=float, default=1.2, help="max handler / bare import")
    ap.add_argument("--only", help="comma-separated function names (default: all)")
    ap.add_argument("--check", action="store_true", help="exit 1 when the budget is broken")
    ap.add_argument("--profile", metavar="NAME", help="-X importtime breakdown of one function")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    args = ap.parse_args()

    only = set(args.only.split(",")) if args.only else None
    ts = targets(only)
    if not ts:
        ap.error(f"no function named {args.only}")
    print(
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()}, "
        f"python {platform.python_version()}, {versions()}"
    )
    print(
        f"{args.runs} fresh interpreters per function, each after a bare `{BARE}` one;"
        " order rotated per round"
    )
    bare_ms: list[float] = []
    bare_proc: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pasture-coldstart-") as tmp_name:
        tmp = Path(tmp_name)
        env = child_env(tmp)
        cwd = tmp
        # One untimed pass: .pyc files written, the page cache warm, any error shown early.
        for t in ts:
            run_child(t.body, env, cwd)
        run_child(BARE, env, cwd)
        for rnd in range(args.runs):
            k = rnd % len(ts)
            for t in ts[k:] + ts[:k]:
                b, b_wall, _ = run_child(BARE, env, cwd)
                h, h_wall, _ = run_child(t.body, env, cwd)
                bare_ms.append(b["ms"])
                bare_proc.append(b_wall)
                t.ms.append(h["ms"])
                t.process_ms.append(h_wall)
                t.ratios.append(h["ms"] / b["ms"])
                t.modules.append(h["modules"])
                t.loaded.update(h["loaded"])
                t.net.extend(h["net"])
            print(f"  round {rnd + 1}/{args.runs} done", file=sys.stderr)
        if args.profile:
            match = [t for t in ts if t.name == args.profile]
            if not match:
                ap.error(f"--profile {args.profile}: not among the functions run")
            profile(match[0], env, cwd)

    med = statistics.median
    bare = med(bare_ms)
    print()
    print(
        "| function | import ms (median) | / bare (medians) | / bare (paired) | process ms"
        " | modules | heavy at import | noted |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(f"| bare `{BARE}` | {bare:.0f} | 1.00 | 1.00 | {med(bare_proc):.0f} | | | |")
    failures = []
    for t in ts:
        heavy = sorted(m for m in t.loaded if m in HEAVY)
        noted = sorted(m for m in t.loaded if m not in HEAVY)
        paired = med(t.ratios)
        flagged = []
        for m in heavy:
            why = "never needed here" if not (HEAVY[m] & t.ports) else "load on first use"
            flagged.append(f"{m} ({why})")
            failures.append(f"{t.name}: imports {m} at import time ({why})")
        if paired > args.budget:
            failures.append(f"{t.name}: {paired:.2f}x the bare import (budget {args.budget}x)")
        if t.net:
            failures.append(f"{t.name}: {len(t.net)} network attempts during import: {t.net[0]}")
        name = f"{t.name} (stand-in)" if t.stand_in else t.name
        print(
            f"| {name} | {med(t.ms):.0f} | {med(t.ms) / bare:.2f} | {paired:.2f}"
            f" | {med(t.process_ms):.0f} | {med(t.modules):.0f} | {', '.join(flagged) or '-'}"
            f" | {', '.join(noted) or '-'} |"
        )
    print(
        f"\nbudget: <= {args.budget}x the bare import (paired median); heavy modules at import: none"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "bare_ms": bare_ms,
                    "functions": {
                        t.name: {
                            "ms": t.ms,
                            "process_ms": t.process_ms,
                            "ratios": t.ratios,
                            "loaded": sorted(t.loaded),
                            "stand_in": t.stand_in,
                        }
                        for t in ts
                    },
                },
                indent=1,
            )
        )
    if failures:
        print("over budget:" if args.check else "over budget (not checked):")
        for f in failures:
            print(f"  - {f}")
        return 1 if args.check else 0
    print("all within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
