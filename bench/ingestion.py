"""Ingestion throughput: chunks/s through the real pipeline vs the embedder alone, same chunks.

    .venv/bin/python bench/ingestion.py [--docs 1000] [--slices 10] [--runs 3] [--profile]

Built to be fair on a busy machine: the first --docs SciFact documents (as "title\n\ntext"
.txt files) are split into --slices slices, and for each slice, back to back: upload
(untimed), time `ingestion.process(..., wait=True)` on it, read back the chunk texts it indexed
(from the index's SQLite db) and time `embedder.embed` on exactly those texts, once in one
call and once in the same calls the pipeline made. Load from neighbours then hits all three
alike; ratios are given overall and as the median over slices. The exact padded token counts
of each way of batching are computed too (noise free). The model is loaded and warmed before
anything is timed. Timing wrappers on the pipeline steps give a breakdown of where the
pipeline's time goes; --profile adds a cProfile of the worker thread.
"""

# onnxruntime must be imported before usearch (pulled in by pasture's search index): the
# other order segfaults when onnxruntime loads. Keep this first even once that is fixed.
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import cProfile
import functools
import io
import itertools
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import SCIFACT, load_corpus, machine
from pasture.adapters.local.hf_tokenizer import load_hf_tokenizer
from pasture.adapters.local.model_files import minilm_dir
from pasture.bootstrap import Container, build_container
from pasture.config import Settings

TENANT_NS_PROJECT = ("bench", "sci")


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
    for p in files:
        with p.open("rb") as fh:
            c.datasets.upload(tenant, ns, project, dataset, p.name, fh, "text/plain")


def new_chunks(data_dir: Path, dataset_id: str, after_id: int) -> list[tuple[int, str]]:
    """(row id, text) of the dataset's chunks indexed after row `after_id`, in index order."""
    conn = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT id, text FROM chunks WHERE dataset_id = ? AND id > ? ORDER BY id",
            (dataset_id, after_id),
        ).fetchall()
    finally:
        conn.close()


def padded_tokens(calls: list[list[str]], batch_size: int) -> tuple[int, int]:
    """(real tokens, tokens incl. padding) of embedding `calls`, one embed() call each, batched
    as OnnxEmbedder does: truncated to 256 tokens with [CLS]/[SEP], longest first per call,
    each batch padded to its longest text. Deterministic, so free of the machine's noise."""
    tok = load_hf_tokenizer(minilm_dir() / "tokenizer.json")
    tok.enable_truncation(max_length=256)
    real = padded = 0
    for texts in calls:
        lengths = sorted((len(e.ids) for e in tok.encode_batch(texts)), reverse=True)
        real += sum(lengths)
        padded += sum(
            len(lengths[i : i + batch_size]) * lengths[i]
            for i in range(0, len(lengths), batch_size)
        )
    return real, padded


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
        c.datasets.create(tenant, ns, project, "warmup", None, None)
        upload(c, tenant, "warmup", files[:16])
        c.ingestion.process(tenant, ns, project, "warmup", wait=True)
        warm_id = c.datasets.get(tenant, ns, project, "warmup").id
        embed([t for _, t in new_chunks(data_dir, warm_id, 0)])

        n = len(files)
        bounds = [round(i * n / args.slices) for i in range(args.slices + 1)]
        slices = [files[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        print(
            f"{n} docs in {len(slices)} slices, each: upload (untimed), process(wait=True), "
            "embedder alone on the slice's new chunks in one call, then in the pipeline's calls"
        )
        rows: list[dict[str, Any]] = []  # one per slice and run
        runs: list[dict[str, Any]] = []
        started = time.perf_counter()
        for r in range(args.runs):
            elapsed = time.perf_counter() - started
            if r and elapsed + elapsed / r > args.max_seconds:
                print(f"stopping after {r} run(s): another would pass --max-seconds")
                break
            name = f"run{r}"
            c.datasets.create(tenant, ns, project, name, None, None)
            ds_id = c.datasets.get(tenant, ns, project, name).id
            timers.reset()
            last_id = 0
            all_texts: list[str] = []
            all_groups: list[list[str]] = []
            slice_texts: list[list[str]] = []
            for part in slices:
                upload(c, tenant, name, part)
                first_group = len(timers.embed_groups)
                timers.on = True
                if prof:
                    prof.on = True
                t0 = time.perf_counter()
                report = c.ingestion.process(tenant, ns, project, name, wait=True)
                pipeline_s = time.perf_counter() - t0
                timers.on = False
                if prof:
                    prof.on = False
                if report.processed != len(part) or report.failed:
                    bad = [d for d in report.details if d.get("status") != "processed"][:3]
                    print(f"ERROR: {report.processed}/{len(part)} processed, failed: {bad}")
                    return 1
                chunks = new_chunks(data_dir, ds_id, last_id)
                last_id = chunks[-1][0] if chunks else last_id
                texts = [t for _, t in chunks]
                groups = timers.embed_groups[first_group:]
                embedded = [t for g in groups for t in g]
                if sorted(embedded) != sorted(texts):
                    print(
                        f"ERROR: {len(texts)} chunks indexed but {len(embedded)} texts "
                        "embedded, or the texts differ"
                    )
                    return 1
                t0 = time.perf_counter()
                embed(texts)
                bare_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                for g in groups:
                    embed(g)
                groups_s = time.perf_counter() - t0
                rows.append(
                    {
                        "run": r,
                        "chunks": len(texts),
                        "pipeline": pipeline_s,
                        "bare": bare_s,
                        "groups": groups_s,
                    }
                )
                all_texts += texts
                all_groups += groups
                slice_texts.append(texts)
            n_index = c.index.count(tenant, ds_id)
            if n_index != len(all_texts):
                print(f"ERROR: index.count() says {n_index}, {len(all_texts)} chunks were indexed")
                return 1
            mine = [x for x in rows if x["run"] == r]
            total = {k: sum(x[k] for x in mine) for k in ("chunks", "pipeline", "bare", "groups")}
            runs.append({**total, "breakdown": dict(timers.seconds), "calls": dict(timers.calls)})
            print(
                f"run {r + 1}/{args.runs}: {total['chunks']} chunks; pipeline "
                f"{total['pipeline']:.1f} s, embedder alone {total['bare']:.1f} s in one call "
                f"per slice, {total['groups']:.1f} s in the pipeline's calls",
                flush=True,
            )
    finally:
        c.close()

    bs = c.settings.embed_batch_size
    chunks = runs[0]["chunks"]
    print(
        f"\n{n} docs -> {chunks} chunks ({chunks / n:.2f}/doc), embedded in "
        f"{len(all_groups)} calls by the pipeline; embed batch size {bs}, ingest batch "
        f"{c.settings.ingest_batch_items} docs, {c.settings.ingest_workers} worker(s); "
        f"{len(runs)} run(s) of {len(slices)} interleaved slices"
    )
    print(
        f"\n{'path (sum over slices)':<36} {'chunks':>7} {'median s':>9} {'chunks/s':>9}  runs (s)"
    )
    labels = {
        "pipeline": "pipeline (process, wait=True)",
        "bare": "embedder alone, one call per slice",
        "groups": "embedder alone, pipeline's calls",
    }
    med = {k: statistics.median(x[k] for x in runs) for k in labels}
    for key, label in labels.items():
        per_run = " ".join(f"{x[key]:.1f}" for x in runs)
        print(f"{label:<36} {chunks:>7} {med[key]:>9.1f} {chunks / med[key]:>9.1f}  {per_run}")

    def ratios(num: str, den: str) -> tuple[float, float, float, float]:
        per = [x[num] / x[den] for x in rows]
        q = statistics.quantiles(per, n=4) if len(per) > 1 else [per[0]] * 3
        return med[num] / med[den], statistics.median(per), q[0], q[2]

    print(f"\n{'ratio (chunks/s)':<44} {'overall':>8} {'median of slices (IQR)':>24}")
    for label, num, den in (
        ("pipeline / embedder alone", "bare", "pipeline"),
        ("pipeline / embedder in the pipeline's calls", "groups", "pipeline"),
        ("embedder: pipeline's calls / one call", "bare", "groups"),
    ):
        overall, mid, lo, hi = ratios(num, den)
        print(f"{label:<44} {overall:>8.2f} {mid:>11.2f} ({lo:.2f}-{hi:.2f})")
    overall = med["bare"] / med["pipeline"]
    print(
        f"target pipeline/bare >= 0.85: {'met' if overall >= 0.85 else 'MISSED'} "
        f"({overall:.2f} overall)"
    )
    whole = padded_tokens([all_texts], bs)
    per_slice = padded_tokens(slice_texts, bs)
    pipe = padded_tokens(all_groups, bs)
    print(
        f"\ntokens the model computes, padding included (OnnxEmbedder sorts each call's texts "
        f"longest first, batches of {bs}); real tokens {whole[0]:,}:"
    )
    for label, (_, padded) in (
        ("all chunks in one call", whole),
        (f"one call per slice ({len(slices)})", per_slice),
        (f"the pipeline's calls ({len(all_groups)})", pipe),
    ):
        print(f"  {label:<34} {padded:>10,} (+{100 * (padded / whole[0] - 1):.1f}% padding)")

    names = [
        ("parse+chunk", 0),
        ("embed", 0),
        ("index", 0),
        ("index.delete_document", 1),
        ("index.upsert", 1),
        ("doc status writes", 0),
    ]
    print("\nbreakdown of the pipeline (median over runs; seconds inside the worker's step calls)")
    print(f"{'step':<32} {'calls':>6} {'s':>8} {'% of total':>10}")
    total = statistics.median(x["pipeline"] for x in runs)
    top = 0.0
    for name, depth in names:
        sec = statistics.median(x["breakdown"].get(name, 0.0) for x in runs)
        if depth == 0:
            top += sec
        label = "  " * depth + name
        calls = runs[0]["calls"].get(name, 0)
        print(f"{label:<32} {calls:>6} {sec:>8.2f} {100 * sec / total:>9.1f}%")
    other = total - top
    label = "other (workflow, setup, polls)"
    print(f"{label:<32} {'':>6} {other:>8.2f} {100 * other / total:>9.1f}%")
    print(f"{'total':<32} {'':>6} {total:>8.2f} {100.0:>9.1f}%")
    saves = statistics.median(x["breakdown"].get("usearch file save", 0.0) for x in runs)
    print(
        f"usearch graph file saves, in whichever thread ran them (inside index.upsert, or the "
        f"index's background flusher): {runs[0]['calls'].get('usearch file save', 0)} calls, "
        f"{saves:.2f} s"
    )
    if prof:
        print("\ncProfile of the worker thread over all timed runs (top by own time):")
        print(prof.report(args.profile_top))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1000, help="first N SciFact docs (default 1000)")
    ap.add_argument("--slices", type=int, default=10, help="interleaved slices per run")
    ap.add_argument("--runs", type=int, default=3, help="runs, within --max-seconds (default 3)")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=420,
        help="start no further run once the runs would pass this (default 420)",
    )
    ap.add_argument("--data-dir", type=Path, help="data dir to use (default: a temp dir)")
    ap.add_argument("--profile", action="store_true", help="cProfile the worker thread")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    print(machine())
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        print(f"skip: SciFact not found at {SCIFACT}")
        return 0
    if args.data_dir and args.data_dir.exists() and any(args.data_dir.iterdir()):
        print(f"error: --data-dir {args.data_dir} is not empty (this bench needs a fresh one)")
        return 2
    docs = load_corpus(args.docs)
    tmp = Path(tempfile.mkdtemp(prefix="pasture-bench-ingest-"))
    try:
        files = write_docs(docs, tmp / "docs")
        return run(args, args.data_dir or tmp / "data", files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
