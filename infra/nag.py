"""cdk-nag suppressions: every one names its rule and says why, in one place per resource."""

from __future__ import annotations

import csv
from pathlib import Path

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct


def suppress(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    applies_to: list[str] | None = None,
    children: bool = True,
) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)],
        apply_to_children=children,
    )


def unsuppressed(outdir: str | Path, stack_name: str) -> list[dict[str, str]]:
    """Rows of cdk-nag's AwsSolutions report for the stack that are neither compliant nor
    suppressed (warnings included): what must be fixed or suppressed with a reason."""
    path = Path(outdir) / f"AwsSolutions--{stack_name}-NagReport.csv"
    with path.open(newline="") as f:
        return [
            row for row in csv.DictReader(f) if row["Compliance"] not in ("Compliant", "Suppressed")
        ]
