"""The Lambda layers' sizes, and each function's total against Lambda's 250 MB unzipped limit.

    .venv/bin/python bench/layer_sizes.py [--out DIR] [--force] [--json PATH]

Builds the layers with `layers/build.py` (or reuses them: a layer whose inputs are unchanged is
kept), then prints per layer its files, unzipped and zipped size (deflate level 6, as uploaded),
and per function of `infra.plan.functions(ragflow_accounts=True)` the sum of its layers'
unzipped sizes plus its own code directory (functions/<name>/, caches excluded) against the
limit (a function and all its layers together, unzipped: 250 MiB = 262,144,000 bytes), with the
headroom left. The streaming chat function also carries the AWS Lambda Web Adapter layer,
which is external and not measured here: it is added as an ESTIMATE (about 5 MiB unzipped) and
labelled as such. Exit status 1 when a function is over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.plan import LAYERS, functions  # noqa: E402
from layers import build as lb  # noqa: E402

# The AWS Lambda Web Adapter layer (LambdaAdapterLayerArm64): one static Rust binary of a few
# MB. Not downloaded here (no AWS account); an estimate, printed as one.
WEB_ADAPTER_ESTIMATE = 5 * lb.MIB


def code_size(path: Path) -> int:
    """A function's own code as the stack uploads it (no __pycache__ / .pyc)."""
    total = 0
    for dirpath, dirnames, files in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        total += sum(os.path.getsize(Path(dirpath) / f) for f in files if not f.endswith(".pyc"))
    return total


def mib(n: int) -> str:
    return f"{n / lb.MIB:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=lb.BUILD_DIR, help="where the layers are built")
    ap.add_argument("--force", action="store_true", help="rebuild every layer first")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    print(
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()},"
        f" python {platform.python_version()}; layers for aarch64 / CPython {lb.PYTHON_VERSION}"
    )
    t0 = time.perf_counter()
    try:
        built = lb.build(LAYERS, args.out, force=args.force)
    except lb.BuildError as e:
        print(f"layer build failed: {e}", file=sys.stderr)
        return 1
    print(f"layers ready in {time.perf_counter() - t0:.1f} s ({args.out})\n")

    layer_figures = {}
    print("| layer | files | unzipped MiB | zipped MiB |")
    print("|---|---|---|---|")
    for name in built:
        files, unzipped, zipped = lb.layer_sizes(name, args.out)
        layer_figures[name] = {"files": files, "unzipped": unzipped, "zipped": zipped}
        print(f"| {name} | {files} | {mib(unzipped)} | {mib(zipped)} |")

    limit = lb.LAMBDA_UNZIPPED_LIMIT
    print(f"\nper function: its layers + functions/<name>/, unzipped, limit {mib(limit)} MiB")
    print("| function | layers | code KiB | total MiB | headroom MiB | within |")
    print("|---|---|---|---|---|---|")
    fn_figures = {}
    over = []
    for fn in functions(ragflow_accounts=True):
        own = code_size(REPO / "functions" / fn.name)
        total = own + sum(layer_figures[n]["unzipped"] for n in fn.layers)
        layers = "+".join(fn.layers)
        if fn.streams:
            total += WEB_ADAPTER_ESTIMATE
            layers += f"+web-adapter (ESTIMATE {mib(WEB_ADAPTER_ESTIMATE)} MiB)"
        ok = total < limit
        if not ok:
            over.append(fn.name)
        fn_figures[fn.name] = {"layers": list(fn.layers), "code": own, "total": total}
        print(
            f"| {fn.name} | {layers} | {own / 1024:.1f} | {mib(total)}"
            f" | {mib(limit - total)} | {'yes' if ok else 'NO'} |"
        )
    print(
        "\nboto3/botocore/s3transfer come from the Lambda runtime (not in these figures);"
        " the web adapter's size is an estimate, not a measurement."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"layers": layer_figures, "functions": fn_figures, "limit": limit}, indent=1)
        )
    if over:
        print(f"over the limit: {', '.join(over)}")
        return 1
    print("every function within the limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
