"""OpenAI's error envelope for the OpenAI-shaped routes outside a project (`/v1/audio`):
real HTTP statuses and `{"error": {"message", "type", "param", "code"}}`, which the OpenAI
SDKs turn into their exception classes. Validation errors are 400 with one sentence."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from pasture.api.errors import Dialect, register_dialect

OPENAI_PREFIXES = ("/v1/audio",)


def error_type(status: int) -> str:
    if status in (401, 403):
        return "authentication_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error(status: int, message: str) -> Response:
    if status == 422:
        status = 400
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def describe(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "Invalid request."
    first = errors[0]
    where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    if first.get("type") == "missing":
        return f"`{where[-1]}` is required." if where else "The request body is required."
    msg = str(first.get("msg", "invalid value"))
    return f"`{'.'.join(where)}`: {msg}." if where else f"{msg}."


def _validation(exc: RequestValidationError) -> Response:
    return error(400, describe(exc))


OPENAI = Dialect("openai", OPENAI_PREFIXES, error, _validation)
register_dialect(OPENAI)
