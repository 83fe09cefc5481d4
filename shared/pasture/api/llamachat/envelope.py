"""LlamaChat's envelope: real HTTP statuses and `{"error": "..."}` bodies.

400 invalid or missing fields, 401 missing or unknown key, 404 unknown (or another consumer's)
conversation, 413 an upload over the limit, 502 the model backend failed. Validation errors
are 400 with one readable sentence, not FastAPI's 422 list.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from pasture.api.errors import Dialect, register_dialect

LLAMACHAT_PREFIXES = ("/api/conversations", "/api/transcription")


def error(status: int, message: str) -> Response:
    if status == 422:
        status = 400
    headers = {"WWW-Authenticate": 'ApiKey header="X-Api-Key"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def describe(exc: RequestValidationError) -> str:
    """The first validation problem as a sentence: `content: String should have at most 2000
    characters`."""
    errors = exc.errors()
    if not errors:
        return "Invalid request."
    first = errors[0]
    where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        return f"`{where[-1]}` is required." if where else "The request body is required."
    if first.get("type") in ("json_invalid", "model_attributes_type", "dict_type"):
        return "The request body must be a JSON object."
    return f"`{'.'.join(where)}`: {msg}." if where else f"{msg}."


def _validation(exc: RequestValidationError) -> Response:
    return error(400, describe(exc))


LLAMACHAT = Dialect("llamachat", LLAMACHAT_PREFIXES, error, _validation)
register_dialect(LLAMACHAT)
