"""Embedder port running all-MiniLM-L6-v2 in-process with onnxruntime on CPU.

The ONNX graph is built once from the packaged safetensors (see `minilm_onnx`) and cached
on disk; the cache file name carries a fingerprint of the weights and of the graph builder,
so a new model or a changed builder gets a fresh file instead of a stale one. A model
directory that already holds `model.onnx` (the Lambda model layer, built by layers/build.py
with the same builder) is used as it is: no weights, no build, no cache.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pasture.adapters.local.hf_tokenizer import load_hf_tokenizer
from pasture.domain.search import Vector
from pasture.ports import Embedder

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json: tokens incl. [CLS] and [SEP]
PREBUILT_ONNX = "model.onnx"  # a graph shipped beside tokenizer.json (the Lambda model layer)


class OnnxEmbedder(Embedder):
    name = "all-MiniLM-L6-v2"
    dimension = 384

    def __init__(
        self,
        model_dir: Path,
        cache_dir: Path,
        *,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_dir = Path(model_dir)
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.threads = threads
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    def prebuilt_path(self) -> Path:
        """A graph shipped in the model directory itself (`model.onnx`), used when present."""
        return self.model_dir / PREBUILT_ONNX

    def onnx_path(self) -> Path:
        """The graph to run: the model directory's own `model.onnx` when it has one, else
        where the graph built from its weights is cached for the current builder version."""
        prebuilt = self.prebuilt_path()
        if prebuilt.is_file():
            return prebuilt
        from pasture.adapters.local.minilm_onnx import GRAPH_VERSION

        st = (self.model_dir / "model.safetensors").stat()
        # Size + mtime rather than a content hash: hashing means reading all 90 MB (~0.1 s
        # warm, more from a cold Lambda image) on every start; a replaced model changes mtime.
        key = f"{st.st_size}:{st.st_mtime_ns}:{GRAPH_VERSION}".encode()
        return self.cache_dir / f"all-MiniLM-L6-v2-{hashlib.sha256(key).hexdigest()[:12]}.onnx"

    def _load(self) -> tuple[onnxruntime.InferenceSession, tokenizers.Tokenizer]:
        # Double-checked: the hot path takes no lock; the first callers wait for one build.
        session, tok = self._session, self._tokenizer
        if session is not None and tok is not None:
            return session, tok
        with self._lock:
            if self._session is None or self._tokenizer is None:
                tok = load_hf_tokenizer(self.model_dir / "tokenizer.json")
                tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
                path = self.onnx_path()
                if not path.is_file():
                    from pasture.adapters.local.minilm_onnx import build_minilm_onnx

                    build_minilm_onnx(self.model_dir, path)
                self._session = self._open_session(path)
                self._tokenizer = tok
            return self._session, self._tokenizer

    def _open_session(self, path: Path) -> onnxruntime.InferenceSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1  # the graph is one chain; parallelism is within ops
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    # ------------------------------------------------------------------ embedding

    def embed(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session, tok = self._load()
        # Tokenise everything once (Rust, parallel), truncated but unpadded, then pad per batch.
        ids = [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(list(texts))]
        # Longest first, so batches hold similar lengths and padding (wasted compute) is small;
        # the stable sort keeps equal-length texts in input order, for reproducible batches.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = np.zeros((len(batch), width), dtype=np.int64)  # [PAD] is id 0
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids),
            }
            (vectors,) = session.run(["sentence_embedding"], feeds)
            out[batch] = vectors  # scatter back to the callers' order
        return out
