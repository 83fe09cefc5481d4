"""Throughput of OnnxEmbedder (all-MiniLM-L6-v2 on onnxruntime, CPU) at several batch sizes.

    .venv/bin/python bench/embedder.py [--n 2000] [--threads N] [--runs 3]

Texts: sentences of SciFact abstracts from ../shared/datasets (read in place, never copied
into the repo) when present, else generated sentences of similar lengths. Also reports the cold
start (graph build + session) and which fusions onnxruntime applied to the graph.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from pasture.adapters.local.model_files import minilm_dir
from pasture.adapters.local.onnx_embedder import OnnxEmbedder

SCIFACT = benchlib.SCIFACT / "corpus.jsonl.gz"
BATCH_SIZES = (16, 32, 64)
_VOCAB = (
    "the a model data cell protein patients study results we found increased reduced "
    "significantly analysis expression response treatment effect levels risk human mice "
    "clinical trial gene pathway associated observed compared control group samples"
)


def scifact_sentences(n: int) -> list[str]:
    out: list[str] = []
    with gzip.open(SCIFACT, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", doc.get("text", "")):
                if len(s) >= 20:
                    out.append(s.strip())
                    if len(out) == n:
                        return out
    return out


def generated_sentences(n: int) -> list[str]:
    rng = random.Random(0)
    words = _VOCAB.split()
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(8, 45))).capitalize() + "."
        for _ in range(n)
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fusion_report(onnx_path: Path, threads: int) -> str:
    """Op histogram of the graph as ORT runs it. Level EXTENDED is where the transformer
    fusions (Attention, SkipLayerNorm, Gelu, ...) live; ALL only adds CPU layout changes."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.intra_op_num_threads = threads
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph
    ops = collections.Counter(
        f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in graph.node
    )
    fused = {k: v for k, v in ops.items() if k.startswith("com.microsoft:")}
    attention = any(k.endswith("Attention") for k in fused)
    return (
        f"fused ops: {fused or 'none'}; attention fused: {'yes' if attention else 'no'} "
        f"(MatMul {ops['MatMul']}, Softmax {ops['Softmax']}, LayerNormalization "
        f"{ops['LayerNormalization']}, Transpose {ops['Transpose']} remain)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of sentences")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per batch size (median)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (all cores)")
    args = ap.parse_args()

    if SCIFACT.is_file():
        texts, source = scifact_sentences(args.n), f"SciFact abstract sentences ({SCIFACT})"
    else:
        texts, source = generated_sentences(args.n), "generated sentences"
    threads = args.threads or os.cpu_count() or 1
    model_dir = minilm_dir()

    print(f"machine: {cpu_model()}, os.cpu_count()={os.cpu_count()}, {platform.platform()}")
    import onnxruntime as ort

    print(f"python {sys.version.split()[0]}, onnxruntime {ort.__version__}, threads={threads}")

    with tempfile.TemporaryDirectory() as cache:
        probe = OnnxEmbedder(model_dir, Path(cache), threads=threads)
        t0 = time.perf_counter()
        probe.embed(["warm up"])
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        OnnxEmbedder(model_dir, Path(cache), threads=threads).embed(["warm up"])
        warm = time.perf_counter() - t0
        print(f"first embed: {cold:.2f} s with graph build, {warm:.2f} s with a cached graph")
        print(fusion_report(probe.onnx_path(), threads))

        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=256)
        lengths = sorted(len(e.ids) for e in tok.encode_batch(texts))
        print(
            f"texts: {len(texts)} {source}; tokens/text median {lengths[len(lengths) // 2]}, "
            f"max {lengths[-1]}, total {sum(lengths)}"
        )

        embedders = {
            bs: OnnxEmbedder(model_dir, Path(cache), batch_size=bs, threads=threads)
            for bs in BATCH_SIZES
        }
        for emb in embedders.values():
            emb.embed(texts[:128])  # load + warm the thread pool and allocator
        timings: dict[int, list[float]] = {bs: [] for bs in BATCH_SIZES}
        cpu: dict[int, list[float]] = {bs: [] for bs in BATCH_SIZES}
        for _ in range(args.runs):  # interleaved, so drift (thermal, neighbours) hits all alike
            for bs, emb in embedders.items():
                t0, c0 = time.perf_counter(), time.process_time()
                emb.embed(texts)
                timings[bs].append(time.perf_counter() - t0)
                cpu[bs].append(time.process_time() - c0)

    # "cores busy" = process CPU time / wall time. Well under `threads` means other load on
    # the machine starved the run, and its figure understates the embedder.
    print(f"\n{'batch':>6} {'sentences/s':>12} {'tokens/s':>10} {'median s':>9} {'cores busy':>11}")
    for bs in BATCH_SIZES:
        med = statistics.median(timings[bs])
        busy = statistics.median(c / w for c, w in zip(cpu[bs], timings[bs], strict=True))
        runs = " ".join(f"{t:.2f}" for t in timings[bs])
        print(
            f"{bs:>6} {len(texts) / med:>12.1f} {sum(lengths) / med:>10.0f} {med:>9.2f} "
            f"{busy:>11.2f}   runs: {runs} s"
        )


if __name__ == "__main__":
    main()
