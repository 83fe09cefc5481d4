"""OnnxEmbedder on a directory that ships a built graph (the Lambda model layer: model.onnx,
tokenizer.json, config.json, no weights): it runs that graph as it is and never builds one;
and the aws backend reads such a directory from PASTURE_EMBED_MODEL_DIR."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pasture.adapters.local.model_files import minilm_dir
from pasture.config import Settings
from pasture.domain.errors import Unavailable

pytest.importorskip("onnxruntime")

SENTENCES = ["A man is eating food.", "Hi", "", "Grass grows in the pasture."]


@pytest.fixture(scope="module")
def packaged(model_cache: Path) -> tuple[Path, np.ndarray]:
    """The packaged weights' embedder: its cached graph and its vectors."""
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    try:
        src = minilm_dir()
    except Unavailable as e:
        pytest.skip(e.message)
    emb = OnnxEmbedder(src, model_cache, batch_size=2)
    vectors = emb.embed(SENTENCES)
    return emb.onnx_path(), vectors


@pytest.fixture
def prebuilt(packaged: tuple[Path, np.ndarray], tmp_path: Path) -> Path:
    """A model-layer-like directory: the built graph and the tokenizer, no safetensors."""
    d = tmp_path / "pasture-models" / "all-MiniLM-L6-v2"
    d.mkdir(parents=True)
    shutil.copyfile(packaged[0], d / "model.onnx")
    for f in ("tokenizer.json", "config.json"):
        shutil.copyfile(minilm_dir() / f, d / f)
    return d


@pytest.fixture
def no_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the graph must not be built when the model dir ships one")

    monkeypatch.setattr("pasture.adapters.local.minilm_onnx.build_minilm_onnx", refuse)


def test_runs_the_shipped_graph_and_builds_nothing(
    prebuilt: Path, packaged: tuple[Path, np.ndarray], tmp_path: Path, no_builder: None
) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    cache = tmp_path / "cache"
    emb = OnnxEmbedder(prebuilt, cache, batch_size=2)
    assert emb.onnx_path() == prebuilt / "model.onnx"
    got = emb.embed(SENTENCES)
    np.testing.assert_allclose(got, packaged[1], rtol=0, atol=1e-6)
    assert not cache.exists()  # nothing cached, nothing written
    assert not (prebuilt / "model.safetensors").exists()


def test_without_a_shipped_graph_it_still_builds_from_the_weights(tmp_path: Path) -> None:
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    path = OnnxEmbedder(d, tmp_path / "cache").onnx_path()
    assert path.parent == tmp_path / "cache" and path.name.startswith("all-MiniLM-L6-v2-")


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().embed_model_dir is None
    monkeypatch.setenv("PASTURE_EMBED_MODEL_DIR", str(tmp_path))
    assert Settings().embed_model_dir == tmp_path


def test_the_aws_backend_reads_the_model_dir(
    prebuilt: Path,
    packaged: tuple[Path, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_builder: None,
) -> None:
    from pasture.bootstrap import build_container

    def no_package() -> Path:
        raise Unavailable("the packaged weights are not in a Lambda")

    monkeypatch.setattr("pasture.adapters.local.model_files.minilm_dir", no_package)
    settings = Settings(
        backend="aws",
        data_dir=tmp_path / "data",
        table="t",
        bucket="b",
        embed_model_dir=prebuilt,
        model_cache_dir=tmp_path / "cache",
        embed_batch_size=2,
    )
    container = build_container(settings)
    np.testing.assert_allclose(container.embedder.embed(SENTENCES), packaged[1], rtol=0, atol=1e-6)
    assert container.tokenizer.spans(["grass grows"]) == [[(0, 5), (6, 11)]]
    assert not (tmp_path / "cache").exists()
