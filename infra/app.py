#!/usr/bin/env python3
"""The CDK app: `python infra/app.py` synthesizes the stack into cdk.out/ (and `cdk synth` /
`cdk deploy`, through cdk.json, run exactly this). Settings: infra/config.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `python infra/app.py` puts infra/ first on sys.path, where our `constructs/` package would
# shadow the `constructs` library aws-cdk-lib imports: import from the repository root instead.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "infra"]
sys.path.insert(0, str(ROOT))
# Run by hand, write where the CDK CLI would (the CLI sets CDK_OUTDIR itself).
os.environ.setdefault("CDK_OUTDIR", str(ROOT / "cdk.out"))


def main() -> None:
    from infra.config import ConfigError
    from infra.nag import unsuppressed
    from infra.stack import build_app

    try:
        app, stack = build_app()
    except (ConfigError, FileNotFoundError) as exc:
        sys.exit(f"infra/app.py: {exc}")
    assembly = app.synth()
    # `cdk synth` prints cdk-nag's errors but a bare `python infra/app.py` would not fail on
    # them: read the report, so CI fails on any finding without a suppression and its reason.
    open_findings = unsuppressed(assembly.directory, stack.stack_name)
    for row in open_findings:
        print(f"{row['Rule ID']} {row['Resource ID']}: {row['Rule Info']}", file=sys.stderr)
    if open_findings:
        sys.exit(f"cdk-nag: {len(open_findings)} finding(s) without a suppression")


if __name__ == "__main__":
    main()
