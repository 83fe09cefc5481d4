"""Consumer API keys made with `pasture keys create|list|revoke`.

A consumer is a tenant named by the operator (LlamaChat calls them consumers: `mobile-app`,
`zapier`). The key is shown once, at creation; only its sha256 digest is stored, and that is
also how a request's key is found (services/keys.py: the CONSUMERKEY / CONSUMER lookups).
A consumer may hold several keys (rotation): create the new one, then revoke the old by id.
Keys from the settings or a secrets file (`Consumer:ApiKeys`) work alongside these.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from pasture.domain.errors import Invalid, NotFound
from pasture.ports import Record, Records
from pasture.services import keys

KEY_PREFIX = "pst-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY_ID_CHARS = 8


@dataclass(frozen=True)
class ConsumerKey:
    consumer: str
    key_id: str  # the first hex digits of the key's digest: names a key without revealing it
    created_at: float
    secret: str | None = None  # only right after creation


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid(
            f"consumer name {name!r} must be 1-64 letters, digits or _ . @ -,"
            " starting with a letter or digit"
        )
    return name


class ConsumerKeyService:
    def __init__(self, records: Records) -> None:
        self._records = records

    def create(self, consumer: str) -> ConsumerKey:
        check_name(consumer)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(secret)
        key = ConsumerKey(consumer, digest[:_KEY_ID_CHARS], time.time(), secret)
        # The lookup goes in first: a key listed but not usable would be worse than none.
        self._records.put(Record(keys.CONSUMER_KEYS, digest, {"tenant": consumer}), if_absent=True)
        self._records.put(
            Record(
                keys.CONSUMERS,
                f"{consumer}#{key.key_id}",
                {"digest": digest, "created_at": key.created_at},
            ),
            if_absent=True,
        )
        return key

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
        """Revoke one key of the consumer (by id) or all of them; returns how many."""
        chosen = [k for k in self.listed(consumer) if key_id is None or k.key_id == key_id]
        if not chosen:
            what = f"key {key_id} of consumer" if key_id else "consumer"
            raise NotFound(f"no {what} {consumer!r}")
        for k in chosen:
            row = self._records.get(keys.CONSUMERS, f"{k.consumer}#{k.key_id}")
            if row is not None:
                # The lookup goes first: from here on the key no longer authenticates.
                self._records.delete(keys.CONSUMER_KEYS, str(row.data["digest"]))
                self._records.delete(keys.CONSUMERS, row.sk)
        return len(chosen)

    def tenant_for_key(self, digest_hex: str) -> str | None:
        rec = self._records.get(keys.CONSUMER_KEYS, digest_hex)
        return None if rec is None else str(rec.data["tenant"])
