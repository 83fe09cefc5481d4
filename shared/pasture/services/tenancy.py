"""API keys -> tenants. Keys are kept only as sha256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from pasture.domain.errors import Unauthorized


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class Authenticator:
    def __init__(self, consumer_keys: dict[str, str], *, open_tenant: str) -> None:
        self._keys = [(_digest(secret), name) for name, secret in consumer_keys.items()]
        self._open_tenant = open_tenant

    @property
    def open_mode(self) -> bool:
        return not self._keys

    def tenant_for(self, presented: str | None) -> str:
        """The tenant a key belongs to. In open mode every caller is the one local tenant."""
        if self.open_mode:
            return self._open_tenant
        if not presented:
            raise Unauthorized("missing API key (send Authorization: Bearer <key> or X-Api-Key)")
        digest = _digest(presented)
        found = None
        for known, name in self._keys:  # no early exit: time does not depend on which key
            if hmac.compare_digest(known, digest):
                found = name
        if found is None:
            raise Unauthorized("invalid API key")
        return found
