"""API Gateway's Lambda authorizer (REQUEST type): API key -> tenant.

The key is read as the app reads it locally (`X-Api-Key`, else `Authorization: Bearer`,
header names in any case) and mapped with the container's Authenticator: the static keys of
the settings and the consumer keys stored hashed in DynamoDB (and RAGFlow accounts' keys when
PASTURE_RAGFLOW_ACCOUNTS is on). The answer:

- `context.tenant`: the only place the handlers take the tenant from;
- `usageIdentifierKey`: the presented key, for the usage plan's throttling and quota (the API
  uses API key source AUTHORIZER);
- an Allow on the whole stage (`.../<stage>/*`), not just `methodArn`: API Gateway caches the
  policy per identity source, and the same key may call any method next.

A missing or unknown key raises `Exception("Unauthorized")`, which API Gateway answers with
401; any other failure (the table is unreachable) is its 500, never a wrong 401. The health
route and RAGFlow's accounts routes (login sessions, not API keys) are not behind it.

No FastAPI is imported here: this function runs in front of every uncached request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pasture.api.gateway import presented_key
from pasture.domain.errors import Unauthorized

if TYPE_CHECKING:
    from pasture.bootstrap import Container
    from pasture.services.tenancy import Authenticator

log = logging.getLogger(__name__)

# What API Gateway expects to turn into a 401 (any other message is a 500).
UNAUTHORIZED = "Unauthorized"


def _header(event: Mapping[str, Any], name: str) -> str | None:
    """One header, whatever case the client wrote it in. Several different values (the
    header sent twice) are refused rather than guessed between."""
    values: set[str] = set()
    for field in ("headers", "multiValueHeaders"):
        got = event.get(field) or {}
        for key, value in got.items():
            if key.lower() != name:
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str):
                    values.add(v)
    if len(values) > 1:
        raise Exception(UNAUTHORIZED)
    return values.pop() if values else None


def stage_arn(method_arn: str) -> str:
    """`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<VERB>/<path>` -> every method
    and path of that stage."""
    api, sep, rest = method_arn.partition("/")
    stage = rest.partition("/")[0]
    if not sep or not stage:
        raise ValueError(f"not an execute-api method ARN: {method_arn!r}")
    return f"{api}/{stage}/*"


def authorize(event: Mapping[str, Any], authenticator: Authenticator) -> dict[str, Any]:
    """The authorizer's answer to a REQUEST event, or `Exception("Unauthorized")`."""
    key = presented_key(_header(event, "authorization"), _header(event, "x-api-key"))
    if not key:
        raise Exception(UNAUTHORIZED)
    try:
        tenant = authenticator.tenant_for(key)
    except Unauthorized:
        raise Exception(UNAUTHORIZED) from None
    return {
        "principalId": tenant,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": stage_arn(str(event["methodArn"])),
                }
            ],
        },
        # Values must be strings, numbers or booleans; the handlers read `tenant`.
        "context": {"tenant": tenant},
        "usageIdentifierKey": key,
    }


def authorizer_handler(
    *, container: Container | None = None
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The authorizer Lambda's handler; the container is built now, in the init phase (its
    adapters are lazy: DynamoDB is first reached by the first key that is not a static one)."""
    from aws_lambda_powertools import Logger

    if container is None:
        from pasture.bootstrap import build_container
        from pasture.config import get_settings

        container = build_container(get_settings())
    authenticator = container.authenticator
    logger = Logger(service="authorizer")

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            answer = authorize(event, authenticator)
        except Exception as exc:
            if str(exc) != UNAUTHORIZED:
                logger.exception("authorizer failed")  # API Gateway answers 500
            else:  # never the key itself in a log line
                logger.info("refused", extra={"methodArn": event.get("methodArn")})
            raise
        logger.info("allowed", extra={"tenant": answer["principalId"]})
        return answer

    return handler
