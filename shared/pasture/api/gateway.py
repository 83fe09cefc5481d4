"""API Gateway's side of tenancy, shared by the authorizer and the Lambda apps: which key a
request presents, and which tenant the authorizer put in the request context.

No FastAPI here: the authorizer function imports this and must stay small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Set by the AWS Lambda Web Adapter from the invocation's event (it replaces any header of
# that name the client sent); read only by the app built for the adapter.
LWA_CONTEXT_HEADER = "x-amzn-request-context"


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key of a request: `X-Api-Key`, else `Authorization: Bearer <key>` (a bare
    `Authorization: <key>` too: RAGFlow's tooling sends that)."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return authorization.strip()
    return None


def tenant_in_context(request_context: object) -> str | None:
    """The tenant our authorizer passed, from an API Gateway request context: REST APIs put
    the authorizer's `context` map flat under `authorizer`; HTTP APIs under
    `authorizer.lambda`."""
    if not isinstance(request_context, Mapping):
        return None
    authorizer = request_context.get("authorizer")
    if not isinstance(authorizer, Mapping):
        return None
    tenant = authorizer.get("tenant")
    if tenant is None and isinstance(authorizer.get("lambda"), Mapping):
        tenant = authorizer["lambda"].get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def context_from_header(values: list[str]) -> Any:
    """The request context carried in the adapter's header. Anything but exactly one
    well-formed JSON value is refused (None): a second copy can only come from elsewhere."""
    if len(values) != 1:
        return None
    try:
        return json.loads(values[0])
    except ValueError:
        return None
