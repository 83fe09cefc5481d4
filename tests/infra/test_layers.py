"""The Lambda layers as `layers/build.py` builds them: for arm64 / CPython 3.12, holding exactly
the pins of pyproject.toml (and the tested versions of everything else), no distribution twice,
nothing a function needs missing, the code and model layers equal to what the tests run, and
every function within Lambda's 250 MB.

The layers are built once per session (the first run downloads wheels: slow; later runs find
the stamps unchanged and reuse the layers in well under a second). The architecture checks read
ELF headers: nothing here runs aarch64 code, but the model layer's graph runs on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from infra.plan import AUDIO, CODE, DEPS, LAYERS, ML, MODEL_LAYER_DIR, MODELS, functions
from layers import build as lb

ROOT = Path(__file__).resolve().parents[2]
PYTHON_LAYERS = (DEPS, ML, AUDIO)
EM_AARCH64 = 183  # ELF e_machine
EM_X86_64 = 62
# The Lambda Web Adapter layer (external, arm64) in front of the streaming chat function: an
# estimate of its unzipped size, not a measurement.
WEB_ADAPTER_ESTIMATE = 5 * lb.MIB
SENTENCES = [
    "A man is eating food.",
    "Hi",
    "Grass grows in the pasture while the farmer watches from the old barn.",
    "Résumé naïve café: Unicode, punctuation — and numbers like 3.14159!",
    "",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    return lb.build(LAYERS)


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield Path(dirpath) / f


def _tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in _files(root))


def _pins() -> dict[str, dict[str, str]]:
    """Read independently of the builder: group -> canonical name -> pinned version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    out: dict[str, dict[str, str]] = {}
    for group, reqs in groups.items():
        out[group] = {}
        for req in reqs:
            if "==" in req:
                name, version = req.split("==")
                out[group][lb.canonical(name.split("[")[0].strip())] = version.strip()
    return out


# --------------------------------------------------------------------------- platform


def test_every_shared_object_is_aarch64(built: dict[str, Path]) -> None:
    wrong, elf = [], 0
    for name in PYTHON_LAYERS:
        for f in _files(built[name]):
            with f.open("rb") as fh:
                head = fh.read(20)
            if head[:4] != b"\x7fELF":
                continue
            elf += 1
            order = "little" if head[5] == 1 else "big"
            machine = int.from_bytes(head[18:20], order)
            if machine != EM_AARCH64:
                kind = "x86-64" if machine == EM_X86_64 else f"e_machine {machine}"
                wrong.append(f"{f.relative_to(built[name].parent)}: {kind}")
    assert elf > 20, "expected the native extensions of numpy, pydantic-core, onnxruntime, av"
    assert not wrong


def test_no_file_is_tagged_for_another_python_or_platform(built: dict[str, Path]) -> None:
    wrong = []
    for name in PYTHON_LAYERS:
        for f in _files(built[name]):
            n = f.name
            if n.endswith((".pyd", ".dylib", ".dll")):
                wrong.append(n)
            if ".so" not in n:
                continue
            if ("cpython-" in n and "cpython-312" not in n) or "x86_64" in n or "amd64" in n:
                wrong.append(str(f.relative_to(built[name].parent)))
    assert not wrong


def test_no_bytecode_caches(built: dict[str, Path]) -> None:
    for name in LAYERS:
        root = built[name]
        assert not [p for p in root.rglob("__pycache__")], name
        assert not [p for p in root.rglob("*.pyc")], name


# --------------------------------------------------------------------------- contents


def test_pins_are_shipped_at_exactly_their_version(built: dict[str, Path]) -> None:
    pins = _pins()
    expected = {
        DEPS: {
            **pins["core"],
            **pins["aws"],
            **{n: pins["local"][n] for n in map(lb.canonical, lb.DEPS_FROM_LOCAL)},
        },
        ML: {n: pins["local"][n] for n in ("onnxruntime", "tokenizers")},
        AUDIO: {"av": pins["local"]["av"]},
    }
    assert "uvicorn" in expected[DEPS] and "pypdf" in expected[DEPS]
    for name, want in expected.items():
        have = lb.distributions(built[name])
        for dist, version in want.items():
            if dist in lb.RUNTIME_PROVIDED:
                continue
            assert have.get(dist) == version, f"{name}: {dist} {have.get(dist)} != pin {version}"
    # boto3 is the one pin left to the Lambda runtime (layers/README.md says why).
    shipped = {d for n in PYTHON_LAYERS for d in lb.distributions(built[n])}
    assert {"boto3", "botocore", "s3transfer"} == lb.RUNTIME_PROVIDED
    assert not shipped & lb.RUNTIME_PROVIDED


def test_uvicorn_is_plain(built: dict[str, Path]) -> None:
    """The chat function runs uvicorn behind the Web Adapter: no [standard] extras."""
    have = lb.distributions(built[DEPS])
    assert {"uvicorn", "h11", "click"} <= set(have)
    assert not {"uvloop", "httptools", "watchfiles", "websockets"} & set(have)


def test_transitive_versions_are_the_tested_ones(built: dict[str, Path]) -> None:
    """Where the test environment has a package, the layer has the same version (unless the
    build reported that version has no wheel for the platform)."""
    dropped = lb.read_stamp(DEPS)["dropped_constraints"]  # type: ignore[index]
    pinned = {n for group in _pins().values() for n in group}  # the pin test covers those
    tested = {lb.canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    have = lb.distributions(built[DEPS])
    differ = {
        dist: (version, tested[dist])
        for dist, version in have.items()
        if dist in tested and dist not in dropped.keys() | pinned and tested[dist] != version
    }
    assert not differ
    assert len(set(have) - pinned) > 10  # the transitive ones: starlette, anyio, ...


def test_no_distribution_is_in_two_layers(built: dict[str, Path]) -> None:
    seen: dict[str, str] = {}
    for name in PYTHON_LAYERS:
        for dist in lb.distributions(built[name]):
            assert dist not in seen, f"{dist} in {seen[dist]} and {name}"
            seen[dist] = name
    assert "numpy" in seen and seen["numpy"] == DEPS


def test_every_declared_dependency_is_present_or_accounted_for(built: dict[str, Path]) -> None:
    assert lb.missing_requirements() == []


def test_ml_runs_without_what_its_layer_leaves_out(built: dict[str, Path]) -> None:
    """onnxruntime and tokenizers ship without their declared flatbuffers, packaging, protobuf
    and huggingface-hub (NOT_SHIPPED): run the model layer's embedder and the tokenizer here
    (same versions, x86-64) with those imports refused."""
    blocked = ("flatbuffers", "packaging", "google.protobuf", "huggingface_hub", "onnx")
    blocked += ("safetensors",)  # nor is anything built: the layer's graph is used as it is
    code = f"""
import sys
BLOCKED = {blocked!r}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError("not in the layers: " + name)
sys.meta_path.insert(0, Refuse())
from pathlib import Path
from pasture.adapters.local.onnx_embedder import OnnxEmbedder
from pasture.adapters.local.hf_tokenizer import HuggingFaceTokenizer
d = Path({str(built[MODELS] / MODEL_LAYER_DIR)!r})
v = OnnxEmbedder(d, Path({str(built[MODELS])!r}) / "no-cache").embed(["grass grows"])
assert v.shape == (1, 384), v.shape
HuggingFaceTokenizer(d / "tokenizer.json")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
    assert not (built[MODELS] / "no-cache").exists()


def test_code_layer_is_shared_pasture(built: dict[str, Path]) -> None:
    src = ROOT / "shared" / "pasture"

    def tree(root: Path) -> dict[str, bytes]:
        return {
            f.relative_to(root).as_posix(): f.read_bytes()
            for f in _files(root)
            if "__pycache__" not in f.parts and f.suffix != ".pyc"
        }

    layer = tree(built[CODE] / "python" / "pasture")
    assert layer == tree(src)
    assert {"py.typed", "examples/farm_handbook/project.json"} <= set(layer)  # package data
    assert sorted(p.name for p in built[CODE].iterdir()) == ["python"]


def test_model_layer_matches_the_packaged_embedder(
    built: dict[str, Path], model_cache: Path, tmp_path: Path
) -> None:
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    d = built[MODELS] / MODEL_LAYER_DIR
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.onnx", "tokenizer.json"]
    assert sorted(p.name for p in built[MODELS].iterdir()) == [MODEL_LAYER_DIR.split("/")[0]]
    cache = tmp_path / "cache"
    from_layer = OnnxEmbedder(d, cache, batch_size=2).embed(SENTENCES)
    packaged = OnnxEmbedder(minilm_dir(), model_cache, batch_size=2).embed(SENTENCES)
    np.testing.assert_allclose(from_layer, packaged, rtol=0, atol=1e-6)
    assert not cache.exists()  # the layer's graph was run as it is


# --------------------------------------------------------------------------- sizes


def test_each_layer_is_within_the_limit(built: dict[str, Path]) -> None:
    for name in LAYERS:
        assert _tree_bytes(built[name]) < lb.LAMBDA_UNZIPPED_LIMIT, name


def test_each_function_with_its_layers_is_within_the_limit(built: dict[str, Path]) -> None:
    sizes = {name: _tree_bytes(built[name]) for name in LAYERS}
    for fn in functions(ragflow_accounts=True):
        code_dir = ROOT / "functions" / fn.name
        own = sum(
            f.stat().st_size
            for f in _files(code_dir)
            if "__pycache__" not in f.parts and f.suffix != ".pyc"
        )
        total = own + sum(sizes[n] for n in fn.layers)
        total += WEB_ADAPTER_ESTIMATE if fn.streams else 0
        assert total < lb.LAMBDA_UNZIPPED_LIMIT, (fn.name, total / lb.MIB)


# --------------------------------------------------------------------------- the builder


def test_a_second_build_reuses_every_layer(
    built: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pip(*a: object, **k: object) -> None:
        raise AssertionError("pip ran although nothing changed")

    def no_onnx(*a: object, **k: object) -> None:
        raise AssertionError("the graph was built although nothing changed")

    monkeypatch.setattr(lb, "_pip", no_pip)
    monkeypatch.setattr("pasture.adapters.local.minilm_onnx.build_minilm_onnx", no_onnx)
    before = {n: (lb.read_stamp(n) or {}).get("inputs") for n in LAYERS}
    assert lb.build(LAYERS) == built
    assert {n: (lb.read_stamp(n) or {}).get("inputs") for n in LAYERS} == before


def test_the_code_layer_follows_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "pasture"
    (src / "templates").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "templates" / "rag.json").write_text("{}")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setattr(lb, "SOURCE", src)
    out = tmp_path / "out"
    layer = lb.build([CODE], out, log=lambda s: None)[CODE] / "python" / "pasture"
    assert sorted(p.relative_to(layer).as_posix() for p in _files(layer)) == [
        "__init__.py",
        "templates/rag.json",
    ]
    stamp = lb.read_stamp(CODE, out)
    lb.build([CODE], out, log=lambda s: None)
    assert lb.read_stamp(CODE, out) == stamp  # unchanged: kept
    (src / "new.py").write_text("X = 1\n")
    lb.build([CODE], out, log=lambda s: None)
    assert (layer / "new.py").read_text() == "X = 1\n"
    assert lb.read_stamp(CODE, out)["inputs"] != stamp["inputs"]  # type: ignore[index]


def test_sizes_counts_bytes_and_zips(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c").write_bytes(os.urandom(1000))
    unzipped, zipped = lb.sizes(tmp_path)
    assert unzipped == 101_000
    assert 1000 < zipped < 5000  # the repetitive file deflates to almost nothing
