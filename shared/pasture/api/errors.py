"""Domain errors -> HTTP, once per dialect. A dialect owns a set of path prefixes and renders
errors in its own envelope; the app picks the dialect by the request path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pasture.domain.errors import (
    Conflict,
    Invalid,
    NotFound,
    PastureError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Upstream,
)

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[PastureError], int] = {
    Invalid: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Upstream: 502,
    Unavailable: 503,
}


def status_of(exc: PastureError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


@dataclass(frozen=True)
class Dialect:
    name: str
    prefixes: tuple[str, ...]
    error: Callable[[int, str], Response]  # (status, message) -> response
    validation: Callable[[RequestValidationError], Response]


def _detail(status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _fastapi_422(exc: RequestValidationError) -> Response:
    return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


# LlamaFarm's `{"detail": ...}` with real status codes is also the default for system routes.
LLAMAFARM = Dialect("llamafarm", ("/v1/projects", "/v1/examples", "/"), _detail, _fastapi_422)

_DIALECTS: list[Dialect] = [LLAMAFARM]


def register_dialect(d: Dialect) -> None:
    if all(x.name != d.name for x in _DIALECTS):
        _DIALECTS.append(d)


def dialect_for(path: str) -> Dialect:
    best, best_len = LLAMAFARM, -1
    for d in _DIALECTS:
        for p in d.prefixes:
            if (path == p or path.startswith(p.rstrip("/") + "/")) and len(p) > best_len:
                best, best_len = d, len(p)
    return best


def install_error_handlers(app: FastAPI) -> None:
    async def pasture_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PastureError)
        return dialect_for(request.url.path).error(status_of(exc), exc.message)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return dialect_for(request.url.path).validation(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return dialect_for(request.url.path).error(exc.status_code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Logged with its traceback here; the client only learns that it was our fault.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return dialect_for(request.url.path).error(500, "Internal server error")

    app.add_exception_handler(PastureError, pasture_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
