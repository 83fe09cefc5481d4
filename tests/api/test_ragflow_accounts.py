"""RAGFlow accounts over HTTP: register -> login -> new_token, as ragflow-sdk's test suite does."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.ragflow.accounts import DISABLED
from pasture.config import Settings
from pasture.services import keys
from pasture.services.accounts import AccountService
from tests.api.conftest import keyed_settings
from tests.helpers.llamafarm import LF, uniq

# What ragflow-sdk sends: an RSA-encrypted password that we keep opaque (newlines included).
PASSWORD = (
    "ctAseGvejiaSWWZ88T/m4FQVOpQyUvP+x7sXtdv3feqZACiQleuewkUi35E16wSd5C5QcnkkcV9cYc8TKPTRZlx\n"
    "fN33jCHRoDUW81IH9zjij/vaw8IbVyb6vuwg6MX6inOEBRRzVbRYxXOu1wkWY6SsI8X70oF9aeLFp/PzQpjoe=="
)


def email() -> str:
    return f"user_{uuid.uuid4().hex[:8]}@1.com"  # the sdk's shape


def register(c: TestClient, e: str, password: str = PASSWORD) -> Any:
    return c.post("/v1/user/register", json={"email": e, "nickname": "user", "password": password})


def login(c: TestClient, e: str, password: str = PASSWORD) -> Any:
    return c.post("/v1/user/login", json={"email": e, "password": password})


def api_key(c: TestClient) -> tuple[str, str]:
    """The sdk's fixture, step by step: (API key, session token)."""
    e = email()
    assert register(c, e).json()["code"] == 0
    r = login(c, e)
    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    session = r.headers["Authorization"]
    r = c.post("/v1/system/new_token", headers={"Authorization": session})
    body = r.json()
    assert body["code"] == 0, body
    return body["data"]["token"], session


def rf_error(r: Any) -> tuple[int, str]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"code", "message"}, body
    return body["code"], body["message"]


def test_sdk_flow_and_shapes(client: TestClient) -> None:
    e = email()
    r = register(client, e)
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0
    assert body["message"] == "user, welcome aboard!"
    assert body["data"]["email"] == e and body["data"]["nickname"] == "user"
    assert len(body["data"]["id"]) == 32 and r.headers["Authorization"]

    r = login(client, e)
    body = r.json()
    assert body["code"] == 0 and body["message"] == "Welcome back!"
    user = body["data"]
    assert user["email"] == e and user["access_token"] == r.headers["Authorization"]
    assert isinstance(user["create_time"], int) and user["create_date"].endswith(" GMT")

    session = r.headers["Authorization"]
    for header in (session, f"Bearer {session}"):  # raw, as the sdk sends it, or Bearer
        r = client.post("/v1/system/new_token", headers={"Authorization": header})
        data = r.json()["data"]
        assert set(data) == {
            "token",
            "tenant_id",
            "create_time",
            "create_date",
            "update_time",
            "update_date",
            "dialog_id",
            "source",
            "beta",
        }
        assert data["token"].startswith("ragflow-") and data["tenant_id"] == user["id"]
        assert data["dialog_id"] is None and data["source"] is None and data["beta"] is None
        assert abs(data["create_time"] / 1000 - time.time()) < 60


def test_minted_key_is_a_new_isolated_tenant(client: TestClient, api_keys: dict[str, str]) -> None:
    key, _ = api_key(client)
    other_key, _ = api_key(client)
    mine = LF(client, {"Authorization": f"Bearer {key}"})
    alice = LF(client, {"Authorization": f"Bearer {api_keys['alice']}"})
    other = LF(client, {"X-Api-Key": other_key})
    ns = uniq("acct")

    assert mine.create_project(ns, "p", template=None).status_code == 200
    assert mine.req("GET", f"/v1/projects/{ns}/p").status_code == 200
    # Neither a static tenant nor another account sees it.
    assert alice.req("GET", f"/v1/projects/{ns}/p").status_code == 404
    assert other.req("GET", f"/v1/projects/{ns}/p").status_code == 404
    assert alice.req("GET", f"/v1/projects/{ns}").json()["total"] == 0
    # And the account does not see a static tenant's project of the same namespace.
    assert alice.create_project(ns, "a-only", template=None).status_code == 200
    assert mine.req("GET", f"/v1/projects/{ns}/a-only").status_code == 404
    assert [p["name"] for p in mine.req("GET", f"/v1/projects/{ns}").json()["projects"]] == ["p"]
    # Static keys still work as before.
    assert alice.req("GET", f"/v1/projects/{ns}/a-only").status_code == 200


def test_duplicate_email(client: TestClient) -> None:
    e = email()
    assert register(client, e).json()["code"] == 0
    same = e.replace("user_", "USER_")  # emails are unique whatever their case
    assert rf_error(register(client, same)) == (102, f"Email: {same} has already registered!")
    # The original password still logs in; the second one does not.
    assert login(client, e).json()["code"] == 0
    assert rf_error(login(client, e, "other"))[0] == 109


def test_bad_login_does_not_tell_which_emails_exist(client: TestClient) -> None:
    e = email()
    register(client, e)
    wrong = rf_error(login(client, e, PASSWORD + "x"))
    unknown = rf_error(login(client, email()))
    assert wrong == unknown == (109, "Email and password do not match!")


def test_validation(client: TestClient) -> None:
    code, msg = rf_error(
        client.post(
            "/v1/user/register", json={"email": "not-an-email", "nickname": "n", "password": "p"}
        )
    )
    assert (code, msg) == (102, "Invalid email address: not-an-email!")
    code, msg = rf_error(
        client.post("/v1/user/register", json={"email": email(), "nickname": "", "password": "p"})
    )
    assert code == 102 and "nickname" in msg
    code, msg = rf_error(
        client.post("/v1/user/register", json={"email": email(), "nickname": "n", "password": ""})
    )
    assert code == 102 and "password" in msg
    code, msg = rf_error(client.post("/v1/user/register", json={"email": email()}))
    assert code == 101 and "nickname" in msg
    code, msg = rf_error(
        client.post("/v1/user/register", json={"email": 5, "nickname": "n", "password": "p"})
    )
    assert code == 101 and "email" in msg
    code, msg = rf_error(client.post("/v1/user/login", json={"email": email()}))
    assert code == 101 and "password" in msg


@pytest.mark.parametrize("path", ["/v1/user/register", "/v1/user/login"])
@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_bodies_are_a_code_never_a_500(client: TestClient, path: str, raw: bytes) -> None:
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    code, msg = rf_error(r)
    assert code != 0 and msg


def test_empty_body_is_missing_arguments(client: TestClient) -> None:
    code, msg = rf_error(client.post("/v1/user/login"))
    assert code == 101 and "email" in msg


def test_new_token_needs_a_live_session(client: TestClient, api_keys: dict[str, str]) -> None:
    code, msg = rf_error(client.post("/v1/system/new_token"))
    assert code == 109 and "/v1/user/login" in msg
    for bad in ("nope", "Bearer nope", f"Bearer {api_keys['alice']}", "Bearer"):
        code, msg = rf_error(client.post("/v1/system/new_token", headers={"Authorization": bad}))
        assert code == 109 and "invalid or has expired" in msg, (bad, msg)
    # The session token is not an API key either.
    _, session = api_key(client)
    r = client.get("/v1/projects/x", headers={"Authorization": f"Bearer {session}"})
    assert r.status_code == 401


def test_expired_session(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    container = client.app.state.container  # type: ignore[attr-defined]
    now = [time.time()]
    ttl = container.settings.ragflow_session_ttl_seconds
    accounts = AccountService(container.records, session_ttl=ttl, clock=lambda: now[0])
    monkeypatch.setattr(container, "accounts", accounts)
    e = email()
    register(client, e)
    session = login(client, e).headers["Authorization"]
    now[0] += ttl - 1
    r = client.post("/v1/system/new_token", headers={"Authorization": session})
    assert r.json()["code"] == 0
    key = r.json()["data"]["token"]
    now[0] += 2
    code, msg = rf_error(client.post("/v1/system/new_token", headers={"Authorization": session}))
    assert code == 109 and "expired" in msg
    # A key outlives the session that minted it.
    assert client.get("/v1/projects/x", headers={"X-Api-Key": key}).status_code == 200


def test_token_list_and_revoke(client: TestClient) -> None:
    key, session = api_key(client)
    auth = {"Authorization": session}
    second = client.post("/v1/system/new_token", headers=auth).json()["data"]["token"]
    listed = client.get("/v1/system/token_list", headers=auth).json()
    assert listed["code"] == 0
    tokens = [t["token"] for t in listed["data"]]
    assert tokens == [key[:16] + "...", second[:16] + "..."]  # masked: never the whole key
    assert key not in json.dumps(listed) and second not in json.dumps(listed)

    # Another account cannot revoke it.
    _, other_session = api_key(client)
    code, _ = rf_error(
        client.delete(f"/v1/system/token/{key}", headers={"Authorization": other_session})
    )
    assert code == 102
    assert client.get("/v1/projects/x", headers={"X-Api-Key": key}).status_code == 200

    assert client.delete(f"/v1/system/token/{key}", headers=auth).json() == {
        "code": 0,
        "data": True,
    }
    r = client.get("/v1/projects/x", headers={"X-Api-Key": key})
    assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}
    # By its listed (masked) form too.
    assert client.delete(f"/v1/system/token/{tokens[1]}", headers=auth).json()["code"] == 0
    assert client.get("/v1/projects/x", headers={"X-Api-Key": second}).status_code == 401
    assert client.get("/v1/system/token_list", headers=auth).json() == {"code": 0, "data": []}
    code, _ = rf_error(client.delete(f"/v1/system/token/{key}", headers=auth))
    assert code == 102
    code, _ = rf_error(client.get("/v1/system/token_list"))
    assert code == 109


def test_logout(client: TestClient) -> None:
    _, session = api_key(client)
    auth = {"Authorization": session}
    assert client.get("/v1/user/logout", headers=auth).json() == {"code": 0, "data": True}
    code, _ = rf_error(client.post("/v1/system/new_token", headers=auth))
    assert code == 109
    code, _ = rf_error(client.get("/v1/user/logout", headers=auth))
    assert code == 109


def test_no_secret_stored_in_clear(client: TestClient) -> None:
    e = email()
    register(client, e)
    records = client.app.state.container.records  # type: ignore[attr-defined]
    item = records.get(keys.USERS, e.lower())
    assert item is not None
    text = json.dumps(dict(item.data))
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text
    assert item.data["password_hash"]["alg"] == "scrypt"
    key, session = api_key(client)
    digest_sk = [
        r.sk for r in records.query(keys.account_keys(_tenant_of(client, key)), "", limit=None)
    ]
    assert len(digest_sk) == 1 and key not in digest_sk[0]
    assert records.get(keys.API_KEYS, digest_sk[0]) is not None
    assert session not in json.dumps(
        [dict(r.data) for r in records.query(keys.SESSIONS, "", limit=None)]
    )


def _tenant_of(client: TestClient, key: str) -> str:
    tenant: str = client.app.state.container.authenticator.tenant_for(key)  # type: ignore[attr-defined]
    assert tenant.startswith("u-") and len(tenant) == 34
    return tenant


def _disabled_app(
    tmp_path: Path, model_cache: Path, keys_: dict[str, str], **kw: Any
) -> TestClient:
    s = keyed_settings(tmp_path, model_cache, keys_, ragflow_accounts=False, **kw)
    return TestClient(create_app(settings=s), raise_server_exceptions=False)


def test_disabled_setting(tmp_path: Path, model_cache: Path, api_keys: dict[str, str]) -> None:
    with _disabled_app(tmp_path, model_cache, api_keys) as c:
        assert not c.app.state.container.settings.accounts_enabled  # type: ignore[attr-defined]
        for r in (
            register(c, email()),
            login(c, email()),
            c.post("/v1/system/new_token", headers={"Authorization": "x"}),
            c.get("/v1/system/token_list"),
            c.delete("/v1/system/token/x"),
            c.get("/v1/user/logout"),
        ):
            assert rf_error(r) == (108, DISABLED)
        assert "PASTURE_RAGFLOW_ACCOUNTS=true" in DISABLED
        # Static keys are unaffected.
        h = {"X-Api-Key": api_keys["alice"]}
        assert c.get("/v1/projects/x", headers=h).status_code == 200


def test_minted_keys_stop_working_when_accounts_are_turned_off(
    tmp_path: Path, model_cache: Path, api_keys: dict[str, str]
) -> None:
    s = keyed_settings(tmp_path, model_cache, api_keys, ragflow_accounts=True)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        key, _ = api_key(c)
        assert c.get("/v1/projects/x", headers={"X-Api-Key": key}).status_code == 200
    with _disabled_app(tmp_path, model_cache, api_keys) as c:
        assert c.get("/v1/projects/x", headers={"X-Api-Key": key}).status_code == 401


def test_open_mode_still_serves_the_sdk_flow(tmp_path: Path, model_cache: Path) -> None:
    s = Settings(data_dir=tmp_path, model_cache_dir=model_cache, chat_preload=False)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        key, _ = api_key(c)
        # Everyone is the open tenant: the key works, and so does no key at all.
        assert (
            c.post("/v1/projects/me", json={"name": "p"}, headers={"X-Api-Key": key}).status_code
            == 200
        )
        assert c.get("/v1/projects/me/p").status_code == 200
