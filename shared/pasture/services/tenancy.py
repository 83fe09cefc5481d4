"""API keys -> tenants. Keys are kept only as sha256 digests and compared in constant time.

Two sources: the static keys of the settings (consumer name = tenant), and optionally a lookup
of issued keys (RAGFlow accounts' `new_token`), asked by sha256 hex digest for a key that is
not a static one. In open mode (no static key) every caller is the one open tenant, whatever
key it presents: issued keys then add no isolation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from pasture.domain.errors import Unauthorized

KeyLookup = Callable[[str], str | None]
"""sha256 hex digest of a presented key -> its tenant, or None when no such key is issued."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class Authenticator:
    def __init__(
        self,
        consumer_keys: dict[str, str],
        *,
        open_tenant: str,
        lookup: KeyLookup | None = None,
        stored_keys: bool = False,
    ) -> None:
        """`stored_keys`: whether keys made by `pasture keys create` exist (found through
        `lookup`); with them, as with static keys, the server is not open. Decided once, at
        startup: revoking the last key while running never opens a server."""
        self._keys = [(_digest(secret), name) for name, secret in consumer_keys.items()]
        self._open_tenant = open_tenant
        self._lookup = lookup
        self._open = not self._keys and not stored_keys

    @property
    def open_mode(self) -> bool:
        return self._open

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
        if found is None and self._lookup is not None:
            # Looked up by digest: the store never sees the key, and where a lookup's time
            # depends on the digest, that says nothing useful about any real key.
            found = self._lookup(digest.hex())
        if found is None:
            raise Unauthorized("invalid API key")
        return found
