"""Contract of the Embedder port: every adapter must pass this suite.

To add an adapter (a remote OpenAI-compatible embedder, SageMaker, ...), append an
`EmbedderCase` to `CASES`: a factory building it (skip inside the factory when its backend is
not reachable) and the tolerance its results are reproducible to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from pasture.domain.errors import Unavailable
from pasture.ports import Embedder


@dataclass(frozen=True)
class EmbedderCase:
    make: Callable[[pytest.TempPathFactory], Embedder]
    # Rows of the same text must agree to this, whatever else shares the batch.
    atol: float = 1e-5


def _onnx_minilm(tmp: pytest.TempPathFactory) -> Embedder:
    pytest.importorskip("onnxruntime")
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    try:
        model_dir = minilm_dir()
    except Unavailable as e:
        pytest.skip(e.message)
    # A small batch size, so the suite crosses batch boundaries with few texts.
    return OnnxEmbedder(model_dir, tmp.mktemp("onnx-cache"), batch_size=4)


def _sagemaker_minilm(tmp: pytest.TempPathFactory) -> Embedder:
    # Real boto3 -> a fake sagemaker-runtime -> the real router computing MiniLM.
    pytest.importorskip("boto3")
    from pasture.adapters.aws.sagemaker_embedder import SageMakerEmbedder
    from tests.helpers.sagemaker_fake import shared_stack

    stack = shared_stack(tmp)
    return SageMakerEmbedder(stack.client(), stack.endpoint, batch_size=8)


CASES = [
    pytest.param(EmbedderCase(_onnx_minilm), id="onnx-minilm"),
    pytest.param(EmbedderCase(_sagemaker_minilm), id="sagemaker-minilm"),
]


@pytest.fixture(scope="session", params=CASES)
def case(request: pytest.FixtureRequest) -> EmbedderCase:
    return request.param


@pytest.fixture(scope="session")
def embedder(case: EmbedderCase, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    return case.make(tmp_path_factory)


MIXED = [
    "Cats sleep a lot.",
    "The mitochondria is the powerhouse of the cell, producing ATP through respiration.",
    "Hi",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates "
    "by half a percentage point, the largest increase in two decades.",
    "Bread",
    "How do I reset my password?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A short one.",
    "Rain is expected over the weekend, with temperatures dropping below freezing at night.",
    "Zebra",
    "Database indexes speed up reads at the cost of slower writes and more storage.",
]


def batch_size_of(embedder: Embedder) -> int:
    return int(getattr(embedder, "batch_size", 32))


def assert_unit_rows(vectors: np.ndarray) -> None:
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_identity(embedder: Embedder) -> None:
    assert isinstance(embedder.name, str) and embedder.name
    assert isinstance(embedder.dimension, int) and embedder.dimension > 0


def test_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    out = embedder.embed(MIXED[:3])
    assert isinstance(out, np.ndarray)
    assert out.shape == (3, embedder.dimension)
    assert out.dtype == np.float32
    assert_unit_rows(out)


def test_empty_input(embedder: Embedder) -> None:
    out = embedder.embed([])
    assert out.shape == (0, embedder.dimension)
    assert out.dtype == np.float32


def test_deterministic(embedder: Embedder, case: EmbedderCase) -> None:
    np.testing.assert_allclose(embedder.embed(MIXED), embedder.embed(MIXED), atol=case.atol)


def test_order_preserved_with_mixed_lengths(embedder: Embedder, case: EmbedderCase) -> None:
    batched = embedder.embed(MIXED)
    singly = np.concatenate([embedder.embed([t]) for t in MIXED])
    np.testing.assert_allclose(batched, singly, rtol=0, atol=case.atol)
    # Row i is texts[i] and not merely some permutation: reversed input, reversed rows.
    np.testing.assert_allclose(embedder.embed(MIXED[::-1]), batched[::-1], rtol=0, atol=case.atol)


def test_batch_larger_than_batch_size(embedder: Embedder, case: EmbedderCase) -> None:
    n = 2 * batch_size_of(embedder) + 1  # two full batches and a ragged one
    texts = [f"{MIXED[i % len(MIXED)]} (variant {i})" for i in range(n)]
    out = embedder.embed(texts)
    assert out.shape == (n, embedder.dimension)
    assert_unit_rows(out)
    np.testing.assert_allclose(out[-1], embedder.embed([texts[-1]])[0], rtol=0, atol=case.atol)
    assert len({row.tobytes() for row in out}) == n  # distinct texts, distinct vectors


def test_long_text_is_accepted(embedder: Embedder) -> None:
    long_text = " ".join(["retrieval augmented generation with long documents"] * 120)
    out = embedder.embed([long_text, "short"])  # ~720 words, far past a 256-token window
    assert out.shape == (2, embedder.dimension)
    assert_unit_rows(out)


def test_similar_texts_are_closer(embedder: Embedder) -> None:
    a, b, c = embedder.embed(
        ["How do I reset my password?", "I forgot my password", "Volcanoes erupt lava."]
    )
    assert float(a @ b) > float(a @ c)


def test_concurrent_calls(embedder: Embedder, case: EmbedderCase) -> None:
    want = embedder.embed(MIXED)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(embedder.embed(MIXED))
        except BaseException as e:  # surfaced below; a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results:
        np.testing.assert_allclose(got, want, rtol=0, atol=case.atol)
