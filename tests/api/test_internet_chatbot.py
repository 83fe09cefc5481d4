"""The llama_internet_chatbot dialect over HTTP: chats, conversation rows and SSE inference,
with a fake chat model (deterministic words, recorded prompts; tests/helpers/fakes.py).

Wire details checked byte for byte: frames are `data:<token>` + blank line (no space after the
colon), a chat without messages answers one `data:No messages found in database` frame,
errors are Rocket's `{"error": {"code", "reason", "description"}}`. Web answers are in
test_internet_answers.py; here the search engine is a closed local port, so any web search
fails at once (and the answer says so).
"""

from __future__ import annotations

import asyncio
import re
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.internet_chatbot.conversations import frame
from pasture.bootstrap import Container, build_container
from pasture.domain.chat import Completion, TextDelta
from pasture.services.chatbot import MAX_MESSAGE_CHARS, ChatbotService
from tests.api.conftest import keyed_settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.process import free_port
from tests.helpers.ragflow_chats import fake_factory, reset

MODEL = "smollm2-135m-instruct"
REPLY = "Llamas hum when they are curious."
NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
FAKES: dict[str, FakeChatModel] = {}
SYSTEM_START = "You are [[Assistant]]"


class Bot:
    """The chatbot API as one tenant."""

    def __init__(self, client: TestClient, key: str | None) -> None:
        self.c = client
        self.h = {"X-Api-Key": key} if key else {}

    def req(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.c.request(method, path, headers={**self.h, **kw.pop("headers", {})}, **kw)

    def chat(self, name: str = "Llama talk") -> dict[str, Any]:
        r = self.req("POST", "/chats/create", json={"name": name})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def say(self, chat_id: str, message: str, role: str = "Human") -> dict[str, Any]:
        r = self.req(
            "POST",
            "/conversations/create",
            json={"chat_id": chat_id, "role": role, "message": message},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def rows(self, chat_id: str) -> list[dict[str, Any]]:
        r = self.req("GET", "/conversations/", params={"chat_id": chat_id})
        assert r.status_code == 200, r.text
        return list(r.json())

    def infer(self, chat_id: str, internet: bool = False) -> httpx.Response:
        kind = "inference_internet" if internet else "inference"
        return self.req("GET", f"/conversations/{kind}/{chat_id}")


def rocket(status: int, reason: str, description: str | None = None) -> Any:
    class _Shape:
        def __eq__(self, other: object) -> bool:
            if not isinstance(other, dict) or set(other) != {"error"}:
                return False
            e = other["error"]
            return (
                e.get("code") == status
                and e.get("reason") == reason
                and isinstance(e.get("description"), str)
                and (description is None or description in e["description"])
            )

        def __repr__(self) -> str:
            return f"<rocket error {status} {reason} {description!r}>"

    return _Shape()


@pytest.fixture(scope="module")
def container(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[Container]:
    s = keyed_settings(
        tmp_path_factory.mktemp("ichat"),
        model_cache,
        api_keys,
        duckduckgo_url=f"http://127.0.0.1:{free_port()}/html/",  # nothing listens there
        chat_max_tokens=64,
    )
    c = build_container(s, chat_factory=fake_factory(s, FAKES))
    yield c
    c.close()


@pytest.fixture(scope="module")
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def fake(client: TestClient) -> FakeChatModel:
    FAKES.setdefault(MODEL, FakeChatModel(MODEL))
    return reset(FAKES[MODEL], REPLY)


@pytest.fixture
def alice(client: TestClient, api_keys: dict[str, str]) -> Bot:
    return Bot(client, api_keys["alice"])


@pytest.fixture
def bob(client: TestClient, api_keys: dict[str, str]) -> Bot:
    return Bot(client, api_keys["bob"])


def unknown() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------- chats


def test_create_get_and_list_chats(alice: Bot, bob: Bot) -> None:
    r = alice.req("POST", "/chats/create", json={"name": "Chat 1", "extra": "ignored"})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    chat = r.json()
    assert set(chat) == {"id", "name", "created_at", "updated_at"}
    assert uuid.UUID(chat["id"]) and chat["name"] == "Chat 1"
    assert NAIVE_ISO.match(chat["created_at"]) and chat["updated_at"] == chat["created_at"]

    assert alice.req("GET", f"/chats/{chat['id']}").json() == chat
    # Any spelling of the UUID finds it (Rocket parses the path segment as a Uuid).
    assert alice.req("GET", f"/chats/{chat['id'].upper()}").json() == chat
    for path in ("/chats/", "/chats"):
        r = alice.req("GET", path)
        assert r.status_code == 200 and chat in r.json(), path
    assert chat not in bob.req("GET", "/chats/").json()


def test_list_is_the_first_20_in_creation_order(
    tmp_path: Path, model_cache: Path, api_keys: dict[str, str]
) -> None:
    s = keyed_settings(tmp_path, model_cache, api_keys)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        me = Bot(c, api_keys["alice"])
        ids = [me.chat(f"c{i}")["id"] for i in range(22)]
        listed = me.req("GET", "/chats/").json()
        assert [x["id"] for x in listed] == ids[:20]


@pytest.mark.parametrize(
    ("body", "status", "reason", "says"),
    [
        ({}, 422, "Unprocessable Entity", "`name` is required"),
        ({"name": ""}, 422, "Unprocessable Entity", "`name` must not be empty"),
        ({"name": "   "}, 422, "Unprocessable Entity", "`name` must not be empty"),
        ({"name": "x" * 201}, 422, "Unprocessable Entity", "at most 200"),
        ({"name": 5}, 422, "Unprocessable Entity", "`name`"),
        ({"name": None}, 422, "Unprocessable Entity", "`name`"),
        (["name"], 422, "Unprocessable Entity", "JSON object"),
    ],
)
def test_create_chat_refuses_bad_bodies(
    alice: Bot, body: Any, status: int, reason: str, says: str
) -> None:
    r = alice.req("POST", "/chats/create", json=body)
    assert (r.status_code, r.json()) == (status, rocket(status, reason, says))


def test_malformed_json_is_400(alice: Bot) -> None:
    r = alice.req(
        "POST",
        "/chats/create",
        content=b'{"name": ',
        headers={"content-type": "application/json"},
    )
    assert (r.status_code, r.json()) == (400, rocket(400, "Bad Request", "not valid JSON"))


def test_name_of_200_characters_is_fine(alice: Bot) -> None:
    assert alice.chat("x" * 200)["name"] == "x" * 200


def test_unknown_malformed_and_other_tenants_chat_ids_are_404(alice: Bot, bob: Bot) -> None:
    chat = alice.chat()
    nobody = unknown()
    answers = {}
    for who, cid in (("other", chat["id"]), ("unknown", nobody)):
        for method, path in (
            ("GET", f"/chats/{cid}"),
            ("PUT", f"/chats/update/{cid}"),
            ("DELETE", f"/chats/delete/{cid}"),
            ("GET", f"/conversations/inference/{cid}"),
            ("GET", f"/conversations/inference_internet/{cid}"),
            ("GET", f"/conversations/?chat_id={cid}"),
        ):
            r = bob.req(method, path, json={"name": "mine now"} if method == "PUT" else None)
            assert r.status_code == 404, (method, path, r.text)
            assert r.headers["content-type"] == "application/json"
            answers[(who, method, path.replace(cid, "<id>"))] = r.json()
            assert r.json() == rocket(404, "Not Found", "not found")
    for (who, method, path), body in answers.items():
        if who == "other":
            assert str(body).replace(chat["id"], "<id>") == str(
                answers[("unknown", method, path)]
            ).replace(nobody, "<id>")
    r = bob.req(
        "POST",
        "/conversations/create",
        json={"chat_id": chat["id"], "role": "Human", "message": "hi"},
    )
    assert (r.status_code, r.json()) == (404, rocket(404, "Not Found", chat["id"]))
    # Alice's chat is untouched, still named as it was and still empty.
    assert alice.req("GET", f"/chats/{chat['id']}").json() == chat
    assert alice.rows(chat["id"]) == []
    for bad in ("not-a-uuid", "123", "create"):
        r = alice.req("GET", f"/chats/{bad}")
        assert (r.status_code, r.json()) == (404, rocket(404, "Not Found"))


def test_update_chat(alice: Bot) -> None:
    chat = alice.chat("before")
    r = alice.req(
        "PUT",
        f"/chats/update/{chat['id']}",
        json={"name": "after", "updated_at": "2023-08-05T14:48:00.123456"},
    )
    assert r.status_code == 200
    assert r.json() == {**chat, "name": "after", "updated_at": "2023-08-05T14:48:00.123456"}
    assert alice.req("GET", f"/chats/{chat['id']}").json() == r.json()
    # The reference's example carries a Z; offsets are converted to UTC.
    r = alice.req(
        "PUT",
        f"/chats/update/{chat['id']}",
        json={"name": "z", "updated_at": "2023-08-05T16:48:00.000+02:00"},
    )
    assert r.json()["updated_at"] == "2023-08-05T14:48:00.000000"
    # Without updated_at: now.
    r = alice.req("PUT", f"/chats/update/{chat['id']}", json={"name": "now"})
    assert r.status_code == 200 and r.json()["updated_at"] > "2024"
    assert NAIVE_ISO.match(r.json()["updated_at"]) and r.json()["created_at"] == chat["created_at"]
    for body, says in (
        ({"name": "x", "updated_at": "yesterday"}, "ISO 8601"),
        ({"name": ""}, "`name` must not be empty"),
        ({"updated_at": "2023-08-05T14:48:00"}, "`name` is required"),
    ):
        r = alice.req("PUT", f"/chats/update/{chat['id']}", json=body)
        assert (r.status_code, r.json()) == (422, rocket(422, "Unprocessable Entity", says))
    assert alice.req("GET", f"/chats/{chat['id']}").json()["name"] == "now"


def test_delete_chat_removes_its_rows(alice: Bot) -> None:
    chat = alice.chat("doomed")
    other = alice.chat("kept")
    alice.say(chat["id"], "first")
    alice.say(chat["id"], "second", role="Assistant")
    kept = alice.say(other["id"], "stays")
    r = alice.req("DELETE", f"/chats/delete/{chat['id']}")
    assert r.status_code == 200 and r.json() == chat
    assert alice.req("GET", f"/chats/{chat['id']}").status_code == 404
    assert alice.req("DELETE", f"/chats/delete/{chat['id']}").status_code == 404
    listed = alice.req("GET", "/conversations/").json()
    assert all(x["chat_id"] != chat["id"] for x in listed)
    assert kept in listed
    assert alice.req("GET", f"/conversations/?chat_id={chat['id']}").status_code == 404


def test_wrong_method_and_unknown_paths(alice: Bot) -> None:
    r = alice.req("POST", "/chats/")
    assert (r.status_code, r.json()) == (405, rocket(405, "Method Not Allowed"))
    r = alice.req("GET", "/conversations/nothing/here")
    assert (r.status_code, r.json()) == (
        404,
        rocket(404, "Not Found", "The requested resource could not be found."),
    )


# ---------------------------------------------------------------------- rows


def test_create_and_list_rows(alice: Bot, bob: Bot) -> None:
    chat = alice.chat()
    r = alice.req(
        "POST",
        "/conversations/create",
        json={"chat_id": chat["id"], "role": "Human", "message": "Hello, [[Assistant]]."},
    )
    assert r.status_code == 201
    row = r.json()
    assert set(row) == {"id", "role", "chat_id", "message", "created_at", "updated_at"}
    assert uuid.UUID(row["id"]) and NAIVE_ISO.match(row["created_at"])
    assert (row["role"], row["chat_id"], row["message"]) == (
        "Human",
        chat["id"],
        "Hello, [[Assistant]].",
    )
    second = alice.say(chat["id"], "Hello. How may I help you today?", role="assistant")
    assert second["role"] == "Assistant"  # any case; stored as the original spells it
    # Exactly what was sent: no greeting rows seeded (the original's bug).
    assert alice.rows(chat["id"]) == [row, second]
    for path in ("/conversations/", "/conversations"):
        listed = alice.req("GET", path).json()
        assert row in listed and second in listed
        assert listed.index(row) < listed.index(second)
    assert row not in bob.req("GET", "/conversations/").json()


def test_listing_all_rows_stops_at_100(
    tmp_path: Path, model_cache: Path, api_keys: dict[str, str]
) -> None:
    s = keyed_settings(tmp_path, model_cache, api_keys)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        me = Bot(c, api_keys["alice"])
        a, b = me.chat("a")["id"], me.chat("b")["id"]
        for i in range(60):
            me.say(a, f"a{i}")
            me.say(b, f"b{i}")
        listed = me.req("GET", "/conversations/").json()
        # Chats in creation order, each chat's rows in time order (one partition query).
        assert [x["message"] for x in listed] == [f"a{i}" for i in range(60)] + [
            f"b{i}" for i in range(40)
        ]
        assert len(me.rows(b)) == 60


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"role": "user"}, "`role` must be Human or Assistant"),
        ({"role": "system"}, "`role` must be Human or Assistant"),
        ({"role": "Fetched Information"}, "`role` must be Human or Assistant"),
        ({"role": ""}, "`role` must be Human or Assistant"),
        ({"message": ""}, "`message` must not be empty"),
        ({"message": "x" * (MAX_MESSAGE_CHARS + 1)}, f"at most {MAX_MESSAGE_CHARS}"),
        ({"message": 3}, "`message`"),
        ({"chat_id": "nope"}, "`chat_id` must be a UUID"),
        ({"role": None}, "`role`"),
    ],
)
def test_bad_rows_are_422(alice: Bot, change: dict[str, Any], says: str) -> None:
    chat = alice.chat()
    body = {"chat_id": chat["id"], "role": "Human", "message": "hi", **change}
    r = alice.req("POST", "/conversations/create", json=body)
    assert (r.status_code, r.json()) == (422, rocket(422, "Unprocessable Entity", says))
    assert alice.rows(chat["id"]) == []


def test_missing_fields_and_unknown_chat(alice: Bot) -> None:
    r = alice.req("POST", "/conversations/create", json={"message": "hi"})
    assert (r.status_code, r.json()) == (
        422,
        rocket(422, "Unprocessable Entity", "`chat_id` is required; `role` is required"),
    )
    nobody = unknown()
    r = alice.req(
        "POST", "/conversations/create", json={"chat_id": nobody, "role": "Human", "message": "hi"}
    )
    assert (r.status_code, r.json()) == (404, rocket(404, "Not Found", f"chat {nobody} not found"))


def test_keys_are_required(client: TestClient, alice: Bot) -> None:
    chat = alice.chat()
    anonymous = Bot(client, None)
    wrong = Bot(client, "not-a-key")
    for who in (anonymous, wrong):
        for method, path, body in (
            ("GET", "/chats/", None),
            ("GET", f"/chats/{chat['id']}", None),
            ("POST", "/chats/create", {"name": "x"}),
            ("PUT", f"/chats/update/{chat['id']}", {"name": "x"}),
            ("DELETE", f"/chats/delete/{chat['id']}", None),
            (
                "POST",
                "/conversations/create",
                {"chat_id": chat["id"], "role": "Human", "message": "x"},
            ),
            ("GET", "/conversations/", None),
            ("GET", f"/conversations/inference/{chat['id']}", None),
            ("GET", f"/conversations/inference_internet/{chat['id']}", None),
        ):
            r = who.req(method, path, json=body)
            assert (r.status_code, r.json()) == (401, rocket(401, "Unauthorized")), (method, path)
    assert alice.req("GET", f"/chats/{chat['id']}").json() == chat


# ---------------------------------------------------------------------- inference


def test_inference_streams_raw_token_frames_and_stores_the_answer(
    alice: Bot, fake: FakeChatModel
) -> None:
    chat = alice.chat()
    alice.say(chat["id"], "Hello, [[Assistant]].")
    alice.say(chat["id"], "Hello. How may I help you today?", role="Assistant")
    alice.say(chat["id"], "Why do llamas hum?")
    r = alice.infer(chat["id"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    assert r.content == (
        b"data:Llamas\n\ndata: hum\n\ndata: when\n\ndata: they\n\ndata: are\n\ndata: curious.\n\n"
    )
    (prompt,) = fake.prompts
    assert [m.role for m in prompt] == ["system", "user"]
    assert prompt[0].content.startswith(SYSTEM_START)
    assert prompt[1].content == (
        "[[Human]]: Hello, [[Assistant]].\n"
        "[[Assistant]]: Hello. How may I help you today?\n"
        "[[Human]]: Why do llamas hum?\n"
        "[[Assistant]]:"
    )
    assert fake.params[0].stop == ("[[Human]]:", "Human:", "\n[[")
    assert fake.params[0].max_tokens == 64  # PASTURE_CHAT_MAX_TOKENS
    rows = alice.rows(chat["id"])
    assert [(x["role"], x["message"]) for x in rows[-2:]] == [
        ("Human", "Why do llamas hum?"),
        ("Assistant", REPLY),
    ]
    # The next turn sees the stored answer.
    alice.say(chat["id"], "And camels?")
    assert alice.infer(chat["id"]).status_code == 200
    assert fake.prompts[1][1].content.endswith(
        f"[[Human]]: Why do llamas hum?\n[[Assistant]]: {REPLY}\n"
        "[[Human]]: And camels?\n[[Assistant]]:"
    )


def test_a_chat_without_messages(alice: Bot, fake: FakeChatModel) -> None:
    chat = alice.chat()
    for internet in (False, True):
        r = alice.infer(chat["id"], internet)
        assert r.status_code == 200 and r.content == b"data:No messages found in database\n\n"
    assert fake.prompts == [] and alice.rows(chat["id"]) == []


@pytest.mark.parametrize(
    "start",
    [[" \n "], ["[[Assistant]]:"], ["[[", "Assistant", "]]", ": "], [" [[Assistant]]: \n"]],
    ids=["blank", "label", "label-in-pieces", "blank-label-blank"],
)
def test_leading_blank_and_role_label_are_dropped(
    alice: Bot, fake: FakeChatModel, monkeypatch: pytest.MonkeyPatch, start: list[str]
) -> None:
    """A real model's first token after `[[Assistant]]:` usually starts with a space, and
    small models often repeat the label itself."""
    chat = alice.chat()
    alice.say(chat["id"], "hi")
    plain = FakeChatModel.stream

    async def labelled(
        self: FakeChatModel, messages: Any, params: Any
    ) -> AsyncIterator[TextDelta | Completion]:
        for piece in start:
            yield TextDelta(piece)
        async for item in plain(self, messages, params):
            yield item

    monkeypatch.setattr(fake, "stream", types.MethodType(labelled, fake))
    r = alice.infer(chat["id"])
    assert r.content.startswith(b"data:Llamas\n\ndata: hum\n\n"), r.content
    assert alice.rows(chat["id"])[-1]["message"] == REPLY


def test_frames_of_multi_line_tokens() -> None:
    assert frame("token") == b"data:token\n\n"
    assert frame(" world") == b"data: world\n\n"
    assert frame("a\nb") == b"data:a\ndata:b\n\n"
    assert frame("\n") == b"data:\ndata:\n\n"
    assert frame("x\r\ny\rz") == b"data:x\ndata:y\ndata:z\n\n"
    assert frame("héllo") == "data:héllo\n\n".encode()


def test_model_failure_mid_stream_ends_the_stream(alice: Bot, fake: FakeChatModel) -> None:
    chat = alice.chat()
    alice.say(chat["id"], "hi")
    fake.fail_after = 2
    r = alice.infer(chat["id"])
    assert r.status_code == 200
    assert r.content == (b"data:Llamas\n\ndata: hum\n\ndata:[error] fake model backend failed\n\n")
    assert [x["role"] for x in alice.rows(chat["id"])] == ["Human"]  # nothing stored


def test_model_failing_before_the_first_token_is_502(alice: Bot, fake: FakeChatModel) -> None:
    chat = alice.chat()
    alice.say(chat["id"], "hi")
    fake.fail_after = 0
    r = alice.infer(chat["id"])
    assert (r.status_code, r.json()) == (
        502,
        rocket(502, "Bad Gateway", "fake model backend failed"),
    )
    assert len(alice.rows(chat["id"])) == 1


def test_oldest_rows_are_dropped_to_fit_the_context(alice: Bot, fake: FakeChatModel) -> None:
    chat = alice.chat()
    for i in range(30):
        alice.say(
            chat["id"], f"message number {i} " + "filler " * 10, role=("Human", "Assistant")[i % 2]
        )
    alice.say(chat["id"], "the last question")
    # The fake counts words + 4 per message; half the context is kept for the answer.
    fake.context_length = 400
    assert alice.infer(chat["id"]).status_code == 200
    text = fake.prompts[-1][1].content
    assert fake.count_tokens(fake.prompts[-1]) <= 400 - 64
    assert text.endswith("[[Human]]: the last question\n[[Assistant]]:")
    assert "message number 29 " in text and "message number 0 " not in text
    kept = [int(m) for m in re.findall(r"message number (\d+) ", text)]
    assert kept == list(range(kept[0], 30))  # a contiguous recent run


def test_a_last_message_too_long_for_the_model_is_refused(alice: Bot, fake: FakeChatModel) -> None:
    chat = alice.chat()
    alice.say(chat["id"], "word " * 500)
    fake.context_length = 256
    r = alice.infer(chat["id"])
    assert (r.status_code, r.json()) == (422, rocket(422, "Unprocessable Entity", "shorten"))
    assert fake.prompts == []


def test_internet_answer_without_a_search_engine(alice: Bot, fake: FakeChatModel) -> None:
    """The engine is unreachable: the model is told nothing could be fetched, and the reader
    gets a last frame saying there are no sources and why. No 500, no traceback."""
    chat = alice.chat()
    alice.say(chat["id"], "How old is Quillon the llama?")
    r = alice.infer(chat["id"], internet=True)
    assert r.status_code == 200
    assert r.content.endswith(
        b"data: curious.\n\ndata:\ndata:\ndata:Sources: none (the web search failed)\n\n"
    )
    text = fake.prompts[-1][1].content
    assert text == (
        "[[Human]]: How old is Quillon the llama?\n"
        "[[Fetched Information]]: (none: the web search failed)\n"
        "[[Human]]: Nothing could be fetched from the internet, so answer me from what you know"
        " [[Assistant]], and say that you could not check the web.\n"
        "[[Assistant]]:"
    )
    assert alice.rows(chat["id"])[-1]["message"] == (
        f"{REPLY}\n\nSources: none (the web search failed)"
    )


def test_client_disconnect_stores_nothing_and_stops_the_model(
    container: Container, alice: Bot, fake: FakeChatModel, api_keys: dict[str, str]
) -> None:
    """What EventStream does when the client goes away: it closes the body iterator. The
    model stops (the fake counts an abandoned generation) and no cut-off answer is stored."""
    chat = alice.chat()
    alice.say(chat["id"], "tell me everything")
    svc: ChatbotService = container.chatbot

    async def read_one_then_leave() -> str:
        pieces = await svc.answer("alice", chat["id"], web=False)
        first = await anext(pieces)
        await pieces.aclose()  # type: ignore[attr-defined]
        return first

    assert asyncio.run(read_one_then_leave()) == "Llamas"
    assert fake.abandoned == 1
    assert [x["role"] for x in alice.rows(chat["id"])] == ["Human"]

    async def read_all() -> str:
        pieces = await svc.answer("alice", chat["id"], web=False)
        return "".join([p async for p in pieces])

    assert asyncio.run(read_all()) == REPLY
    assert [x["role"] for x in alice.rows(chat["id"])] == ["Human", "Assistant"]
