"""The hand-built ONNX graph of all-MiniLM-L6-v2 against an independent numpy forward pass.

The reference runs each sentence alone, unpadded, in float64, written the plain textbook way
(no batching, no masks); the ONNX graph runs them together in one right-padded batch. So a
match checks the weights wiring, the attention masking and the masked mean pooling at once.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pasture.adapters.local.model_files import minilm_dir
from pasture.domain.errors import Unavailable
from tests.helpers.concurrency import run_together

pytest.importorskip("onnxruntime")

F64 = npt.NDArray[np.float64]

SENTENCES = [
    "A man is eating food.",
    "Hi",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the old barn.",
    "Résumé naïve café: Unicode, punctuation — and numbers like 3.14159!",
    "",
    "Self-hostable retrieval-augmented generation needs an embedder that runs without a GPU "
    "and without torch, so the encoder is rebuilt as an ONNX graph from its weights.",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    try:
        return minilm_dir()
    except Unavailable as e:
        pytest.skip(e.message)


@pytest.fixture(scope="module")
def session(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import onnxruntime as ort

    from pasture.adapters.local.minilm_onnx import build_minilm_onnx

    path = tmp_path_factory.mktemp("onnx") / "minilm.onnx"
    build_minilm_onnx(model_dir, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    return tok


def token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [enc.ids for enc in tokenizer.encode_batch(texts)]


def run_padded(session: Any, ids: list[list[int]]) -> npt.NDArray[np.float32]:
    """One batch, right-padded to the longest sequence."""
    width = max(len(row) for row in ids)
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    feeds = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": np.zeros_like(input_ids),
    }
    (out,) = session.run(["sentence_embedding"], feeds)
    return np.asarray(out)


# --------------------------------------------------------------------------- numpy reference

_erf = np.frompyfunc(math.erf, 1, 1)


class ReferenceBert:
    """BertModel + mean pooling + L2 normalisation, one unpadded sentence at a time."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file

        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.w = {
            k: v.astype(np.float64) for k, v in load_file(model_dir / "model.safetensors").items()
        }

    def dense(self, x: F64, name: str) -> F64:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def norm(self, x: F64, name: str) -> F64:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + self.cfg["layer_norm_eps"])
        return y * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def embed(self, ids: list[int]) -> F64:
        n = len(ids)
        heads = self.cfg["num_attention_heads"]
        d = self.cfg["hidden_size"] // heads
        e = "embeddings"
        x = (
            self.w[f"{e}.word_embeddings.weight"][ids]
            + self.w[f"{e}.position_embeddings.weight"][:n]
            + self.w[f"{e}.token_type_embeddings.weight"][0]
        )
        x = self.norm(x, f"{e}.LayerNorm")
        for i in range(self.cfg["num_hidden_layers"]):
            layer = f"encoder.layer.{i}"
            # Split heads: (n, hidden) -> (heads, n, d).
            q, k, v = (
                self.dense(x, f"{layer}.attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
            attn = self.dense(ctx, f"{layer}.attention.output.dense")
            x = self.norm(x + attn, f"{layer}.attention.output.LayerNorm")
            h = self.dense(x, f"{layer}.intermediate.dense")
            h = 0.5 * h * (1.0 + np.asarray(_erf(h / math.sqrt(2.0)), dtype=np.float64))
            x = self.norm(x + self.dense(h, f"{layer}.output.dense"), f"{layer}.output.LayerNorm")
        pooled = x.mean(0)
        return pooled / np.linalg.norm(pooled)


# --------------------------------------------------------------------------- tests


def test_matches_numpy_reference_in_one_padded_batch(
    session: Any, tokenizer: Any, model_dir: Path
) -> None:
    ids = token_ids(tokenizer, SENTENCES)
    assert len({len(row) for row in ids}) >= 4, "want varied lengths, so padding is exercised"
    got = run_padded(session, ids)
    ref = ReferenceBert(model_dir)
    want = np.stack([ref.embed(row) for row in ids])
    assert got.dtype == np.float32
    assert got.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_unit_norm(session: Any, tokenizer: Any) -> None:
    got = run_padded(session, token_ids(tokenizer, SENTENCES))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_semantic_sanity(session: Any, tokenizer: Any) -> None:
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
    ]
    a, b, c = run_padded(session, token_ids(tokenizer, texts))
    assert float(a @ b) > float(a @ c) + 0.3


def test_padding_invariance(session: Any, tokenizer: Any) -> None:
    short = "A man is eating food."
    longer = [SENTENCES[2], SENTENCES[5]]
    alone = run_padded(session, token_ids(tokenizer, [short]))[0]
    batched = run_padded(session, token_ids(tokenizer, [*longer, short]))[2]
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)


def test_build_is_atomic_and_leaves_no_temp_files(model_dir: Path, tmp_path: Path) -> None:
    import onnx

    from pasture.adapters.local.minilm_onnx import build_minilm_onnx

    out = tmp_path / "sub" / "m.onnx"
    build_minilm_onnx(model_dir, out)
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]
    model = onnx.load(str(out), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]


# --------------------------------------------------------------------------- OnnxEmbedder


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedder-cache")


def test_embedder_first_use_from_many_threads(model_dir: Path, cache_dir: Path) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    emb = OnnxEmbedder(model_dir, cache_dir, batch_size=2)
    texts = SENTENCES[:4]
    results = run_together(lambda _: emb.embed(texts), 4)  # all four hit the lazy load together
    assert len(results) == 4
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])
    # Exactly one built graph, named after the weights fingerprint, and no temp leftovers.
    assert [p.name for p in cache_dir.iterdir()] == [emb.onnx_path().name]


def test_embedder_truncates_to_256_tokens(model_dir: Path, cache_dir: Path) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    emb = OnnxEmbedder(model_dir, cache_dir)
    head = " ".join(f"word{i}" for i in range(400))  # far more than 256 tokens
    a, b, short = emb.embed([head, head + " and a tail that truncation must drop", "word0 word1"])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert float(a @ short) < 0.99


def test_embedder_empty_string(model_dir: Path, cache_dir: Path) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    out = OnnxEmbedder(model_dir, cache_dir).embed(["", "x"])
    assert out.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_cache_name_follows_the_weights(tmp_path: Path) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    fake = tmp_path / "model"
    fake.mkdir()
    weights = fake / "model.safetensors"
    weights.write_bytes(b"v1")
    emb = OnnxEmbedder(fake, tmp_path / "cache")
    first = emb.onnx_path()
    os.utime(weights, ns=(0, 1_000_000_000))
    assert emb.onnx_path() != first
    assert emb.onnx_path().parent == tmp_path / "cache"
