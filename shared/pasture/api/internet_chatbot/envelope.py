"""llama_internet_chatbot's envelope: Rocket's default error body and real statuses.

The original is a Rocket app, whose default catcher answers
`{"error": {"code": 404, "reason": "Not Found", "description": "..."}}`. As in Rocket, a body
that is not JSON is 400, a JSON body that cannot be used (missing or mistyped fields, a role
other than Human or Assistant, an empty name, ...) is 422 Unprocessable Entity, and an id that
is not a UUID is 404 (Rocket's route guard fails, so no route matches). Our domain errors keep
their message as the description: `Invalid` is 422 here (well-formed, cannot be honoured).
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from pasture.api.errors import Dialect, register_dialect

PREFIXES = ("/chats", "/conversations")

# Rocket's reason phrases and default catcher descriptions.
_REASONS = {422: "Unprocessable Entity", 413: "Payload Too Large"}
_DESCRIPTIONS = {
    400: "The request could not be understood by the server due to malformed syntax.",
    401: "The request requires user authentication.",
    404: "The requested resource could not be found.",
    405: "The request method is not supported for the requested resource.",
    413: "The request is larger than the server is willing or able to process.",
    422: "The request was well-formed but was unable to be followed due to semantic errors.",
    500: "The server encountered an internal error while processing this request.",
    502: (
        "The server, while acting as a gateway or proxy, received an invalid response from the"
        " upstream server it accessed in attempting to fulfill the request."
    ),
    503: (
        "The server is currently unavailable due to a temporary overloading or maintenance of"
        " the server."
    ),
}


def reason(status: int) -> str:
    return _REASONS.get(status) or _phrase(status) or "Unknown"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def body(status: int, description: str) -> dict[str, dict[str, object]]:
    return {"error": {"code": status, "reason": reason(status), "description": description}}


def error(status: int, message: str) -> Response:
    if status == 400:
        status = 422  # `Invalid` from a service: the values cannot be honoured
    if not message or message in (reason(status), _phrase(status)):
        message = _DESCRIPTIONS.get(status, message)  # Starlette's bare "Not Found" etc.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body(status, message), status_code=status, headers=headers)


def describe(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        if e.get("type") == "missing":
            parts.append(f"`{'.'.join(loc)}` is required" if loc else "a JSON body is required")
        elif e.get("type") in ("model_attributes_type", "dict_type") and not loc:
            parts.append("the body must be a JSON object")
        else:
            parts.append(f"`{'.'.join(loc) or 'body'}`: {e.get('msg', 'is invalid')}")
    return "; ".join(parts) or "invalid request"


def _validation(exc: RequestValidationError) -> Response:
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return JSONResponse(body(400, "The request body is not valid JSON."), status_code=400)
    return JSONResponse(body(422, describe(exc)), status_code=422)


INTERNET_CHATBOT = Dialect("internet_chatbot", PREFIXES, error, _validation)
register_dialect(INTERNET_CHATBOT)
