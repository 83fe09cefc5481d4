"""One resource group as a Lambda function: what every `functions/<group>/handler.py` calls.

    handler = lambda_handler("datasets")

builds the group's FastAPI app (the same factory `pasture serve` uses, with one group) and
wraps it in Mangum for API Gateway's REST proxy events, with Powertools' logger and metrics
(namespace "Pasture", service = the group) and, when PASTURE_TRACING is on and aws-xray-sdk
is installed, its tracer.

The container is built when the handler module is imported, i.e. in the Lambda init phase:
on the aws backend every adapter is lazy (no client, no network, no model until a request
needs it), so this is cheap and cannot fail on a missing service, while the work it does
(settings, service wiring) is paid once per execution environment, outside any request, and
lands in a SnapStart snapshot. Bad settings fail the init loudly instead of every request.
Mangum runs with lifespan "off" (its startup would run per event), so the container is handed
to the app directly; nothing here starts a thread: the aws backend's workflow is Step Functions.

`web_adapter_app` is the same app for the AWS Lambda Web Adapter (functions/chat/run.sh),
which streams responses; there the request context arrives as a header (see api/deps.py).
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pasture.api.gateway import tenant_in_context
from pasture.api.groups import group

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pasture.bootstrap import Container
    from pasture.config import Settings

log = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
NAMESPACE = "Pasture"
# The Lambda Web Adapter's readiness check (AWS_LWA_READINESS_CHECK_PATH in run.sh).
READY_PATH = "/health/liveness"


def default_container(settings: Settings | None = None) -> Container:
    from pasture.bootstrap import build_container
    from pasture.config import get_settings

    return build_container(settings or get_settings())


def group_app(name: str, container: Container, *, lwa_context: bool = False) -> FastAPI:
    """The FastAPI app of one group over a ready container. `lwa_context`: trust the request
    context header that the Lambda Web Adapter sets; only the adapter's app may."""
    from pasture.api.app import create_app

    app = create_app([group(name)], container=container)
    # Behind API Gateway the authorizer has checked the key: tenants come from its context.
    app.state.gateway_auth = True
    app.state.lwa_context = lwa_context
    return app


@contextmanager
def init_phase() -> Iterator[None]:
    """The function's init: the cyclic GC off while the app and container are built, then
    everything built so far frozen out of later collections. Init makes tens of thousands of
    long-lived objects (routes, models, services); a full collection over them in the middle
    of init cost 30-40 ms of a ~300 ms import (bench/coldstart.py), and every later full
    collection would walk them again for nothing. The price: a reference cycle that became
    garbage during init is never freed (init makes few; this is what gc.freeze is for)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def lambda_handler(name: str, *, container: Container | None = None) -> LambdaHandler:
    """The Lambda handler of group `name` (API Gateway REST proxy events, payload v1)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.metrics import MetricUnit
    from mangum import Mangum

    with init_phase():
        c = container or default_container()
        asgi = Mangum(group_app(name, c), lifespan="off")
        logger = _logger(name)
        metrics = Metrics(namespace=NAMESPACE, service=name)

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
    )
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        tenant = tenant_in_context(event.get("requestContext"))
        if tenant is not None:
            logger.append_keys(tenant=tenant)
        response = asgi(event, context)
        status = int(response.get("statusCode", 500))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        # API Gateway counts 5XX too, but not which group's code failed.
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=int(status >= 500))
        return response

    return traced(handler, name, c.settings)


def web_adapter_app(name: str = "chat", *, container: Container | None = None) -> FastAPI:
    """The group's app for the Lambda Web Adapter (`uvicorn --factory`), which turns each
    event into an HTTP request to it and streams the answer back (response_stream mode)."""
    from fastapi.responses import JSONResponse

    _logger(name)
    app = group_app(name, container or default_container(), lwa_context=True)

    # The adapter waits for this at init; no store is touched (a slow table must not keep
    # the function from starting).
    async def ready() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    app.add_api_route(READY_PATH, ready, methods=["GET"], include_in_schema=False)
    return app


def _logger(service: str) -> Any:
    """Powertools' JSON logger, also for Pasture's own loggers (`logging.getLogger(__name__)`
    all over shared/), so every line of a request is structured and carries its keys."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logger = Logger(service=service)
    logging.getLogger("pasture")  # registered, so its config is copied to it
    copy_config_to_registered_loggers(source_logger=logger, include={"pasture"})
    return logger


def traced(handler: LambdaHandler, service: str, settings: Settings) -> LambdaHandler:
    """X-Ray through Powertools' Tracer, only when asked for and possible: aws-xray-sdk is an
    optional dependency and is imported only here."""
    if not settings.tracing:
        return handler
    if importlib.util.find_spec("aws_xray_sdk") is None:
        log.warning("PASTURE_TRACING is on but aws-xray-sdk is not installed; not tracing")
        return handler
    from aws_lambda_powertools import Tracer

    # botocore only: the calls worth seeing are DynamoDB, S3, Step Functions, SageMaker.
    tracer = Tracer(service=service, patch_modules=("botocore",))
    # Responses carry tenants' data: never copied into trace metadata.
    wrapped: LambdaHandler = tracer.capture_lambda_handler(handler, capture_response=False)
    return wrapped
