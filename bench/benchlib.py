"""What the benchmark scripts share: where SciFact is, the corpus reader, the machine line."""

from __future__ import annotations

import gzip
import json
import os
import platform
from importlib.metadata import version
from pathlib import Path

# The BEIR copy beside the repository (../shared/datasets), or PASTURE_SCIFACT_DIR.
SCIFACT = Path(
    os.environ.get("PASTURE_SCIFACT_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
)


def machine() -> str:
    return (
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()}, "
        f"python {platform.python_version()}, onnxruntime {version('onnxruntime')}"
    )


def load_corpus(limit: int | None = None) -> list[tuple[str, str]]:
    """(doc_id, "title\\n\\ntext") for the first `limit` SciFact documents (all when None)."""
    out = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append((d["_id"], f"{d['title']}\n\n{d['text']}"))
            if limit is not None and len(out) >= limit:
                break
    return out
