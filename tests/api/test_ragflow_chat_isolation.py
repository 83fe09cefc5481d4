"""Tenant isolation of RAGFlow chat assistants, sessions and completions.

Every route under /api/v1/chats and /api/v1/chat with an id in its path is discovered from the
app built from GROUPS; a route this file does not know fails until it is described in ROUTES.
Tenant B, given tenant A's ids, must get exactly the answer B gets for unknown ids of the same
shape (ids replaced by placeholders before comparing), with a non-zero code, and A's chat and
session must come out untouched.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.groups import GROUPS
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import RF, fake_client, reset, uniq

SECRET = b"Tenant A secret plans: the treasure is buried under the old oak tree.\n"
QUESTION = "Where is the treasure buried?"
FAKES: dict[str, FakeChatModel] = {}
CAROL = "ck-" + secrets.token_hex(16)  # a third tenant that deletes everything it has

# Each route with an id in its path -> the JSON body it is called with ("{chat_id}" and
# "{session_id}" inside are replaced like the path's). Bodies are valid, so the lookup (not
# the validator) decides the answer.
ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("PUT", "/api/v1/chats/{chat_id}"): {"name": "b_took_it"},
    ("DELETE", "/api/v1/chat/{chat_id}"): None,
    ("POST", "/api/v1/chats/{chat_id}/sessions"): {"name": "b session"},
    ("GET", "/api/v1/chats/{chat_id}/sessions"): None,
    ("DELETE", "/api/v1/chats/{chat_id}/sessions"): {"ids": ["{session_id}"]},
    ("POST", "/api/v1/chat/{chat_id}/session"): {"name": "b session"},
    ("GET", "/api/v1/chat/{chat_id}/session"): None,
    ("PUT", "/api/v1/chats/{chat_id}/sessions/{session_id}"): {"name": "b_took_it"},
    ("PUT", "/api/v1/chat/{chat_id}/session/{session_id}"): {"name": "b_took_it"},
    ("DELETE", "/api/v1/chat/{chat_id}/session/{session_id}"): None,
    ("POST", "/api/v1/chats/{chat_id}/completions"): {
        "question": QUESTION,
        "session_id": "{session_id}",
    },
    ("POST", "/api/v1/chat/{chat_id}/session/{session_id}/completion"): {
        "question": QUESTION,
        "stream": True,
    },
}
ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


def discovered() -> list[tuple[str, str]]:
    paths = create_app(GROUPS).openapi()["paths"]
    out = [
        (m.upper(), path)
        for path, ops in paths.items()
        if "{" in path and (path.startswith("/api/v1/chats/") or path.startswith("/api/v1/chat/"))
        for m in ops
    ]
    return sorted(out, key=lambda mp: (ORDER[mp[0]], mp[1]))


DISCOVERED = discovered()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("rf_chat_iso")
    FAKES.setdefault("smollm2-135m-instruct", FakeChatModel("smollm2-135m-instruct"))
    reset(FAKES["smollm2-135m-instruct"], "The treasure is buried under the old oak tree.")
    with fake_client(data, model_cache, {**api_keys, "carol": CAROL}, FAKES) as c:
        yield c


@pytest.fixture(scope="module")
def a(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["alice"])


@pytest.fixture(scope="module")
def b(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["bob"])


@pytest.fixture(scope="module")
def owned(a: RF) -> dict[str, Any]:
    """A's dataset, chat and a session holding one answered turn."""
    ds = a.parsed_dataset({"secret.txt": SECRET})
    chat = a.chat([ds], name=uniq("a_chat"))
    session = a.session(chat["id"], name="a session")
    answer = a.ok(
        "POST",
        f"/chats/{chat['id']}/completions",
        json={"question": QUESTION, "session_id": session["id"], "stream": False},
    )
    assert "oak tree" in answer["answer"]
    return {
        "dataset_id": ds,
        "chat_id": chat["id"],
        "session_id": session["id"],
        "chat": chat,
        "messages": a.sessions(chat["id"])[0]["messages"],
    }


@pytest.fixture(scope="module")
def b_chat(b: RF) -> str:
    """B's own chat (no datasets), for B asking its own chat about A's session ids."""
    return str(b.chat([], name=uniq("b_chat"))["id"])


def unknown() -> str:
    return uuid.uuid1().hex  # the shape of a real id


def call(rf: RF, method: str, template: str, ids: dict[str, str]) -> tuple[int, str, str]:
    """(HTTP status, content type, body text with the ids replaced by placeholders)."""
    path = template
    for k, v in ids.items():
        path = path.replace("{" + k + "}", v)
    assert "{" not in path, f"add a value for {template}"
    spec = ROUTES[(method, template)]
    kw: dict[str, Any] = {}
    if spec is not None:
        text = json.dumps(spec)
        for k, v in ids.items():
            text = text.replace("{" + k + "}", v)
        kw["json"] = json.loads(text)
    r = rf.req(method, path, **kw)
    body = r.text
    for k, v in ids.items():
        body = body.replace(v, f"<{k}>")
    return r.status_code, r.headers.get("content-type", ""), body


def assert_a_untouched(a: RF, owned: dict[str, Any]) -> None:
    chats = a.ok("GET", "/chats", params={"id": owned["chat_id"]})
    assert chats == [owned["chat"]]
    sessions = a.sessions(owned["chat_id"])
    assert [(s["id"], s["name"]) for s in sessions] == [(owned["session_id"], "a session")]
    assert sessions[0]["messages"] == owned["messages"]


def test_every_chat_route_with_an_id_is_described() -> None:
    unknown_routes = [r for r in DISCOVERED if r not in ROUTES]
    assert not unknown_routes, f"describe these routes in ROUTES: {unknown_routes}"
    assert len(DISCOVERED) == len(ROUTES) >= 12


@pytest.mark.parametrize(
    ("method", "template"), DISCOVERED, ids=[f"{m} {t}" for m, t in DISCOVERED]
)
def test_b_with_a_ids_gets_the_unknown_id_answer(
    method: str, template: str, a: RF, b: RF, owned: dict[str, Any]
) -> None:
    if (method, template) not in ROUTES:
        pytest.fail(f"describe {method} {template} in ROUTES")
    on_a = call(
        b, method, template, {"chat_id": owned["chat_id"], "session_id": owned["session_id"]}
    )
    on_unknown = call(b, method, template, {"chat_id": unknown(), "session_id": unknown()})
    assert on_a == on_unknown
    status, ctype, body = on_a
    assert status == 200 and ctype == "application/json", on_a
    assert json.loads(body)["code"] != 0, on_a
    assert "oak" not in body and "secret" not in body
    assert_a_untouched(a, owned)


# Routes that name a session, in the path or in the body.
SESSION_ROUTES = [
    r for r in DISCOVERED if "{session_id}" in r[1] or "{session_id}" in json.dumps(ROUTES.get(r))
]


@pytest.mark.parametrize(
    ("method", "template"), SESSION_ROUTES, ids=[f"{m} {t}" for m, t in SESSION_ROUTES]
)
def test_b_own_chat_with_a_session_id_gets_the_unknown_id_answer(
    method: str, template: str, a: RF, b: RF, owned: dict[str, Any], b_chat: str
) -> None:
    """The session lookup is the tenant's own too, not only the chat lookup."""
    on_a = call(b, method, template, {"chat_id": b_chat, "session_id": owned["session_id"]})
    on_unknown = call(b, method, template, {"chat_id": b_chat, "session_id": unknown()})
    assert on_a == on_unknown
    assert on_a[1] == "application/json" and json.loads(on_a[2])["code"] != 0, on_a
    assert "oak" not in on_a[2]
    assert_a_untouched(a, owned)


def test_session_routes_are_covered() -> None:
    assert len(SESSION_ROUTES) >= 6
    assert ("POST", "/api/v1/chats/{chat_id}/completions") in SESSION_ROUTES


def test_b_lists_never_show_a_chats(a: RF, b: RF, owned: dict[str, Any], b_chat: str) -> None:
    for path in ("/chats", "/chat"):
        listed = b.ok("GET", path)
        assert [c["id"] for c in listed] == [b_chat]
        assert owned["chat_id"] not in json.dumps(listed)
        on_a = b.fail("GET", path, params={"id": owned["chat_id"]})
        assert (
            on_a
            == b.fail("GET", path, params={"id": unknown()})
            == (
                102,
                "The chat doesn't exist",
            )
        )
        assert b.fail("GET", path, params={"name": owned["chat"]["name"]}) == (
            102,
            "The chat doesn't exist",
        )
    # Names are per tenant: B may use A's chat name.
    same = b.chat([], name=owned["chat"]["name"])
    b.ok("DELETE", "/chats", json={"ids": [same["id"]]})
    assert_a_untouched(a, owned)


def test_b_cannot_delete_a_chats(a: RF, b: RF, owned: dict[str, Any], b_chat: str) -> None:
    x = unknown()
    on_a = b.fail("DELETE", "/chats", json={"ids": [owned["chat_id"]]})
    on_unknown = b.fail("DELETE", "/chats", json={"ids": [x]})
    assert on_a[0] == on_unknown[0] != 0
    assert on_a[1].replace(owned["chat_id"], "<id>") == on_unknown[1].replace(x, "<id>")
    # Mixed with B's own id: nothing is deleted at all.
    b.fail("DELETE", "/chats", json={"ids": [b_chat, owned["chat_id"]]})
    assert [c["id"] for c in b.ok("GET", "/chats")] == [b_chat]
    assert_a_untouched(a, owned)


def test_deleting_every_chat_of_a_tenant_leaves_other_tenants_alone(
    client: TestClient, a: RF, owned: dict[str, Any]
) -> None:
    carol = RF(client, CAROL)
    carol.chat([])
    assert carol.ok("DELETE", "/chats") is None  # ids omitted: every chat of carol's
    assert carol.ok("GET", "/chats") == []
    assert_a_untouched(a, owned)


def test_b_cannot_use_a_datasets_or_name_a_chat_in_the_body(
    a: RF, b: RF, owned: dict[str, Any], b_chat: str
) -> None:
    ds, x = owned["dataset_id"], unknown()

    def both(method: str, path: str, make: Any) -> None:
        on_a = b.fail(method, path, json=make(ds))
        on_unknown = b.fail(method, path, json=make(x))
        assert on_a[0] == on_unknown[0] != 0
        assert on_a[1].replace(ds, "<id>") == on_unknown[1].replace(x, "<id>")

    both("POST", "/chats", lambda i: {"name": uniq("b"), "dataset_ids": [i]})
    both("POST", "/chat", lambda i: {"name": uniq("b"), "knowledgebases": [{"id": i}]})
    both("PUT", f"/chats/{b_chat}", lambda i: {"dataset_ids": [i]})
    on_a = b.fail("PUT", "/chat", json={"id": owned["chat_id"], "name": "b_took_it"})
    on_unknown = b.fail("PUT", "/chat", json={"id": x, "name": "b_took_it"})
    assert on_a[0] == on_unknown[0] != 0
    assert on_a[1].replace(owned["chat_id"], "<id>") == on_unknown[1].replace(x, "<id>")
    assert [c["id"] for c in b.ok("GET", "/chats")] == [b_chat]
    assert_a_untouched(a, owned)


def test_b_own_chat_never_retrieves_from_a_dataset(
    a: RF, b: RF, owned: dict[str, Any], b_chat: str
) -> None:
    fake = reset(FAKES["smollm2-135m-instruct"], "I cannot say.")
    data = b.ok(
        "POST", f"/chats/{b_chat}/completions", json={"question": QUESTION, "stream": False}
    )
    assert data["reference"]["chunks"] == []
    assert all("oak" not in m.content for m in fake.prompts[-1])
    assert_a_untouched(a, owned)
