"""The `keys` Lambda: the CloudFormation custom resource `Custom::PastureConsumerKey` (behind
the CDK Provider framework) that makes one consumer key per consumer of the stack's config.

Properties: `Consumer`. Answers the physical id `<consumer>#<key id>` and `Data` = `KeyId`,
`ApiKeyId` (the API Gateway key: `aws apigateway get-api-key --api-key <ApiKeyId>
--include-value` reads the secret), `Consumer`. Never the secret: CloudFormation keeps `Data`
in plain text. Create makes a key; Update with the same consumer keeps it (a new one if it was
revoked meanwhile), with another consumer makes a new key and CloudFormation then deletes the
old one; Delete revokes it, and succeeds for a key that is gone or was never made.

The service is built once per process, on the first event (like functions/ingest).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pasture.domain.errors import Invalid, NotFound
from pasture.services.consumer_keys import check_name, is_key_id

if TYPE_CHECKING:
    from pasture.services.consumer_keys import ConsumerKey, ConsumerKeyService

log = logging.getLogger("pasture.keys")
_keys: ConsumerKeyService | None = None  # tests put theirs here


def _service() -> ConsumerKeyService:
    global _keys
    if _keys is None:
        from pasture.bootstrap import build_container
        from pasture.config import get_settings

        _keys = build_container(get_settings()).consumer_keys
    return _keys


def _made_here(physical_id: str | None) -> tuple[str, str] | None:
    """(consumer, key id) of a physical id this handler answered; None for any other."""
    consumer, _, key_id = (physical_id or "").rpartition("#")
    with suppress(Invalid):
        if is_key_id(key_id) and check_name(consumer):
            return consumer, key_id
    return None


def _answer(key: ConsumerKey) -> dict[str, Any]:
    data = {"KeyId": key.key_id, "ApiKeyId": key.api_key_id or "", "Consumer": key.consumer}
    return {"PhysicalResourceId": f"{key.consumer}#{key.key_id}", "Data": data}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    kind = event["RequestType"]
    physical_id = event.get("PhysicalResourceId")
    made = _made_here(physical_id)
    log.info("%s consumer key resource %s", kind, physical_id or "(new)")
    if kind == "Delete":
        if made is not None:
            with suppress(NotFound):  # revoked already: fine
                _service().revoke(*made)
        return {"PhysicalResourceId": physical_id}
    if kind not in ("Create", "Update"):
        raise ValueError(f"unknown RequestType {kind!r}")
    consumer = str(event.get("ResourceProperties", {}).get("Consumer", ""))
    if kind == "Update" and made is not None and made[0] == consumer:
        kept = _service().get(*made)
        if kept is not None:
            return _answer(kept)
    return _answer(_service().create(consumer))
