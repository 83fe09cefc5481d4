"""LlamaChat conversations (llamachat-api.txt) through the app, every endpoint, success and
failure. The chat model is a FakeChatModel (deterministic, records its prompts) built through
the server's own model factory; the real model is exercised in tests/e2e."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.bootstrap import build_container
from pasture.domain.chat import ChatMessage
from pasture.services.conversations import NEW_TITLE, title_from
from tests.api.conftest import keyed_settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import fake_factory, reset

API = "/api/conversations"


@pytest.fixture(scope="module")
def fakes() -> dict[str, FakeChatModel]:
    return {}


@pytest.fixture(scope="module")
def lc(
    tmp_path_factory: pytest.TempPathFactory,
    model_cache: Path,
    api_keys: dict[str, str],
    fakes: dict[str, FakeChatModel],
) -> Iterator[TestClient]:
    s = keyed_settings(tmp_path_factory.mktemp("lc"), model_cache, api_keys)
    container = build_container(s, chat_factory=fake_factory(s, fakes))
    try:
        with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
            yield c
    finally:
        container.close()


@pytest.fixture
def fake(lc: TestClient, fakes: dict[str, FakeChatModel]) -> FakeChatModel:
    lc.app.state.container.conversations._model()  # type: ignore[attr-defined]
    return reset(fakes["smollm2-135m-instruct"], "The capital of France is Paris.")


@pytest.fixture
def alice(api_keys: dict[str, str]) -> dict[str, str]:
    return {"X-Api-Key": api_keys["alice"]}


@pytest.fixture
def bob(api_keys: dict[str, str]) -> dict[str, str]:
    return {"X-Api-Key": api_keys["bob"]}


def new_conv(lc: TestClient, headers: dict[str, str]) -> str:
    r = lc.post(API, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def send(lc: TestClient, headers: dict[str, str], cid: str, content: Any) -> Any:
    return lc.post(f"{API}/{cid}/messages", headers=headers, json={"content": content})


# ------------------------------------------------------------------ documented endpoints


def test_create_returns_id_and_default_title(lc: TestClient, alice: dict[str, str]) -> None:
    r = lc.post(API, headers=alice)  # no body at all
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "title"}
    assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
    assert body["title"] == NEW_TITLE == "New Conversation"


def test_message_reply_shape_and_title_from_first_message(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    r = send(lc, alice, cid, "What is the capital of France?")
    assert r.status_code == 200, r.text
    assert r.json() == {"role": "assistant", "content": "The capital of France is Paris."}
    conv = lc.get(f"{API}/{cid}", headers=alice).json()
    assert conv["title"] == "What is the capital of France?"
    # Only the first message names the conversation.
    send(lc, alice, cid, "And of Spain?")
    assert lc.get(f"{API}/{cid}", headers=alice).json()["title"] == conv["title"]


def test_full_history_goes_to_the_model_every_time(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    fake.reply = "first answer"
    assert send(lc, alice, cid, "first question").status_code == 200
    fake.reply = "second answer"
    assert send(lc, alice, cid, "second question").status_code == 200
    prompt = fake.prompts[-1]
    assert prompt[0].role == "system"
    assert prompt[1:] == [
        ChatMessage("user", "first question"),
        ChatMessage("assistant", "first answer"),
        ChatMessage("user", "second question"),
    ]


def test_history_is_cut_to_the_context_window_oldest_first(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    fake.reply = "ok"
    for i in range(6):
        assert send(lc, alice, cid, f"question {i} " + "word " * 40).status_code == 200
    # The fake counts 4 + words per message; 200 tokens hold the last turn or two only.
    fake.context_length = 260
    r = send(lc, alice, cid, "final question")
    assert r.status_code == 200, r.text
    prompt = fake.prompts[-1]
    assert prompt[-1] == ChatMessage("user", "final question")
    users = [m.content for m in prompt if m.role == "user"]
    assert 1 < len(users) < 7
    assert users[-2].startswith("question 5")  # the newest turns are the ones kept
    assert not any(u.startswith("question 0") for u in users)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 2001, "at most 2000 characters"),
        (42, "content"),
        (None, "content"),
    ],
)
def test_bad_content_is_400(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel, content: Any, fragment: str
) -> None:
    cid = new_conv(lc, alice)
    r = send(lc, alice, cid, content)
    assert r.status_code == 400
    assert set(r.json()) == {"error"}
    assert fragment in r.json()["error"]
    assert fake.prompts == []


def test_2000_characters_is_accepted(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    assert send(lc, alice, cid, "y" * 2000).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"json": {}},
        {"json": ["content"]},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    ],
)
def test_missing_or_malformed_body_is_400(
    lc: TestClient, alice: dict[str, str], kwargs: dict[str, Any]
) -> None:
    cid = new_conv(lc, alice)
    headers = {**alice, **kwargs.pop("headers", {})}
    r = lc.post(f"{API}/{cid}/messages", headers=headers, **kwargs)
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_unknown_conversation_is_404(lc: TestClient, alice: dict[str, str]) -> None:
    for cid in ("0" * 24, "not-an-object-id", "64f1a2b3c4d5e6f7a8b9c0d1"):
        r = send(lc, alice, cid, "hello")
        assert r.status_code == 404
        assert r.json() == {"error": "Conversation not found."}


def test_model_failure_is_502_and_stores_nothing(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    fake.fail_after = 0
    r = send(lc, alice, cid, "hello?")
    assert r.status_code == 502
    assert set(r.json()) == {"error"} and "backend" in r.json()["error"]
    assert lc.get(f"{API}/{cid}/messages", headers=alice).json() == []
    conv = lc.get(f"{API}/{cid}", headers=alice).json()
    assert conv["title"] == NEW_TITLE and conv["messageCount"] == 0


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "nope"}, {"X-Api-Key": ""}])
def test_missing_or_unknown_key_is_401(lc: TestClient, headers: dict[str, str]) -> None:
    for method, path in (
        ("POST", API),
        ("GET", API),
        ("POST", f"{API}/{'0' * 24}/messages"),
        ("GET", f"{API}/{'0' * 24}"),
        ("DELETE", f"{API}/{'0' * 24}"),
    ):
        r = lc.request(method, path, headers=headers, json={"content": "hi"})
        assert r.status_code == 401, (method, path)
        assert set(r.json()) == {"error"}


# ------------------------------------------------------------------ extensions


def test_list_get_messages_delete(
    lc: TestClient, alice: dict[str, str], bob: dict[str, str], fake: FakeChatModel
) -> None:
    first = new_conv(lc, alice)
    second = new_conv(lc, alice)
    send(lc, alice, second, "Tell me about sheep.\nMore lines here.")
    listed = lc.get(API, headers=alice).json()
    ids = [c["id"] for c in listed]
    assert ids.index(second) < ids.index(first)  # newest first
    entry = next(c for c in listed if c["id"] == second)
    assert entry["title"] == "Tell me about sheep."
    assert entry["messageCount"] == 2
    assert entry["createdAt"].endswith("Z")
    assert first not in [c["id"] for c in lc.get(API, headers=bob).json()]

    conv = lc.get(f"{API}/{second}", headers=alice).json()
    assert [(m["role"], m["content"]) for m in conv["messages"]] == [
        ("user", "Tell me about sheep.\nMore lines here."),
        ("assistant", "The capital of France is Paris."),
    ]
    assert lc.get(f"{API}/{second}/messages", headers=alice).json() == conv["messages"]

    assert lc.delete(f"{API}/{second}", headers=alice).status_code == 204
    assert lc.get(f"{API}/{second}", headers=alice).status_code == 404
    assert lc.get(f"{API}/{second}/messages", headers=alice).status_code == 404
    assert lc.delete(f"{API}/{second}", headers=alice).status_code == 404
    assert send(lc, alice, second, "still there?").status_code == 404


def test_another_consumers_conversation_answers_like_an_unknown_one(
    lc: TestClient, alice: dict[str, str], bob: dict[str, str], fake: FakeChatModel
) -> None:
    cid = new_conv(lc, alice)
    send(lc, alice, cid, "secret plans")
    unknown = "0" * 24
    for method, suffix, body in (
        ("POST", "/messages", {"content": "what were the plans?"}),
        ("GET", "", None),
        ("GET", "/messages", None),
        ("DELETE", "", None),
    ):
        theirs = lc.request(method, f"{API}/{cid}{suffix}", headers=bob, json=body)
        nothing = lc.request(method, f"{API}/{unknown}{suffix}", headers=bob, json=body)
        assert (theirs.status_code, theirs.json()) == (nothing.status_code, nothing.json())
        assert theirs.status_code == 404
    # Alice's conversation is untouched.
    assert len(lc.get(f"{API}/{cid}/messages", headers=alice).json()) == 2


def test_every_llamachat_route_is_covered_here(lc: TestClient) -> None:
    """A new /api/conversations route must be added to the isolation test above."""
    paths = {
        (m.upper(), p)
        for p, ops in lc.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        if p.startswith(API)
        for m in ops
    }
    assert paths == {
        ("POST", API),
        ("GET", API),
        ("POST", f"{API}/{{conversation_id}}/messages"),
        ("GET", f"{API}/{{conversation_id}}"),
        ("GET", f"{API}/{{conversation_id}}/messages"),
        ("DELETE", f"{API}/{{conversation_id}}"),
    }


def test_concurrent_messages_keep_every_turn(
    lc: TestClient, alice: dict[str, str], fake: FakeChatModel
) -> None:
    """Turns are conditional puts on their sequence number: racing senders never overwrite."""
    container = lc.app.state.container  # type: ignore[attr-defined]
    tenant = container.authenticator.tenant_for(alice["X-Api-Key"])
    cid = new_conv(lc, alice)
    fake.delay = 0.01

    async def race() -> None:
        await asyncio.gather(
            *(container.conversations.send(tenant, cid, f"message {i}") for i in range(5))
        )

    asyncio.run(race())
    stored = [m["content"] for m in lc.get(f"{API}/{cid}/messages", headers=alice).json()]
    assert sorted(c for c in stored if c.startswith("message")) == [
        f"message {i}" for i in range(5)
    ]
    assert lc.get(f"{API}/{cid}", headers=alice).json()["messageCount"] == 10


# ------------------------------------------------------------------ titles


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("Hola, ¿cómo estás?", "Hola, ¿cómo estás?"),
        ("\n\n  first   line  \nsecond", "first line"),
        (
            "Please summarise the attached quarterly report for the board meeting tomorrow",
            "Please summarise the attached quarterly report…",
        ),
        ("x" * 80, "x" * 49 + "…"),
    ],
)
def test_title_from_first_message(content: str, title: str) -> None:
    assert title_from(content) == title
    assert len(title_from(content)) <= 50
