"""RAGFlow account keys at a gateway that checks keys itself (API Gateway on AWS): every key
`new_token` makes is registered there, a refused one leaves nothing behind, and a revoked one
is taken back from the gateway before the table."""

from __future__ import annotations

import hashlib

import pytest

from pasture.domain.errors import Unavailable
from pasture.ports import ApiKeyGateway
from pasture.services import keys
from pasture.services.accounts import AccountService, PasswordHasher
from tests.helpers.fakes import InMemoryRecords


class RecordingGateway(ApiKeyGateway):
    def __init__(self, *, fail: bool = False) -> None:
        self.keys: dict[tuple[str, str], str] = {}
        self.fail = fail

    def register(self, consumer: str, key_id: str, secret: str) -> str | None:
        if self.fail:
            raise Unavailable("the gateway is down")
        self.keys[(consumer, key_id)] = secret
        return f"gw-{key_id}"

    def find(self, consumer: str, key_id: str) -> str | None:
        return f"gw-{key_id}" if (consumer, key_id) in self.keys else None

    def revoke(self, consumer: str, key_id: str) -> None:
        self.keys.pop((consumer, key_id), None)


def _service(records: InMemoryRecords, gateway: ApiKeyGateway) -> AccountService:
    return AccountService(
        records, session_ttl=3600, hasher=PasswordHasher(n=2**8), api_keys=gateway
    )


def test_new_token_is_registered_at_the_gateway_under_its_tenant() -> None:
    records, gateway = InMemoryRecords(), RecordingGateway()
    svc = _service(records, gateway)
    user, _ = svc.register("a@example.com", "a", "pw-123456")
    key = svc.new_token(user)
    (((consumer, key_id), secret),) = gateway.keys.items()
    assert consumer == user.tenant and secret == key.token
    assert key_id == hashlib.sha256(key.token.encode()).hexdigest()[:16]
    assert svc.tenant_for_key(hashlib.sha256(key.token.encode()).hexdigest()) == user.tenant


def test_a_key_the_gateway_refuses_is_neither_usable_nor_listed() -> None:
    records = InMemoryRecords()
    svc = _service(records, RecordingGateway(fail=True))
    user, _ = svc.register("b@example.com", "b", "pw-123456")
    with pytest.raises(Unavailable):
        svc.new_token(user)
    assert svc.tokens(user) == []
    assert records.query(keys.API_KEYS, "", limit=None) == []  # no key lookup left either


def test_revoke_takes_the_key_back_from_the_gateway() -> None:
    records, gateway = InMemoryRecords(), RecordingGateway()
    svc = _service(records, gateway)
    user, _ = svc.register("c@example.com", "c", "pw-123456")
    key = svc.new_token(user)
    svc.revoke(user, key.token)
    assert gateway.keys == {}
    assert svc.tokens(user) == []
