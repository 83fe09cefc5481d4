"""/, /info, /health, /health/liveness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pasture import __version__
from pasture.api.deps import ContainerDep

router = APIRouter(tags=["system"])


@router.get("/")
def root() -> dict[str, str]:
    return {"message": "Hello, World!"}


@router.get("/info")
def info(c: ContainerDep) -> dict[str, Any]:
    return {
        "version": __version__,
        "data_directory": str(c.settings.data_dir),
        "backend": c.settings.backend,
    }


@router.get("/health")
def health(c: ContainerDep) -> JSONResponse:
    services: dict[str, str] = {"api": "healthy"}
    try:
        c.records.get("health", "probe")
        services["records"] = "healthy"
    except Exception:
        services["records"] = "unhealthy"
    ok = all(v == "healthy" for v in services.values())
    return JSONResponse(
        {"status": "healthy" if ok else "unhealthy", "services": services},
        status_code=200 if ok else 503,
    )


@router.get("/health/liveness")
def liveness() -> dict[str, str]:
    return {"status": "alive"}
