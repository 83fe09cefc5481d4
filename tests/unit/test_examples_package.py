"""The example projects shipped in the package: each loads strictly, its config is a valid
project config, and every file it lists exists and parses."""

from __future__ import annotations

import json
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

from pasture.domain.projects import ProjectConfig
from pasture.services.examples import (
    bundled_examples,
    examples_root,
    human_size,
    load_catalog,
    load_example,
)
from pasture.services.parsing import parse_document
from pasture.services.templates import DEFAULT_MODEL

FOLDERS = sorted(
    (f for f in examples_root().iterdir() if f.is_dir() and f.name != "__pycache__"),
    key=lambda f: f.name,
)


def test_at_least_two_examples_and_all_are_offered() -> None:
    assert len(FOLDERS) >= 2
    assert {"farm_handbook", "pasture_guide"} <= {f.name for f in FOLDERS}
    # The lenient catalogue leaves nothing out: every folder loads.
    assert sorted(load_catalog(examples_root())) == [f.name for f in FOLDERS]
    assert sorted(bundled_examples()) == [f.name for f in FOLDERS]


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_project_json_is_a_valid_project_config(folder: Traversable) -> None:
    data = json.loads(folder.joinpath("project.json").read_text("utf-8"))
    cfg = ProjectConfig.model_validate(data)
    cfg.validate_semantics()
    assert data["rag_enabled_by_default"] is True
    assert data["runtime"]["models"] == [DEFAULT_MODEL]
    assert data["runtime"]["default_model"] == "default"
    assert cfg.default_database() in cfg.database_names()


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_every_listed_file_exists_and_parses(folder: Traversable) -> None:
    ex = load_example(folder)  # strict: raises on any inconsistency
    cfg = ProjectConfig.model_validate(ex.config)
    assert ex.datasets
    listed = set()
    for ds in ex.datasets:
        assert ds.database in cfg.database_names()
        strategy = cfg.strategy(ds.data_processing_strategy)
        for f in ds.files:
            listed.add(f.path)
            assert strategy.parser_for(f.filename) is not None
            with ex.open(f) as stream:
                parsed = parse_document(f.filename, stream)
            assert parsed.sections and all(s.text for s in parsed.sections)
    # Nothing shipped in data/ that no dataset uses, and the example stays small.
    on_disk = {f"data/{t.name}" for t in folder.joinpath("data").iterdir() if t.is_file()}
    assert on_disk == listed
    assert ex.data_size_bytes < 100 * 1024


def test_load_example_refuses_inconsistent_folders(tmp_path: Path) -> None:
    src = examples_root() / "pasture_guide"
    dst = tmp_path / "pasture_guide"
    (dst / "data").mkdir(parents=True)
    for name in ("example.json", "project.json"):
        (dst / name).write_bytes(src.joinpath(name).read_bytes())
    with pytest.raises(ValueError, match="is missing"):
        load_example(dst)
    manifest = json.loads((dst / "example.json").read_text())
    manifest["datasets"][0]["files"] = ["../project.json"]
    (dst / "example.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="relative"):
        load_example(dst)
    manifest["datasets"][0]["data_processing_strategy"] = "nope"
    (dst / "example.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="nope"):
        load_example(dst)
    # The lenient loader leaves the broken folder out instead of failing.
    assert load_catalog(tmp_path) == {}


def test_human_size() -> None:
    assert human_size(512) == "512B"
    assert human_size(4096) == "4.0KB"
    assert human_size(2097152) == "2.0MB"
    assert human_size(1536) == "1.5KB"
