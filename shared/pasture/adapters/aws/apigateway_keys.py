"""Consumer keys as API Gateway API keys in the stack's usage plan (the ApiKeyGateway port).

The REST API's key source is AUTHORIZER: the authorizer answers `usageIdentifierKey` = the
request's key, and API Gateway then wants an API key with that very value in a usage plan of
the stage (else 403). So every consumer key is also one API key here:

    name         pasture-<consumer>-<key id>   (found again by this name; unique, since a
                                                key id is 8 hex digits after the last dash)
    value        the key itself                (API Gateway keeps it; `get-api-key
                                                --include-value` shows it to the operator)
    enabled      true
    description  says that Pasture manages it  (no tags: tagging on create would need
                                                apigateway:POST on /tags too)

and one usage plan key (keyType API_KEY) putting it in the plan. Calls, for IAM:
GetUsagePlans (GET /usageplans, only when the plan is given by name), CreateApiKey
(POST /apikeys), CreateUsagePlanKey (POST /usageplans/<id>/keys), GetApiKeys
(GET /apikeys), DeleteApiKey (DELETE /apikeys/<id>; API Gateway drops the key from its usage
plans with it). Values never appear in errors or logs: listings ask for no values.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pasture.adapters.aws.errors import error_code, translate
from pasture.domain.errors import Unavailable
from pasture.ports import ApiKeyGateway

log = logging.getLogger(__name__)

SERVICE = "API Gateway"
DESCRIPTION = "Pasture consumer key {consumer}/{key_id}; managed by Pasture (pasture keys)"


def api_key_name(consumer: str, key_id: str) -> str:
    return f"pasture-{consumer}-{key_id}"


class ApiGatewayApiKeys(ApiKeyGateway):
    """`client`: a boto3 `apigateway` client. `usage_plan_id`: the stack's usage plan; only
    `register` needs it (finding and revoking keys work without)."""

    def __init__(
        self, client: Any, usage_plan_id: str | None, *, plan_name: str | None = None
    ) -> None:
        self._client = client
        self._plan = usage_plan_id
        self._plan_name = plan_name

    def _plan_id(self) -> str:
        """The usage plan's id: given, or found once by its exact name (GetUsagePlans)."""
        if self._plan:
            return self._plan
        if not self._plan_name:
            raise Unavailable(
                "PASTURE_USAGE_PLAN_ID is not set: on the aws backend a consumer key must also"
                " be an API key in the stack's usage plan (stack output UsagePlanId)"
            )
        found: list[str] = []
        position: str | None = None
        try:
            while True:
                page = self._client.get_usage_plans(
                    limit=500, **({"position": position} if position else {})
                )
                found += [
                    p["id"] for p in page.get("items", []) if p.get("name") == self._plan_name
                ]
                position = page.get("position")
                if not position:
                    break
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, SERVICE, "GetUsagePlans") from exc
        if len(found) != 1:
            raise Unavailable(
                f"expected one API Gateway usage plan named PASTURE_USAGE_PLAN_NAME, found"
                f" {len(found)} (set PASTURE_USAGE_PLAN_ID to the stack output UsagePlanId)"
            )
        self._plan = found[0]
        return self._plan

    def register(self, consumer: str, key_id: str, secret: str) -> str:
        plan = self._plan_id()
        try:
            made = self._client.create_api_key(
                name=api_key_name(consumer, key_id),
                description=DESCRIPTION.format(consumer=consumer, key_id=key_id),
                enabled=True,
                value=secret,
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, SERVICE, "CreateApiKey") from exc
        api_key_id = str(made["id"])
        try:
            self._client.create_usage_plan_key(
                usagePlanId=plan, keyId=api_key_id, keyType="API_KEY"
            )
        except BaseException as exc:
            self._delete(api_key_id)  # no key outside the plan: all or nothing
            if isinstance(exc, ClientError) and error_code(exc) == "NotFoundException":
                raise Unavailable(
                    "API Gateway has no usage plan of id PASTURE_USAGE_PLAN_ID"
                    " (use the stack output UsagePlanId)"
                ) from exc
            if isinstance(exc, BotoCoreError | ClientError):
                raise translate(exc, SERVICE, "CreateUsagePlanKey") from exc
            raise
        return api_key_id

    def find(self, consumer: str, key_id: str) -> str | None:
        found = self._ids(api_key_name(consumer, key_id))
        return found[0] if found else None

    def revoke(self, consumer: str, key_id: str) -> None:
        for api_key_id in self._ids(api_key_name(consumer, key_id)):
            try:
                self._client.delete_api_key(apiKey=api_key_id)
            except ClientError as exc:
                if error_code(exc) != "NotFoundException":  # already gone: fine
                    raise translate(exc, SERVICE, "DeleteApiKey") from exc
            except BotoCoreError as exc:
                raise translate(exc, SERVICE, "DeleteApiKey") from exc

    def _ids(self, name: str) -> list[str]:
        """Ids of the API keys named exactly `name` (nameQuery matches by prefix)."""
        try:
            pages = self._client.get_paginator("get_api_keys").paginate(
                nameQuery=name, includeValues=False
            )
            return [
                k["id"] for page in pages for k in page.get("items", []) if k.get("name") == name
            ]
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, SERVICE, "GetApiKeys") from exc

    def _delete(self, api_key_id: str) -> None:
        try:
            self._client.delete_api_key(apiKey=api_key_id)
        except Exception:
            # Left over: named pasture-<consumer>-<key id>, outside any plan, so it lets no
            # request through; revoking that key id removes it.
            log.exception("could not delete API key %s after a failed registration", api_key_id)
