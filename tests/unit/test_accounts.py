"""AccountService (RAGFlow accounts), the Authenticator's key lookup, the accounts setting."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from pasture.config import Settings
from pasture.domain.errors import Conflict, Invalid, NotFound, Unauthorized
from pasture.services import accounts, keys
from pasture.services.accounts import (
    BAD_LOGIN,
    BAD_SESSION,
    NO_SESSION,
    AccountService,
    PasswordHasher,
    mask,
)
from pasture.services.tenancy import Authenticator
from tests.helpers.concurrency import run_together
from tests.helpers.fakes import InMemoryRecords

# The RSA-encrypted "123" that ragflow-sdk's test suite sends: opaque to us, newlines and all.
SDK_PASSWORD = "ctAseGvejiaSWWZ88T/m4FQVOpQyUvP+x7sXtdv3feqZACiQleuewkUi35E16wSd5C5Qcnkk\nfN33jC=="
TTL = 3600


def _hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        # Near real time: the store's own TTL filter runs on the real clock.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records() -> InMemoryRecords:
    return InMemoryRecords()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(records: InMemoryRecords, clock: Clock) -> AccountService:
    # A cheap scrypt cost keeps the suite fast; the default cost is tested on its own.
    return AccountService(records, session_ttl=TTL, clock=clock, hasher=PasswordHasher(n=2**8))


def test_register_login_new_token_maps_to_the_users_tenant(svc: AccountService) -> None:
    user, session = svc.register("Ada@Example.com", "ada", SDK_PASSWORD)
    assert user.tenant == f"u-{user.id}" and len(user.id) == 32 and "#" not in user.tenant
    assert user.email == "Ada@Example.com" and user.nickname == "ada"
    assert svc.authenticate(session) == user

    again, session2 = svc.login("ada@example.COM", SDK_PASSWORD)  # emails match any case
    assert again == user and session2 != session
    key = svc.new_token(svc.authenticate(session2))
    assert key.token.startswith("ragflow-") and key.user_id == user.id
    assert svc.tenant_for_key(_hex(key.token)) == user.tenant
    assert svc.tenant_for_key("0" * 64) is None


def test_each_user_is_a_new_tenant(svc: AccountService) -> None:
    a, _ = svc.register("a@x.io", "a", "pw")
    b, _ = svc.register("b@x.io", "b", "pw")
    assert a.tenant != b.tenant and a.id != b.id


def test_duplicate_email_is_a_conflict_in_any_case(svc: AccountService) -> None:
    svc.register("dup@example.com", "one", "pw1")
    with pytest.raises(Conflict, match=r"^Email: DUP@example.com has already registered!$"):
        svc.register("DUP@example.com", "two", "pw2")
    # The first registration is untouched.
    assert svc.login("dup@example.com", "pw1")[0].nickname == "one"
    with pytest.raises(Unauthorized):
        svc.login("dup@example.com", "pw2")


def test_concurrent_registrations_of_one_email_make_one_user(svc: AccountService) -> None:
    def attempt(i: int) -> str:
        try:
            return svc.register("race@example.com", f"n{i}", f"pw{i}")[0].id
        except Conflict:
            return "conflict"

    results = run_together(attempt, 8)
    assert results.count("conflict") == 7


def test_bad_login_says_the_same_for_unknown_email_and_wrong_password(
    svc: AccountService,
) -> None:
    svc.register("known@example.com", "k", "right")
    for email, password in (("known@example.com", "wrong"), ("nobody@example.com", "right")):
        with pytest.raises(Unauthorized) as err:
            svc.login(email, password)
        assert err.value.message == BAD_LOGIN == "Email and password do not match!"
    with pytest.raises(Unauthorized, match="do not match"):
        svc.login("", "right")


@pytest.mark.parametrize(
    "email",
    ["", "plain", "a@b", "a b@example.com", "a@example.c", "a@@example.com", "x" * 250 + "@a.io"],
)
def test_invalid_emails(svc: AccountService, email: str) -> None:
    with pytest.raises(Invalid) as err:
        svc.register(email, "n", "pw")
    assert err.value.message == f"Invalid email address: {email.strip()}!"


def test_sdk_style_email_is_valid(svc: AccountService) -> None:
    svc.register("user_a1b2c3d4@1.com", "user", SDK_PASSWORD)


def test_nickname_and_password_must_not_be_empty(svc: AccountService) -> None:
    with pytest.raises(Invalid, match="nickname"):
        svc.register("n@example.com", "  ", "pw")
    with pytest.raises(Invalid, match="password"):
        svc.register("n@example.com", "n", "")
    with pytest.raises(Invalid, match="password"):
        svc.register("n@example.com", "n", "x" * 5000)
    # Nothing was claimed by the refused attempts.
    svc.register("n@example.com", "n", "pw")


def test_sessions_expire(svc: AccountService, clock: Clock) -> None:
    _, session = svc.register("ttl@example.com", "t", "pw")
    clock.now += TTL - 1
    assert svc.authenticate(session).email == "ttl@example.com"
    clock.now += 1
    with pytest.raises(Unauthorized) as err:
        svc.authenticate(session)
    assert err.value.message == BAD_SESSION
    # A new login gives a new session that lives from now.
    _, fresh = svc.login("ttl@example.com", "pw")
    assert svc.authenticate(fresh).email == "ttl@example.com"


def test_missing_or_unknown_session(svc: AccountService) -> None:
    for token, message in ((None, NO_SESSION), ("", NO_SESSION), ("nope", BAD_SESSION)):
        with pytest.raises(Unauthorized) as err:
            svc.authenticate(token)
        assert err.value.message == message


def test_logout_ends_the_session_only(svc: AccountService) -> None:
    _, s1 = svc.register("out@example.com", "o", "pw")
    _, s2 = svc.login("out@example.com", "pw")
    svc.logout(s1)
    with pytest.raises(Unauthorized):
        svc.authenticate(s1)
    assert svc.authenticate(s2).email == "out@example.com"


def test_tokens_are_listed_masked_and_revocable(svc: AccountService, clock: Clock) -> None:
    _, session = svc.register("keys@example.com", "k", "pw")
    user = svc.authenticate(session)
    k1 = svc.new_token(user)
    clock.now += 1  # listed oldest first
    k2 = svc.new_token(user)
    listed = svc.tokens(user)
    assert [k.token for k in listed] == [mask(k1.token), mask(k2.token)]
    assert all(k1.token not in k.token and k.token.endswith("...") for k in listed)

    svc.revoke(user, k1.token)  # by the whole key
    svc.revoke(user, mask(k2.token))  # or by its listed form
    assert svc.tokens(user) == []
    for k in (k1, k2):
        assert svc.tenant_for_key(_hex(k.token)) is None
    with pytest.raises(NotFound):
        svc.revoke(user, k1.token)


def test_another_users_key_cannot_be_revoked(svc: AccountService) -> None:
    a = svc.authenticate(svc.register("ra@example.com", "a", "pw")[1])
    b = svc.authenticate(svc.register("rb@example.com", "b", "pw")[1])
    key = svc.new_token(a)
    for name in (key.token, mask(key.token)):
        with pytest.raises(NotFound):
            svc.revoke(b, name)
    assert len(svc.tokens(a)) == 1
    assert svc.tokens(b) == []


def test_no_secret_is_stored_in_clear(svc: AccountService, records: InMemoryRecords) -> None:
    user, session = svc.register("secret@example.com", "s", SDK_PASSWORD)
    _, session2 = svc.login("secret@example.com", SDK_PASSWORD)
    key = svc.new_token(user)
    dump = json.dumps([(r.pk, r.sk, dict(r.data)) for r in records._items.values()])
    for secret in (SDK_PASSWORD, json.dumps(SDK_PASSWORD)[1:-1], session, session2, key.token):
        assert secret not in dump
    stored = records.get(keys.USERS, "secret@example.com")
    assert stored is not None
    ph = stored.data["password_hash"]
    assert ph["alg"] == "scrypt" and len(bytes.fromhex(ph["salt"])) == 16
    # Only credential lookups live outside a tenant's partitions.
    pks = {r.pk for r in records._items.values()}
    assert {p for p in pks if not p.startswith("T#")} == {"USER", "SESSION", "APIKEY"}
    assert keys.account_keys(user.tenant) in pks


def test_password_hashes_are_salted_per_user() -> None:
    h = PasswordHasher(n=2**8)
    one, two = h.hash("same"), h.hash("same")
    assert one["salt"] != two["salt"] and one["hash"] != two["hash"]
    assert h.verify("same", one) and h.verify("same", two)
    assert not h.verify("Same", one)
    # The cost travels with the hash: a hasher with another default still verifies it.
    assert PasswordHasher(n=2**10).verify("same", one)
    assert not h.verify("same", {**one, "alg": "md5"})


def test_default_scrypt_cost() -> None:
    h = PasswordHasher()
    stored = h.hash(SDK_PASSWORD)
    assert stored["n"] >= 2**14 and h.verify(SDK_PASSWORD, stored)


def test_key_limit_per_user(svc: AccountService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "MAX_KEYS_PER_USER", 2)
    user = svc.authenticate(svc.register("lim@example.com", "l", "pw")[1])
    svc.new_token(user)
    svc.new_token(user)
    with pytest.raises(Invalid, match="delete one"):
        svc.new_token(user)


# --------------------------------------------------------------------------- Authenticator


def test_authenticator_looks_up_keys_that_are_not_static() -> None:
    asked: list[str] = []

    def lookup(digest: str) -> str | None:
        asked.append(digest)
        return "u-issued" if digest == _hex("issued-key") else None

    auth = Authenticator({"alice": "a-key"}, open_tenant="local", lookup=lookup)
    assert auth.tenant_for("a-key") == "alice"
    assert asked == []  # static keys never reach the store
    assert auth.tenant_for("issued-key") == "u-issued"
    assert asked == [_hex("issued-key")]  # asked by digest, never the key itself
    for bad in (None, "", "nope"):
        with pytest.raises(Unauthorized):
            auth.tenant_for(bad)


def test_open_mode_ignores_issued_keys() -> None:
    auth = Authenticator({}, open_tenant="local", lookup=lambda d: "u-issued")
    assert auth.tenant_for("anything") == "local" and auth.tenant_for(None) == "local"


def test_authenticator_with_the_service(svc: AccountService) -> None:
    auth = Authenticator({"alice": "a-key"}, open_tenant="local", lookup=svc.tenant_for_key)
    user = svc.authenticate(svc.register("auth@example.com", "a", "pw")[1])
    key = svc.new_token(user)
    assert auth.tenant_for(key.token) == user.tenant
    svc.revoke(user, key.token)
    with pytest.raises(Unauthorized):
        auth.tenant_for(key.token)


# --------------------------------------------------------------------------- Settings


def test_accounts_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir=tmp_path).accounts_enabled
    assert not Settings(data_dir=tmp_path, ragflow_accounts=False).accounts_enabled
    aws = Settings(data_dir=tmp_path, backend="aws", api_keys="p:" + "k" * 32)
    assert not aws.accounts_enabled
    monkeypatch.setenv("PASTURE_RAGFLOW_ACCOUNTS", "true")
    assert Settings(data_dir=tmp_path, backend="aws", api_keys="p:" + "k" * 32).accounts_enabled
    assert Settings(data_dir=tmp_path).ragflow_session_ttl_seconds == 7 * 24 * 3600
