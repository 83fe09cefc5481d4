"""Ingestion throughput: chunks/s through the real pipeline vs the embedder alone, same chunks.

    .venv/bin/python bench/ingestion.py [--docs 1000] [--runs 3] [--data-dir DIR] [--profile]

Each run uploads the first --docs SciFact documents (as "title\\n\\ntext" .txt files) into a
fresh dataset of one container, times `ingestion.process(..., wait=True)`, reads back the chunk
texts that were indexed (from the index's SQLite db) and times `embedder.embed` on exactly
those texts: once all in one call ("bare"), once in the same groups the pipeline embedded them
("bare, pipeline groups", which isolates the cost of the pipeline's smaller embed calls). The
model is loaded and warmed before anything is timed. Timing wrappers on the pipeline steps
give a breakdown of where the pipeline's time goes; --profile adds a cProfile of the worker.
"""

# onnxruntime must be imported before usearch (pulled in by pasture's search index): the
# other order segfaults when onnxruntime loads. Keep this first even once that is fixed.
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import cProfile
import functools
import gzip
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pasture.bootstrap import Container, build_container
from pasture.config import Settings

SCIFACT = Path("/work/shared/datasets/scifact")
TENANT_NS_PROJECT = ("bench", "sci")


def machine() -> str:
    return (
        f"machine: os.cpu_count()={os.cpu_count()}, {platform.platform()}, "
        f"python {platform.python_version()}, onnxruntime {version('onnxruntime')}"
    )


def load_corpus(limit: int | None) -> list[tuple[str, str]]:
    """(doc_id, "title\\n\\ntext") for the first `limit` SciFact documents (all when None)."""
    out = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append((d["_id"], f"{d['title']}\n\n{d['text']}"))
            if limit is not None and len(out) >= limit:
                break
    return out


class Timers:
    """Wall time and call count per name, recorded only while `on` (the worker is the only
    thread that calls the wrapped methods during a timed run)."""

    def __init__(self) -> None:
        self.on = False
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.embed_groups: list[list[str]] = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.embed_groups.clear()

    def wrap(self, obj: Any, attr: str, name: str) -> Callable[..., Any]:
        """Shadow obj.attr by a timing wrapper (an instance attribute); returns the original."""
        original = getattr(obj, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return original(*args, **kwargs)
            if name == "embed":
                self.embed_groups.append(list(args[0]))
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        setattr(obj, attr, timed)
        return original


class WorkerProfile:
    """cProfile of the workflow's worker thread: enabled around each handler call."""

    def __init__(self, c: Container) -> None:
        self.profile = cProfile.Profile()
        self.on = False
        handlers = c.workflow._handlers  # type: ignore[attr-defined]  # bench-only peek
        original = handlers["ingest"]

        def profiled(*args: Any) -> Any:
            if not self.on:
                return original(*args)
            self.profile.enable()
            try:
                return original(*args)
            finally:
                self.profile.disable()

        handlers["ingest"] = profiled  # type: ignore[index]

    def report(self, top: int) -> str:
        buf = io.StringIO()
        stats = pstats.Stats(self.profile, stream=buf)
        stats.sort_stats("tottime").print_stats(top)
        return buf.getvalue()


def write_docs(docs: list[tuple[str, str]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc_id, text in docs:
        p = folder / f"{doc_id}.txt"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def upload(c: Container, tenant: str, dataset: str, files: list[Path]) -> None:
    ns, project = TENANT_NS_PROJECT
    c.datasets.create(tenant, ns, project, dataset, None, None)
    for p in files:
        with p.open("rb") as fh:
            c.datasets.upload(tenant, ns, project, dataset, p.name, fh, "text/plain")


def indexed_texts(data_dir: Path, dataset_id: str) -> list[str]:
    conn = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT text FROM chunks WHERE dataset_id = ? ORDER BY id", (dataset_id,)
        ).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def run(args: argparse.Namespace, data_dir: Path, files: list[Path]) -> int:
    c = build_container(Settings(data_dir=data_dir))
    try:
        tenant = c.settings.open_tenant
        ns, project = TENANT_NS_PROJECT
        c.projects.create(tenant, ns, project, "rag")
        timers = Timers()
        embed = timers.wrap(c.embedder, "embed", "embed")
        timers.wrap(c.ingestion, "step_parse_and_chunk", "parse+chunk")
        timers.wrap(c.ingestion, "step_index", "index")
        timers.wrap(c.ingestion, "_mark", "doc status writes")
        timers.wrap(c.index, "delete_document", "index.delete_document")
        timers.wrap(c.index, "upsert", "index.upsert")
        timers.wrap(c.index, "_save", "usearch file save")
        prof = WorkerProfile(c) if args.profile else None

        # Warm-up, untimed: model load + ONNX graph build, tokenizer load, parser imports, the
        # first SQLite/usearch writes, onnxruntime's thread pool and allocator.
        t0 = time.perf_counter()
        embed(["warm up"])
        print(f"model load + first embed (untimed): {time.perf_counter() - t0:.1f} s")
        upload(c, tenant, "warmup", files[:16])
        c.ingestion.process(tenant, ns, project, "warmup", wait=True)
        embed(indexed_texts(data_dir, c.datasets.get(tenant, ns, project, "warmup").id))

        results: list[dict[str, Any]] = []
        breakdowns: list[dict[str, float]] = []
        calls: dict[str, int] = {}
        started = time.perf_counter()
        for r in range(args.runs):
            elapsed = time.perf_counter() - started
            if r and elapsed + elapsed / r > args.max_seconds:
                print(f"stopping after {r} runs: another would pass --max-seconds")
                break
            name = f"run{r}"
            upload(c, tenant, name, files)
            ds_id = c.datasets.get(tenant, ns, project, name).id
            timers.reset()
            timers.on = True
            if prof:
                prof.on = True
            t0 = time.perf_counter()
            report = c.ingestion.process(tenant, ns, project, name, wait=True)
            pipeline_s = time.perf_counter() - t0
            timers.on = False
            if prof:
                prof.on = False
            if report.processed != len(files) or report.failed:
                bad = [d for d in report.details if d.get("status") != "processed"][:3]
                print(f"ERROR: {report.processed}/{len(files)} processed, failed: {bad}")
                return 1
            texts = indexed_texts(data_dir, ds_id)
            groups = list(timers.embed_groups)
            embedded = [t for g in groups for t in g]
            if sorted(embedded) != sorted(texts):
                print(
                    f"ERROR: {len(texts)} chunks indexed but {len(embedded)} texts embedded, "
                    "or the texts differ"
                )
                return 1
            n_index = c.index.count(tenant, ds_id)
            if n_index != len(texts):
                print(f"ERROR: index.count() says {n_index}, the chunks table {len(texts)}")
                return 1
            t0 = time.perf_counter()
            embed(texts)
            bare_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for g in groups:
                embed(g)
            bare_groups_s = time.perf_counter() - t0
            results.append(
                {
                    "chunks": len(texts),
                    "groups": len(groups),
                    "pipeline": pipeline_s,
                    "bare": bare_s,
                    "bare_groups": bare_groups_s,
                }
            )
            breakdowns.append({"total": pipeline_s, **timers.seconds})
            calls = dict(timers.calls)
            print(
                f"run {r + 1}/{args.runs}: {len(texts)} chunks; pipeline {pipeline_s:.2f} s, "
                f"bare {bare_s:.2f} s, bare in pipeline groups {bare_groups_s:.2f} s",
                flush=True,
            )
    finally:
        c.close()

    chunks = results[0]["chunks"]
    med = {k: statistics.median(r[k] for r in results) for k in ("pipeline", "bare", "bare_groups")}
    print(
        f"\n{len(files)} docs -> {chunks} chunks ({chunks / len(files):.2f}/doc), "
        f"embedded in {results[0]['groups']} calls by the pipeline; "
        f"embed batch size {c.settings.embed_batch_size}, "
        f"ingest batch {c.settings.ingest_batch_items} docs, "
        f"{c.settings.ingest_workers} worker(s); medians of {len(results)} runs\n"
    )
    print(f"{'path':<34} {'chunks':>7} {'median s':>9} {'chunks/s':>9}  runs (s)")
    labels = {
        "pipeline": "pipeline (process, wait=True)",
        "bare": "embedder alone, one call",
        "bare_groups": "embedder alone, pipeline's calls",
    }
    for key, label in labels.items():
        runs = " ".join(f"{r[key]:.2f}" for r in results)
        print(f"{label:<34} {chunks:>7} {med[key]:>9.2f} {chunks / med[key]:>9.1f}  {runs}")
    ratio = med["bare"] / med["pipeline"]
    ratios = " ".join(f"{r['bare'] / r['pipeline']:.2f}" for r in results)
    verdict = "meets" if ratio >= 0.85 else "MISSES"
    print(
        f"\nratio pipeline/bare (chunks/s): {ratio:.2f} median, per run {ratios} "
        f"({verdict} the >= 0.85 target)"
    )
    print(
        f"ratio pipeline/bare in the pipeline's calls: {med['bare_groups'] / med['pipeline']:.2f}"
    )

    names = [
        ("parse+chunk", 0),
        ("embed", 0),
        ("index", 0),
        ("index.delete_document", 1),
        ("index.upsert", 1),
        ("usearch file save", 2),
        ("doc status writes", 0),
    ]
    print("\nbreakdown of the pipeline (medians; seconds inside the worker's step calls)")
    print(f"{'step':<30} {'calls':>6} {'median s':>9} {'% of total':>10}")
    total = statistics.median(b["total"] for b in breakdowns)
    top = 0.0
    for name, depth in names:
        s = statistics.median(b.get(name, 0.0) for b in breakdowns)
        if depth == 0:
            top += s
        label = "  " * depth + name
        print(f"{label:<30} {calls.get(name, 0):>6} {s:>9.2f} {100 * s / total:>9.1f}%")
    other = total - top
    print(
        f"{'other (workflow, setup, polls)':<30} {'':>6} {other:>9.2f} {100 * other / total:>9.1f}%"
    )
    print(f"{'total':<30} {'':>6} {total:>9.2f} {100.0:>9.1f}%")
    if prof:
        print("\ncProfile of the worker thread over all timed runs (top by own time):")
        print(prof.report(args.profile_top))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1000, help="first N SciFact docs (default 1000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs, medians reported")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=420,
        help="start no further run once the timed runs would pass this (default 420)",
    )
    ap.add_argument("--data-dir", type=Path, help="data dir to use (default: a temp dir)")
    ap.add_argument("--profile", action="store_true", help="cProfile the worker thread")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    print(machine())
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        print(f"skip: SciFact not found at {SCIFACT}")
        return 0
    assert threading.current_thread() is threading.main_thread()
    docs = load_corpus(args.docs)
    tmp = Path(tempfile.mkdtemp(prefix="pasture-bench-ingest-"))
    try:
        files = write_docs(docs, tmp / "docs")
        data_dir = args.data_dir or tmp / "data"
        if args.data_dir and any(args.data_dir.iterdir() if args.data_dir.exists() else []):
            print(f"error: --data-dir {args.data_dir} is not empty (this bench needs a fresh one)")
            return 2
        return run(args, data_dir, files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
