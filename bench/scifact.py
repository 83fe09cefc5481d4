"""Retrieval quality on BEIR SciFact: nDCG@10 of keyword (BM25), vector and hybrid search.

    .venv/bin/python bench/scifact.py [--data-dir DIR] [--alphas 0.3,0.4,0.5,0.6,0.7]

Ingests the whole corpus (5,183 docs, one "<doc_id>.txt" file of "title\\n\\ntext" each) through
the services, then runs the 300 test queries through `RetrievalService.query` (services level,
not HTTP) asking for --chunks chunks, maps chunks to documents by the hit's `filename`
metadata (a document ranks where its best chunk ranks; duplicates dropped), keeps the top 10
documents and scores them against qrels/test.tsv (binary gains, standard nDCG@10).

Ingestion takes minutes: pass --data-dir to keep the ingested data and reuse it on the next
run (it is reused when it holds the complete corpus, else ingested into when empty).
"""

# onnxruntime must be imported before usearch (pulled in by pasture's search index): the
# other order segfaults when onnxruntime loads. Keep this first even once that is fixed.
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import csv
import io
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchlib import SCIFACT, load_corpus, machine
from pasture.bootstrap import Container, build_container
from pasture.config import Settings
from pasture.domain.documents import DocStatus
from pasture.domain.errors import NotFound
from pasture.services.retrieval import RetrievalRequest

NS, PROJECT, DATASET = "bench", "scifact", "corpus"
PUBLISHED_BM25 = 0.665  # BEIR paper, BM25 nDCG@10 on SciFact test
K = 10


def load_qrels() -> dict[str, set[str]]:
    qrels: dict[str, set[str]] = defaultdict(set)
    with (SCIFACT / "qrels" / "test.tsv").open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)  # header
        for qid, doc_id, score in rows:
            if int(score.strip()) > 0:
                qrels[qid.strip()].add(doc_id.strip())
    return dict(qrels)


def load_queries(ids: set[str]) -> dict[str, str]:
    out = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in ids:
                out[q["_id"]] = q["text"]
    return out


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def complete(c: Container, tenant: str, n_docs: int) -> bool:
    """True when the data dir already holds the whole corpus, every file DONE."""
    try:
        ds = c.datasets.get(tenant, NS, PROJECT, DATASET)
    except NotFound:
        return False
    docs = c.datasets.documents(tenant, ds.id)
    return len(docs) == n_docs and all(d.status == DocStatus.DONE for d in docs)


def ingest(c: Container, tenant: str, corpus: list[tuple[str, str]]) -> None:
    try:
        c.projects.get(tenant, NS, PROJECT)
    except NotFound:
        c.projects.create(tenant, NS, PROJECT, "rag")
    try:
        c.datasets.get(tenant, NS, PROJECT, DATASET)
    except NotFound:
        c.datasets.create(tenant, NS, PROJECT, DATASET, None, None)
    t0 = time.perf_counter()
    dupes = 0
    for doc_id, text in corpus:
        res = c.datasets.upload(
            tenant, NS, PROJECT, DATASET, f"{doc_id}.txt", io.BytesIO(text.encode()), "text/plain"
        )
        dupes += res.duplicate
    print(
        f"uploaded {len(corpus)} docs ({dupes} already there) in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    report = c.ingestion.process(tenant, NS, PROJECT, DATASET, wait=True, poll_interval=0.5)
    took = time.perf_counter() - t0
    ds = c.datasets.get(tenant, NS, PROJECT, DATASET)
    chunks = c.index.count(tenant, ds.id)
    print(
        f"ingested: {report.processed} processed, {report.skipped} skipped, {report.failed} "
        f"failed, {chunks} chunks, in {took:.1f} s ({report.processed / took:.1f} docs/s)"
    )
    if report.failed:
        bad = [d for d in report.details if d.get("status") not in ("processed", "skipped")]
        print(f"  first failures: {bad[:3]}")


def evaluate(
    c: Container,
    tenant: str,
    queries: dict[str, str],
    qrels: dict[str, set[str]],
    strategy: str,
    alpha: float | None,
    chunks: int,
) -> dict[str, float]:
    scores, recalls, latencies = [], [], []
    short = 0
    for qid, text in queries.items():
        t0 = time.perf_counter()
        res = c.retrieval.query(
            tenant,
            NS,
            PROJECT,
            RetrievalRequest(
                query=text, top_k=chunks, retrieval_strategy=strategy, hybrid_alpha=alpha
            ),
        )
        latencies.append(time.perf_counter() - t0)
        ranked: list[str] = []
        for hit in res.hits:
            doc_id = str(hit.metadata["filename"]).removesuffix(".txt")
            if doc_id not in ranked:
                ranked.append(doc_id)
        short += len(ranked) < K
        relevant = qrels[qid]
        scores.append(ndcg_at_k(ranked, relevant))
        recalls.append(len(set(ranked[:K]) & relevant) / len(relevant))
    return {
        "ndcg": statistics.fmean(scores),
        "recall": statistics.fmean(recalls),
        "ms": 1000 * statistics.median(latencies),
        "short": short,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, help="keep/reuse the ingested data here")
    ap.add_argument("--alphas", default="0.3,0.4,0.5,0.6,0.7", help="hybrid vector weights")
    ap.add_argument("--chunks", type=int, default=30, help="chunks asked per query (top_k)")
    ap.add_argument(
        "--docs", type=int, help="smoke test on the first N docs only (scores then meaningless)"
    )
    args = ap.parse_args()
    print(machine())
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        print(f"skip: SciFact not found at {SCIFACT}")
        return 0
    corpus = load_corpus()[: args.docs]
    qrels = load_qrels()
    queries = load_queries(set(qrels))
    if args.docs:
        print(f"SMOKE TEST on {len(corpus)} docs: the scores below are not SciFact's")
    print(f"SciFact: {len(corpus)} docs, {len(queries)} test queries, {len(qrels)} with qrels")

    tmp = None if args.data_dir else Path(tempfile.mkdtemp(prefix="pasture-bench-scifact-"))
    data_dir = args.data_dir or tmp
    assert data_dir is not None
    try:
        c = build_container(Settings(data_dir=data_dir))
        try:
            tenant = c.settings.open_tenant
            if complete(c, tenant, len(corpus)):
                print(f"reusing the ingested corpus in {data_dir}")
            else:
                ingest(c, tenant, corpus)
                if not complete(c, tenant, len(corpus)):
                    print("ERROR: the corpus is not fully ingested; scores would be meaningless")
                    return 1
            ds = c.datasets.get(tenant, NS, PROJECT, DATASET)
            print(f"index: {c.index.count(tenant, ds.id)} chunks")
            c.embedder.embed(["warm up"])  # model load is not query latency

            default = c.settings.hybrid_vector_weight
            alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
            runs: list[tuple[str, str, float | None]] = [
                ("BM25 alone", "keyword", None),
                ("vector alone", "vector", None),
                (f"hybrid (default alpha {default})", "hybrid", None),
            ]
            runs += [(f"hybrid alpha {a}", "hybrid", a) for a in alphas]
            print(
                f"\nnDCG@{K} and Recall@{K} over {len(queries)} queries; top_k={args.chunks} "
                f"chunks per query, deduplicated to the first {K} documents"
            )
            print(f"{'retrieval':<28} {'nDCG@10':>8} {'R@10':>6} {'ms/query':>9} {'<10 docs':>9}")
            results = {}
            for label, strategy, alpha in runs:
                r = evaluate(c, tenant, queries, qrels, strategy, alpha, args.chunks)
                results[label] = r
                print(
                    f"{label:<28} {r['ndcg']:>8.4f} {r['recall']:>6.3f} {r['ms']:>9.1f} "
                    f"{r['short']:>9}",
                    flush=True,
                )
            print(f"{'BM25, BEIR paper':<28} {PUBLISHED_BM25:>8.3f}")
            sweep = {a: results[f"hybrid alpha {a}"]["ndcg"] for a in alphas}
            if sweep:
                best = max(sweep, key=lambda a: sweep[a])
                print(
                    f"\nbest swept hybrid alpha (vector weight): {best} "
                    f"(nDCG@10 {sweep[best]:.4f}); current default {default}"
                )
                if len(sweep) > 1 and best in (min(sweep), max(sweep)):
                    print(
                        "the best alpha is at the edge of the sweep: widen --alphas to see the peak"
                    )
        finally:
            c.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
