"""RAGFlow's envelope: almost every reply is HTTP 200 and the outcome is in the body.

Success is `{"code": 0, "data": ...}` (no `data` where there is nothing to say); failure is
`{"code": N, "message": "..."}` with RAGFlow's codes. The client raises `Exception(message)` on
any non-zero code, so messages are written for people.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Annotated, Any, TypeVar

from fastapi import Body as BodyParam
from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from pasture.api.deps import ContainerDep, presented_key, request_tenant
from pasture.api.errors import Dialect, register_dialect
from pasture.domain.errors import Invalid, Unauthorized

RAGFLOW_PREFIXES = ("/api/v1", "/api", "/v1/user", "/v1/system")


class Code(IntEnum):
    SUCCESS = 0
    EXCEPTION = 100
    ARGUMENT_ERROR = 101
    DATA_ERROR = 102
    OPERATING_ERROR = 103
    PERMISSION_ERROR = 108
    AUTHENTICATION_ERROR = 109


# HTTP statuses of domain errors (api/errors.py) -> RAGFlow codes. Not found, not owned and
# duplicates are all "data errors" in RAGFlow; our faults and failing backends are exceptions.
_CODES = {
    400: Code.DATA_ERROR,
    401: Code.AUTHENTICATION_ERROR,
    403: Code.PERMISSION_ERROR,
    404: Code.DATA_ERROR,
    409: Code.DATA_ERROR,
    413: Code.DATA_ERROR,
    422: Code.ARGUMENT_ERROR,
}


def ok(data: Any = None) -> JSONResponse:
    return JSONResponse({"code": 0} if data is None else {"code": 0, "data": data})


def fail(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": int(code), "message": message})


def _error(status: int, message: str) -> Response:
    if status in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        # No such route: a real HTTP status, as RAGFlow's web server answers too.
        return JSONResponse({"code": status, "message": message}, status_code=status)
    return fail(_CODES.get(status, Code.EXCEPTION), message)


def _validation(exc: RequestValidationError) -> Response:
    return fail(Code.ARGUMENT_ERROR, describe(exc.errors()))


def describe(errors: Any) -> str:
    """Pydantic errors as one sentence naming the fields, RAGFlow style (`name` ...)."""
    parts = []
    for e in errors:
        if e.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if e.get("type") == "dict_type" and tuple(e.get("loc", ())) == ("body",):
            return "the request body must be a JSON object"
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        parts.append(f"`{field}` {e.get('msg', 'is invalid')}")
    return "; ".join(parts) or "invalid request"


RAGFLOW = Dialect("ragflow", RAGFLOW_PREFIXES, _error, _validation)
register_dialect(RAGFLOW)

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is `{}` (RAGFlow's clients send none on some calls)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise Invalid("the request body is not valid JSON") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    return data


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(describe(exc.errors())) from None


def get_ragflow_tenant(
    request: Request,
    c: ContainerDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The caller's tenant, with RAGFlow's messages (`Token is not valid!`)."""
    key = presented_key(authorization, x_api_key)
    try:
        return request_tenant(request, c, key)
    except Unauthorized:
        if not key:
            raise Unauthorized(
                "Authorization is missing: send `Authorization: Bearer <API key>`"
            ) from None
        raise Unauthorized("Token is not valid!") from None


RagflowTenant = Annotated[str, Depends(get_ragflow_tenant)]
# A JSON object body, or None when the client sent none (RAGFlow's clients often send none).
Body = Annotated[dict[str, Any] | None, BodyParam()]
