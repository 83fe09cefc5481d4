"""Query latency and ANN recall of SqliteSearchIndex at 10k and 100k chunks.

    .venv/bin/python bench/query_latency.py [--sizes 10000 100000] [--queries 200]

Texts: SciFact sentences (BEIR copy under ../shared/datasets/scifact, read with gzip) glued
into ~100-word chunks by random draws of 3-6 sentences, which reaches any size with a natural
vocabulary; pseudo-words when the file is absent. Query texts: the SciFact claims.
Vectors (--vectors clustered, the default): 384-dim clustered gaussians (n/100 random unit
centres; each point is a centre plus isotropic noise of the same norm, so cos(point, centre)
~ 0.7), normalised; query vectors come from the same mixture. --vectors uniform: random unit
vectors, the hardest case for HNSW. All query vectors are precomputed: no embedding time.
Recall@10: `_vector_candidates(q, 10)` against exact numpy top-10 over all stored vectors.
Keyword agreement: top-10 of `_keyword_candidates` with the adapter's keyword budget against
the same index with no budget (exact BM25 of every query term).
Latencies: single thread, 20 warm-up queries per figure; hybrid runs first, so its figure
includes the first (uncached) document-frequency look-ups of the query terms.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchlib import SCIFACT
from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex
from pasture.domain.search import IndexedChunk, RetrievalMode, SearchQuery

DIM = 384
TENANT, DATASET = "bench", "corpus"


def load_sentences(rng: np.random.Generator) -> list[str]:
    corpus = SCIFACT / "corpus.jsonl.gz"
    if corpus.exists():
        out = []
        with gzip.open(corpus, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                out += [s for s in re.split(r"(?<=[.!?])\s+", doc["text"]) if len(s) > 20]
        return out
    # Zipf-ish pseudo-words, so some terms are common and most are rare (like real text).
    vocab = [
        "".join(rng.choice(list("abcdefghiklmnoprstuvy"), rng.integers(3, 10)))
        for _ in range(30_000)
    ]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(vocab, rng.integers(8, 30), p=p)) + "." for _ in range(50_000)]


def load_query_texts(rng: np.random.Generator, sentences: list[str], n: int) -> list[str]:
    path = SCIFACT / "queries.jsonl"
    if path.exists():
        texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
    else:
        texts = [" ".join(s.split()[:8]) for s in rng.choice(sentences, n)]
    return [texts[i % len(texts)] for i in range(n)]


def chunk_texts(rng: np.random.Generator, sentences: list[str], n: int) -> list[str]:
    picks = rng.integers(0, len(sentences), size=(n, 6))
    lengths = rng.integers(3, 7, size=n)
    return [" ".join(sentences[j] for j in row[:k]) for row, k in zip(picks, lengths, strict=True)]


def clustered(rng: np.random.Generator, centres: np.ndarray | None, n: int) -> np.ndarray:
    """Points around random centres; uniform random unit vectors when `centres` is None."""
    noise = rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    x = noise if centres is None else centres[rng.integers(0, len(centres), size=n)] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cpu_model() -> str:
    """platform.processor() is often empty on Linux; /proc/cpuinfo names the CPU."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def loadavg() -> str:
    """Other work on the machine inflates single-query latencies: print it with them."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[SearchQuery], object], queries: list[SearchQuery]) -> list[float]:
    """Milliseconds of `fn` on each query."""
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_size(
    n: int, args: argparse.Namespace, sentences: list[str], query_texts: list[str]
) -> dict[str, float]:
    rng = np.random.default_rng(args.seed + n)
    centres = None
    if args.vectors == "clustered":
        centres = rng.standard_normal((max(1, n // 100), DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(rng, centres, n)
    texts = chunk_texts(rng, sentences, n)
    qvecs = clustered(rng, centres, args.queries)
    chunks = [
        IndexedChunk(
            f"c{i}", TENANT, DATASET, f"d{i // 20}", texts[i], vectors[i], {"shard": i % 10}
        )
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        index = SqliteSearchIndex(
            Path(tmp) / "index.db",
            Path(tmp) / "vectors",
            dimension=DIM,
            ef_search=args.ef_search,
            connectivity=args.connectivity,
            expansion_add=args.expansion_add,
            keyword_budget=args.keyword_budget,
        )
        t = time.perf_counter()
        index.upsert(chunks)
        build_s = time.perf_counter() - t
        del chunks

        def query(i: int, mode: RetrievalMode, **kw: object) -> SearchQuery:
            return SearchQuery(
                TENANT,
                (DATASET,),
                query_texts[i] if mode != RetrievalMode.VECTOR else "",
                qvecs[i] if mode != RetrievalMode.KEYWORD else None,
                top_k=10,
                mode=mode,
                candidates=args.candidates,
                **kw,  # type: ignore[arg-type]
            )

        results: dict[str, float] = {"n": n, "build_s": build_s}
        for mode in RetrievalMode:
            qs = [query(i, mode) for i in range(args.queries)]
            for qq in qs[:20]:  # warm caches (SQLite pages, lazily loaded graph)
                index.query(qq)
            lat = timed(index.query, qs)
            results[f"{mode.value}_p50"] = pct(lat, 50)
            results[f"{mode.value}_p95"] = pct(lat, 95)
        # Hybrid with a metadata filter (post-filtered ANN; exact fallback when needed).
        qs = [
            query(i, RetrievalMode.HYBRID, metadata_filters={"shard": 3})
            for i in range(args.queries)
        ]
        lat = timed(index.query, qs)
        results["filtered_p50"] = pct(lat, 50)

        exact = np.argsort(-(qvecs @ vectors.T), axis=1)[:, :10]
        recalls = []
        for i in range(args.queries):
            got = index._vector_candidates(query(i, RetrievalMode.VECTOR), 10)
            truth = {f"c{j}" for j in exact[i]}
            recalls.append(len(truth & got.keys()) / 10)
        results["recall@10"] = statistics.fmean(recalls)

        budgeted = [
            index._keyword_candidates(query(i, RetrievalMode.KEYWORD), 10)
            for i in range(args.queries)
        ]
        index._keyword_budget = None  # the same index, exact BM25 over every query term
        agree = []
        for i, got in enumerate(budgeted):
            full = index._keyword_candidates(query(i, RetrievalMode.KEYWORD), 10)
            if full:
                agree.append(len(full.keys() & got.keys()) / len(full))
        results["kw_agree@10"] = statistics.fmean(agree) if agree else float("nan")
        index.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=100, help="SearchQuery.candidates")
    ap.add_argument("--ef-search", type=int, default=None)
    ap.add_argument("--connectivity", type=int, default=None)
    ap.add_argument("--expansion-add", type=int, default=None)
    ap.add_argument("--keyword-budget", type=int, default=None, help="0: no budget")
    ap.add_argument("--vectors", choices=["clustered", "uniform"], default="clustered")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    # Unset tuning flags fall back to the adapter's defaults, so the bench measures those.
    defaults = SqliteSearchIndex.__init__.__kwdefaults__ or {}
    for name in ("ef_search", "connectivity", "expansion_add", "keyword_budget"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    if args.keyword_budget == 0:
        args.keyword_budget = None

    print(
        f"machine: os.cpu_count()={os.cpu_count()}, platform.processor()={platform.processor()!r},"
        f" model={cpu_model()!r}, {platform.platform()}, loadavg {loadavg()}"
    )
    print(
        f"usearch: metric=cos dtype=f32 connectivity={args.connectivity}"
        f" expansion_add={args.expansion_add} ef_search={args.ef_search};"
        f" keyword_budget={args.keyword_budget}; candidates={args.candidates} top_k=10,"
        f" {args.queries} queries per figure"
    )
    rng = np.random.default_rng(args.seed)
    sentences = load_sentences(rng)
    query_texts = load_query_texts(rng, sentences, args.queries)
    print(f"texts: {len(sentences)} source sentences; vectors: {args.vectors}, {DIM}-dim\n")

    rows = [bench_size(n, args, sentences, query_texts) for n in args.sizes]
    print(f"loadavg after: {loadavg()}")
    header = (
        f"{'chunks':>8} {'build s':>8} {'hybrid p50':>11} {'hybrid p95':>11} {'vector p50':>11}"
        f" {'keyword p50':>12} {'filtered p50':>13} {'recall@10':>10} {'kw agree@10':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>8} {r['build_s']:>8.1f} {r['hybrid_p50']:>9.2f}ms {r['hybrid_p95']:>9.2f}ms"
            f" {r['vector_p50']:>9.2f}ms {r['keyword_p50']:>10.2f}ms {r['filtered_p50']:>11.2f}ms"
            f" {r['recall@10']:>10.4f} {r['kw_agree@10']:>12.3f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
