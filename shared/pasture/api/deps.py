"""FastAPI dependencies: the container built by bootstrap, and the caller's tenant.

Served by `pasture serve`, the tenant is whoever holds the presented API key (on either
backend). In a Lambda behind API Gateway (apps built by `lambda_app`), the authorizer has
already checked the key, and the tenant comes only from the request context it passed on: the
key headers are never read there, so a client cannot name a tenant.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from pasture.api.gateway import (
    LWA_CONTEXT_HEADER,
    context_from_header,
    presented_key,
    tenant_in_context,
)
from pasture.bootstrap import Container
from pasture.domain.errors import Unauthorized

__all__ = ["ContainerDep", "TenantDep", "get_container", "get_tenant", "presented_key"]

MISSING_KEY = "missing API key (send Authorization: Bearer <key> or X-Api-Key)"


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def request_context(request: Request) -> Any:
    """API Gateway's request context of this request, or None. Under Mangum it is in the
    event itself; behind the Lambda Web Adapter it is a header, trusted only by an app built
    for the adapter (`app.state.lwa_context`), never by one reached any other way."""
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        return event.get("requestContext")
    if getattr(request.app.state, "lwa_context", False):
        name = LWA_CONTEXT_HEADER.encode()
        values = [v.decode("latin-1") for k, v in request.scope["headers"] if k.lower() == name]
        return context_from_header(values)
    return None


def authorizer_tenant(request: Request) -> str:
    tenant = tenant_in_context(request_context(request))
    if tenant is None:
        raise Unauthorized(MISSING_KEY)
    return tenant


def request_tenant(request: Request, c: Container, key: str | None) -> str:
    """The caller's tenant: in a Lambda behind API Gateway the authorizer's, otherwise (also
    `pasture serve` on the aws backend) the presented key's."""
    if getattr(request.app.state, "gateway_auth", False):
        return authorizer_tenant(request)
    return c.authenticator.tenant_for(key)


def get_tenant(
    request: Request,
    c: ContainerDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    return request_tenant(request, c, presented_key(authorization, x_api_key))


TenantDep = Annotated[str, Depends(get_tenant)]
