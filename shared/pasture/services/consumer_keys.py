"""Consumer API keys made with `pasture keys create|list|revoke`.

A consumer is a tenant named by the operator (LlamaChat calls them consumers: `mobile-app`,
`zapier`). The key is shown once, at creation; only its sha256 digest is stored, and that is
also how a request's key is found (services/keys.py: the CONSUMERKEY / CONSUMER lookups).
A consumer may hold several keys (rotation): create the new one, then revoke the old by id.
Keys from the settings or a secrets file (`Consumer:ApiKeys`) work alongside these.

Where a gateway in front of the API checks keys itself (API Gateway on AWS: its key source is
the authorizer, whose answer must name one of its API keys), each key is also registered
there (the `ApiKeyGateway` port); locally there is none (`NoApiKeyGateway`). A key is whole or
absent: creation writes the table entries, then the gateway's copy, and takes the entries back
if the gateway fails; revocation removes the gateway's copy first, then the entries, so a
failure half way leaves a listed key that `revoke` finishes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, replace

from pasture.domain.errors import Invalid, NotFound
from pasture.ports import ApiKeyGateway, Record, Records
from pasture.services import keys

log = logging.getLogger(__name__)

KEY_PREFIX = "pst-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY_ID_CHARS = 8
_KEY_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class ConsumerKey:
    consumer: str
    key_id: str  # the first hex digits of the key's digest: names a key without revealing it
    created_at: float
    secret: str | None = None  # only right after creation
    api_key_id: str | None = None  # the gateway's id of its copy (AWS: the API Gateway key)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid(
            f"consumer name {name!r} must be 1-64 letters, digits or _ . @ -,"
            " starting with a letter or digit"
        )
    return name


def is_key_id(key_id: str) -> bool:
    return bool(_KEY_ID.match(key_id))


class NoApiKeyGateway(ApiKeyGateway):
    """No gateway in front of the API (the local server checks keys itself): nothing to do.

    It lives here, not in adapters/: it reaches nothing outside, and it is the service's
    default, which a service may not import from adapters/."""

    def register(self, consumer: str, key_id: str, secret: str) -> str | None:
        return None

    def find(self, consumer: str, key_id: str) -> str | None:
        return None

    def revoke(self, consumer: str, key_id: str) -> None:
        return None


class ConsumerKeyService:
    def __init__(self, records: Records, gateway: ApiKeyGateway | None = None) -> None:
        self._records = records
        self._gateway = gateway if gateway is not None else NoApiKeyGateway()

    def create(self, consumer: str) -> ConsumerKey:
        check_name(consumer)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(secret)
        key = ConsumerKey(consumer, digest[:_KEY_ID_CHARS], time.time(), secret)
        # The lookup goes in first: a key listed but not usable would be worse than none.
        self._records.put(Record(keys.CONSUMER_KEYS, digest, {"tenant": consumer}), if_absent=True)
        try:
            self._records.put(
                Record(
                    keys.CONSUMERS,
                    f"{consumer}#{key.key_id}",
                    {"digest": digest, "created_at": key.created_at},
                ),
                if_absent=True,
            )
            api_key_id = self._gateway.register(consumer, key.key_id, secret)
        except BaseException:
            # Nobody has seen the secret yet: take the entries back, so no half-made key
            # remains. Should that fail too, what is left is listed, and `revoke` clears it.
            self._take_back(key, digest)
            raise
        return replace(key, api_key_id=api_key_id)

    def _take_back(self, key: ConsumerKey, digest: str) -> None:
        try:
            self._records.delete(keys.CONSUMER_KEYS, digest)
            row = self._records.get(keys.CONSUMERS, f"{key.consumer}#{key.key_id}")
            if row is not None and row.data.get("digest") == digest:
                self._records.delete(keys.CONSUMERS, row.sk)
        except Exception:
            log.exception("could not take back key %s of %r", key.key_id, key.consumer)

    def get(self, consumer: str, key_id: str) -> ConsumerKey | None:
        """One listed key, with the gateway's id of it; None when there is no such key."""
        row = self._records.get(keys.CONSUMERS, f"{check_name(consumer)}#{key_id}")
        if row is None:
            return None
        return ConsumerKey(
            consumer,
            key_id,
            float(row.data["created_at"]),
            api_key_id=self._gateway.find(consumer, key_id),
        )

    def listed(self, consumer: str | None = None) -> list[ConsumerKey]:
        prefix = f"{check_name(consumer)}#" if consumer else ""
        rows = self._records.query(keys.CONSUMERS, prefix, limit=None)
        out = []
        for r in rows:
            name, _, key_id = r.sk.rpartition("#")
            out.append(ConsumerKey(name, key_id, float(r.data["created_at"])))
        return out

    def any(self) -> bool:
        return bool(self._records.query(keys.CONSUMERS, "", limit=1))

    def revoke(self, consumer: str, key_id: str | None = None) -> int:
        """Revoke one key of the consumer (by id) or all of them; returns how many.

        NotFound when the consumer has no such key listed; a key asked for by id is taken off
        the gateway even then, so revoking it again clears whatever a failure left there."""
        chosen = [k for k in self.listed(consumer) if key_id is None or k.key_id == key_id]
        if not chosen:
            if key_id is not None and is_key_id(key_id):
                self._gateway.revoke(consumer, key_id)
            what = f"key {key_id} of consumer" if key_id else "consumer"
            raise NotFound(f"no {what} {consumer!r}")
        for k in chosen:
            # The gateway's copy goes first: if removing it fails, the key stays listed and
            # revoking it again finishes the job.
            self._gateway.revoke(k.consumer, k.key_id)
            row = self._records.get(keys.CONSUMERS, f"{k.consumer}#{k.key_id}")
            if row is not None:
                # The lookup goes first: from here on the key no longer authenticates.
                self._records.delete(keys.CONSUMER_KEYS, str(row.data["digest"]))
                self._records.delete(keys.CONSUMERS, row.sk)
        return len(chosen)

    def tenant_for_key(self, digest_hex: str) -> str | None:
        rec = self._records.get(keys.CONSUMER_KEYS, digest_hex)
        return None if rec is None else str(rec.data["tenant"])
