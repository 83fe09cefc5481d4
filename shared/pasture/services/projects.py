"""Projects: a namespace, a name and a llamafarm.yaml-compatible config, per tenant."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pasture.domain.errors import Conflict, Invalid, NotFound
from pasture.domain.projects import ProjectConfig, check_name
from pasture.ports import Record, Records
from pasture.services import keys
from pasture.services.templates import render_template


@dataclass(frozen=True)
class Project:
    tenant: str
    namespace: str
    name: str
    config: ProjectConfig
    created_at: float
    updated_at: float


def _config(data: dict[str, Any]) -> ProjectConfig:
    try:
        cfg = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"invalid project config at {where}: {first['msg']}") from None
    cfg.validate_semantics()
    return cfg


def _record(
    tenant: str, namespace: str, name: str, cfg: ProjectConfig, *, created_at: float
) -> Record:
    return Record(
        keys.project(tenant, namespace),
        name,
        {
            "namespace": namespace,
            "name": name,
            # `datasets` is derived from the dataset records on read, never stored here.
            "config": cfg.model_dump(mode="json", exclude={"datasets"}),
            "created_at": created_at,
            "updated_at": time.time(),
        },
    )


class ProjectService:
    def __init__(self, records: Records) -> None:
        self._records = records

    def _to_project(self, tenant: str, rec: Record) -> Project:
        d = rec.data
        cfg = dict(d["config"])
        # `datasets` in the config mirrors the dataset records; it is not stored twice.
        cfg["datasets"] = [
            {
                "name": r.sk,
                "database": r.data["database"],
                "data_processing_strategy": r.data["data_processing_strategy"],
            }
            for r in self._records.query(
                keys.dataset_names(tenant, d["namespace"], d["name"]), "", limit=None
            )
        ]
        return Project(
            tenant,
            d["namespace"],
            d["name"],
            ProjectConfig.model_validate(cfg),
            d["created_at"],
            d["updated_at"],
        )

    def list_projects(self, tenant: str, namespace: str) -> list[Project]:
        check_name("namespace", namespace)
        return [
            self._to_project(tenant, r)
            for r in self._records.query(keys.project(tenant, namespace), "", limit=None)
        ]

    def get(self, tenant: str, namespace: str, name: str) -> Project:
        rec = self._records.get(keys.project(tenant, namespace), name)
        if rec is None:
            raise NotFound(f"Project {namespace}/{name} not found")
        return self._to_project(tenant, rec)

    def config(self, tenant: str, namespace: str, name: str) -> ProjectConfig:
        """The stored config alone (one read): what services need to check a project exists
        and read its settings, without deriving its `datasets` list."""
        rec = self._records.get(keys.project(tenant, namespace), name)
        if rec is None:
            raise NotFound(f"Project {namespace}/{name} not found")
        return ProjectConfig.model_validate(rec.data["config"])

    def create(self, tenant: str, namespace: str, name: str, template: str | None) -> Project:
        check_name("namespace", namespace)
        check_name("project", name)
        return self.create_from_config(
            tenant, namespace, name, render_template(template or "server", namespace, name)
        )

    def create_from_config(
        self, tenant: str, namespace: str, name: str, config: dict[str, Any]
    ) -> Project:
        """A new project with a whole config (an example's); the path's namespace and name
        replace whatever the config says."""
        check_name("namespace", namespace)
        check_name("project", name)
        cfg = _config({**config, "namespace": namespace, "name": name})
        rec = _record(tenant, namespace, name, cfg, created_at=time.time())
        try:
            self._records.put(rec, if_absent=True)
        except Conflict:
            raise Conflict(f"Project {namespace}/{name} already exists") from None
        return self._to_project(tenant, rec)

    def update(self, tenant: str, namespace: str, name: str, config: dict[str, Any]) -> Project:
        current = self.get(tenant, namespace, name)
        data = dict(config)
        # The path names the project; a body that names another one is a mistake, not a rename.
        for key, expected in (("name", name), ("namespace", namespace)):
            if data.setdefault(key, expected) != expected:
                raise Invalid(f"config.{key} {data[key]!r} does not match the URL ({expected!r})")
        rec = _record(tenant, namespace, name, _config(data), created_at=current.created_at)
        self._records.put(rec, if_absent=False)
        return self._to_project(tenant, rec)

    def delete_record(self, tenant: str, namespace: str, name: str) -> None:
        self._records.delete(keys.project(tenant, namespace), name)
