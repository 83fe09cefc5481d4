"""Example projects shipped inside the package (LlamaFarm's Examples API): list them, import
one as a new project, or import its data into an existing project.

An example is a folder under `pasture/examples/<id>/`: `example.json` (title, tags, datasets and
their files), `project.json` (a llamafarm.yaml-compatible config) and the files themselves.
Imports go through the ordinary project, dataset and ingestion services, so an imported project
is indistinguishable from one built by hand.
"""

from __future__ import annotations

import copy
import json
import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pasture.domain.errors import Conflict, Invalid, NotFound
from pasture.domain.projects import ProjectConfig, check_name
from pasture.services.datasets import DatasetService
from pasture.services.ingestion import IngestionService
from pasture.services.projects import ProjectService

log = logging.getLogger(__name__)

_READ = 64 * 1024


class _DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    data_processing_strategy: str
    database: str
    files: list[str]


class _Manifest(BaseModel):
    """example.json. Strict: a typo in a shipped example should fail its unit test."""

    model_config = ConfigDict(extra="forbid")

    id: str
    slug: str
    title: str
    description: str
    primaryModel: str
    tags: list[str]
    updated_at: str
    datasets: list[_DatasetSpec]


@dataclass(frozen=True)
class ExampleFile:
    path: str  # relative to the example folder, "/"-separated
    size: int

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ExampleDataset:
    name: str
    data_processing_strategy: str
    database: str
    files: tuple[ExampleFile, ...]


@dataclass(frozen=True, eq=False)
class Example:
    id: str
    slug: str
    title: str
    description: str
    primary_model: str
    tags: tuple[str, ...]
    updated_at: str
    datasets: tuple[ExampleDataset, ...]
    config: dict[str, Any]  # project.json as parsed; copied before anyone changes it
    project_size_bytes: int  # size of project.json
    root: Traversable

    @property
    def dataset_count(self) -> int:
        return len(self.datasets)

    @property
    def data_size_bytes(self) -> int:
        return sum(f.size for d in self.datasets for f in d.files)

    def open(self, f: ExampleFile) -> Any:
        return self.root.joinpath(*f.path.split("/")).open("rb")


@dataclass(frozen=True)
class ImportResult:
    namespace: str
    project: str
    datasets: list[str]
    task_ids: list[str]


def human_size(num_bytes: int) -> str:
    """`512B`, `4.0KB`, `2.0MB`: the format LlamaFarm's example listing uses."""
    units = ("B", "KB", "MB", "GB", "TB")
    size, unit = float(num_bytes), 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    return f"{int(size)}B" if unit == 0 else f"{size:.1f}{units[unit]}"


# --------------------------------------------------------------------------- loading


def _size(t: Traversable) -> int:
    # Traversables (a folder, or a zip when installed zipped) cannot be stat'ed portably.
    n = 0
    with t.open("rb") as fh:
        while block := fh.read(_READ):
            n += len(block)
    return n


def _relative(path: str) -> list[str]:
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file path {path!r} must be relative, '/'-separated, without '..'")
    return parts


def load_example(folder: Traversable) -> Example:
    """One example folder, checked through: its config validates, every dataset names a
    strategy and database of that config, and every file exists and is accepted by its
    strategy. Raises ValueError saying what is wrong."""
    try:
        manifest = _Manifest.model_validate_json(folder.joinpath("example.json").read_bytes())
    except (OSError, ValidationError) as exc:
        raise ValueError(f"{folder.name}/example.json: {exc}") from exc
    if manifest.id != folder.name:
        raise ValueError(f"example id {manifest.id!r} does not match its folder {folder.name!r}")
    raw = folder.joinpath("project.json").read_bytes()
    config = json.loads(raw)
    try:
        cfg = ProjectConfig.model_validate(config)
        cfg.validate_semantics()
    except (ValidationError, Invalid) as exc:
        raise ValueError(f"{folder.name}/project.json: {exc}") from exc
    datasets = []
    for ds in manifest.datasets:
        try:
            check_name("dataset", ds.name)
            strategy = cfg.strategy(ds.data_processing_strategy)
        except Invalid as exc:
            raise ValueError(f"{folder.name}: {exc.message}") from None
        if ds.database not in cfg.database_names():
            raise ValueError(f"dataset {ds.name!r} names unknown database {ds.database!r}")
        if not ds.files:
            raise ValueError(f"dataset {ds.name!r} lists no files")
        entries = []
        for path in ds.files:
            target = folder.joinpath(*_relative(path))
            if not target.is_file():
                raise ValueError(f"dataset {ds.name!r}: {path} is missing")
            if strategy.parser_for(path.rsplit("/", 1)[-1]) is None:
                raise ValueError(f"dataset {ds.name!r}: no parser of its strategy accepts {path}")
            entries.append(ExampleFile(path, _size(target)))
        names = [e.filename for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {ds.name!r}: file names must be unique")
        datasets.append(
            ExampleDataset(ds.name, ds.data_processing_strategy, ds.database, tuple(entries))
        )
    return Example(
        id=manifest.id,
        slug=manifest.slug,
        title=manifest.title,
        description=manifest.description,
        primary_model=manifest.primaryModel,
        tags=tuple(manifest.tags),
        updated_at=manifest.updated_at,
        datasets=tuple(datasets),
        config=config,
        project_size_bytes=len(raw),
        root=folder,
    )


def load_catalog(root: Traversable) -> dict[str, Example]:
    """Every example folder under `root`, by id. A broken one is logged and left out, so
    one bad folder does not take the whole catalogue down (the unit tests load each strictly)."""
    out: dict[str, Example] = {}
    for folder in sorted(root.iterdir(), key=lambda t: t.name):
        if not folder.is_dir() or not folder.joinpath("example.json").is_file():
            continue
        try:
            ex = load_example(folder)
        except (OSError, ValueError) as exc:
            log.error("example %s is broken and is not offered: %s", folder.name, exc)
            continue
        out[ex.id] = ex
    return out


def examples_root() -> Traversable:
    return files("pasture") / "examples"


@cache
def bundled_examples() -> Mapping[str, Example]:
    """The packaged catalogue, read once per process (it only changes with the package)."""
    return load_catalog(examples_root())


# --------------------------------------------------------------------------- service


def _merge_rag(cfg: ProjectConfig, ex: Example) -> dict[str, Any] | None:
    """The project's config with the example's data processing strategies, and the databases
    its datasets use, added where the project has none of that name (the project's own
    definitions win). None when nothing is missing."""
    data = cfg.model_dump(mode="json", exclude={"datasets"})
    ex_rag = ex.config.get("rag") or {}
    rag = data.get("rag") or {}
    databases = list(rag.get("databases") or [])
    strategies = list(rag.get("data_processing_strategies") or [])
    have_db = {d["name"] for d in databases}
    have_strategy = {s["name"] for s in strategies}
    needed_db = {d.database for d in ex.datasets}
    added = False
    for db in ex_rag.get("databases") or []:
        if db["name"] in needed_db and db["name"] not in have_db:
            databases.append(copy.deepcopy(db))
            added = True
    for s in ex_rag.get("data_processing_strategies") or []:
        if s["name"] not in have_strategy:
            strategies.append(copy.deepcopy(s))
            added = True
    if not added:
        return None
    if not have_db and not rag.get("default_database"):
        # A project without any database adopts the example's default with its databases.
        rag["default_database"] = ex_rag.get("default_database")
    rag["databases"] = databases
    rag["data_processing_strategies"] = strategies
    data["rag"] = rag
    return data


class ExampleService:
    def __init__(
        self,
        projects: ProjectService,
        datasets: DatasetService,
        ingestion: IngestionService,
        catalog: Mapping[str, Example] | None = None,
    ) -> None:
        self._projects = projects
        self._datasets = datasets
        self._ingestion = ingestion
        self._catalog = catalog

    def _examples(self) -> Mapping[str, Example]:
        return self._catalog if self._catalog is not None else bundled_examples()

    def list_examples(self) -> list[Example]:
        return list(self._examples().values())

    def get(self, example_id: str) -> Example:
        # A lookup in the catalogue, never a path built from the id.
        ex = self._examples().get(example_id)
        if ex is None:
            raise NotFound(f"Example {example_id} not found")
        return ex

    def import_project(
        self, tenant: str, example_id: str, namespace: str, name: str, *, process: bool
    ) -> ImportResult:
        """A new project with the example's config, datasets and files; with `process`, one
        asynchronous processing task per dataset. All or nothing: a failure after the project
        exists deletes what was made, so a retry starts clean."""
        ex = self.get(example_id)
        # Outside the try: a Conflict here means the project is someone's, never ours to undo.
        self._projects.create_from_config(tenant, namespace, name, ex.config)
        task_ids: list[str] = []
        try:
            for ds in ex.datasets:
                self._datasets.create(
                    tenant, namespace, name, ds.name, ds.data_processing_strategy, ds.database
                )
                self._upload(tenant, namespace, name, ex, ds)
            if process:  # only once every file is in: a failed import starts no work
                for ds in ex.datasets:
                    task_ids.append(self._process(tenant, namespace, name, ds.name))
        except Exception:
            self._undo_project(tenant, namespace, name, task_ids)
            raise
        return ImportResult(namespace, name, [d.name for d in ex.datasets], task_ids)

    def import_data(
        self,
        tenant: str,
        example_id: str,
        namespace: str,
        project: str,
        *,
        include_strategies: bool,
        process: bool,
    ) -> ImportResult:
        """The example's datasets and files in an existing project.

        With `include_strategies` the example's processing strategies (and the databases its
        datasets use) are added to the project where missing, and its datasets use them.
        Without, a dataset uses the example's strategy and database when the project has them
        by name, else the project's first strategy and default database ("raw data").
        A dataset of the same name is reused when it has that strategy and database, else it
        is a Conflict. Everything is checked before anything is written, and every write is
        repeatable (merge by name, reuse by name, uploads by content hash), so a retry after a
        failure finishes the job.
        """
        ex = self.get(example_id)
        check_name("namespace", namespace)
        check_name("project", project)
        cfg = self._projects.config(tenant, namespace, project)  # NotFound, also for others'
        merged = _merge_rag(cfg, ex) if include_strategies else None
        if merged is not None:
            cfg = ProjectConfig.model_validate(merged)
            cfg.validate_semantics()
        plan = [(ds, *self._target(tenant, namespace, project, cfg, ds)) for ds in ex.datasets]

        if merged is not None:
            self._projects.update(tenant, namespace, project, merged)
        for ds, strategy, database, exists in plan:
            if not exists:
                self._datasets.create(tenant, namespace, project, ds.name, strategy, database)
            self._upload(tenant, namespace, project, ex, ds)
        task_ids = (
            [self._process(tenant, namespace, project, ds.name) for ds in ex.datasets]
            if process
            else []
        )
        return ImportResult(namespace, project, [d.name for d in ex.datasets], task_ids)

    # ------------------------------------------------------------------ helpers

    def _target(
        self, tenant: str, namespace: str, project: str, cfg: ProjectConfig, ds: ExampleDataset
    ) -> tuple[str, str, bool]:
        """(strategy, database, already exists) for one example dataset in this project."""
        strategies = cfg.strategy_names()
        strategy = (
            ds.data_processing_strategy
            if ds.data_processing_strategy in strategies
            else (strategies[0] if strategies else None)
        )
        database = ds.database if ds.database in cfg.database_names() else cfg.default_database()
        if strategy is None or database is None:
            raise Invalid(
                f"project {namespace}/{project} has no RAG configuration to put dataset"
                f" {ds.name} in; import with include_strategies true to add the example's"
            )
        try:
            existing = self._datasets.get(tenant, namespace, project, ds.name)
        except NotFound:
            return strategy, database, False
        if (existing.data_processing_strategy, existing.database) != (strategy, database):
            raise Conflict(
                f"Dataset {ds.name} already exists in project {namespace}/{project} with"
                f" data_processing_strategy {existing.data_processing_strategy!r} and database"
                f" {existing.database!r}; the example needs {strategy!r} and {database!r}"
            )
        return strategy, database, True

    def _upload(
        self, tenant: str, namespace: str, project: str, ex: Example, ds: ExampleDataset
    ) -> None:
        for f in ds.files:
            with ex.open(f) as stream:
                self._datasets.upload(
                    tenant,
                    namespace,
                    project,
                    ds.name,
                    f.filename,
                    stream,
                    mimetypes.guess_type(f.filename)[0],
                )

    def _process(self, tenant: str, namespace: str, project: str, dataset: str) -> str:
        return self._ingestion.process(tenant, namespace, project, dataset, wait=False).task_id

    def _undo_project(self, tenant: str, namespace: str, name: str, task_ids: list[str]) -> None:
        try:
            for task_id in task_ids:  # stop work on files about to be deleted
                self._ingestion.cancel_task(tenant, namespace, name, task_id)
            self._datasets.delete_project(tenant, namespace, name)
        except Exception:
            # The original error is what the caller needs; a DELETE of the project (which is
            # repeatable) cleans up what this could not.
            log.exception("could not undo the failed import of %s/%s", namespace, name)
