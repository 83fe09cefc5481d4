"""RAGFlow chat assistants and their sessions (`/api/v1/chats...`), the singular draft's
`/api/v1/chat...` aliases, and ragflow-sdk's own client driving them.

The app, storage, embedder and retrieval are real; chat models are fakes (tests/helpers/
ragflow_chats.py) so completions are deterministic. Model names are still checked by the
server's own factory: `smollm2-135m-instruct` (the default) and `other` exist, nothing else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.services import keys
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import RF, fake_client, reset, sdk, uniq

HEX32 = re.compile(r"[0-9a-f]{32}")
DEFAULT_MODEL = "smollm2-135m-instruct"
OPENER = "Hi! I'm your assistant, what can I do for you?"
EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
FARM = {
    "farm.txt": (
        b"The weather on the coast was mild all through October, with light rain most evenings."
        b"\n\nQuillon is 27 years old and is the oldest llama on the Pasture test farm.\n\n"
        b"A good compost heap needs both green and brown material, turned every few weeks.\n"
    )
}
FAKES: dict[str, FakeChatModel] = {}
# Tenants that start empty, one per test that lists or deletes everything.
SPARE = {f"spare{i}": "sk-" + secrets.token_hex(16) for i in range(8)}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("rf_chats")
    with fake_client(data, model_cache, {**api_keys, **SPARE}, FAKES) as c:
        yield c


@pytest.fixture
def alice(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["alice"])


_spare = iter(SPARE.values())


@pytest.fixture
def fresh(client: TestClient) -> RF:
    """A tenant nobody else in this module uses."""
    return RF(client, next(_spare))


@pytest.fixture(scope="module")
def ds(client: TestClient, api_keys: dict[str, str]) -> str:
    """Alice's dataset with one parsed file."""
    return RF(client, api_keys["alice"]).parsed_dataset(FARM)


@pytest.fixture
def fake(client: TestClient) -> FakeChatModel:
    FAKES.setdefault(DEFAULT_MODEL, FakeChatModel(DEFAULT_MODEL))
    return reset(FAKES[DEFAULT_MODEL], "Quillon is 27 years old.")


def chat_named(rf: RF, name: str) -> dict[str, Any]:
    found = rf.ok("GET", "/chats", params={"name": name})
    assert len(found) == 1, found
    return dict(found[0])


# ---------------------------------------------------------------------- create


def test_create_fills_ragflow_defaults(alice: RF, ds: str) -> None:
    name = uniq("defaults")
    data = alice.ok("POST", "/chats", json={"name": name, "dataset_ids": [ds]})
    assert HEX32.fullmatch(data["id"])
    assert data["name"] == name and data["dataset_ids"] == [ds]
    assert data["llm"] == {
        "model_name": DEFAULT_MODEL,
        "temperature": 0.1,
        "top_p": 0.3,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.7,
        "max_tokens": 512,
    }
    prompt = data["prompt"]
    assert {k: v for k, v in prompt.items() if k != "prompt"} == {
        "similarity_threshold": 0.2,
        "keywords_similarity_weight": 0.7,
        "top_n": 6,
        "variables": [{"key": "knowledge", "optional": True}],
        "rerank_model": "",
        "empty_response": EMPTY_RESPONSE,
        "opener": OPENER,
        "show_quote": True,
    }
    assert "{knowledge}" in prompt["prompt"]
    assert (data["avatar"], data["description"], data["do_refer"]) == (
        "",
        "A helpful Assistant",
        "1",
    )
    assert (data["language"], data["prompt_type"], data["status"], data["top_k"]) == (
        "English",
        "simple",
        "1",
        1024,
    )
    assert isinstance(data["create_time"], int) and data["create_time"] == data["update_time"]
    assert data["create_date"].endswith(" GMT")
    # The list shows the same chat, field for field.
    assert chat_named(alice, name) == data


def test_create_takes_what_ragflow_sdk_sends(alice: RF, ds: str) -> None:
    """ragflow-sdk 0.14's create_chat body, default llm and prompt: `model_name` and
    `empty_response` are null, top_n 8, its own system prompt with `{knowledge}`."""
    sdk_prompt = (
        "You are an intelligent assistant. Please summarize the content of the knowledge base"
        " to answer the question. Please list the data in the knowledge base and answer in"
        " detail. When all knowledge base content is irrelevant to the question, your answer"
        " must include the sentence 'The answer you are looking for is not found in the"
        " knowledge base!' Answers need to consider chat history.\nHere is the knowledge base:"
        "\n{knowledge}\nThe above is the knowledge base."
    )
    body = {
        "name": uniq("sdk"),
        "avatar": "",
        "dataset_ids": [ds],
        "llm": {
            "model_name": None,
            "temperature": 0.1,
            "top_p": 0.3,
            "presence_penalty": 0.4,
            "frequency_penalty": 0.7,
            "max_tokens": 512,
        },
        "prompt": {
            "similarity_threshold": 0.2,
            "keywords_similarity_weight": 0.7,
            "top_n": 8,
            "variables": [{"key": "knowledge", "optional": True}],
            "rerank_model": "",
            "empty_response": None,
            "opener": OPENER,
            "show_quote": True,
            "prompt": sdk_prompt,
        },
    }
    data = alice.ok("POST", "/chats", json=body)
    assert data["llm"]["model_name"] == DEFAULT_MODEL
    assert data["prompt"]["top_n"] == 8 and data["prompt"]["prompt"] == sdk_prompt
    # An explicit null empty_response is "nothing": the model answers even when nothing
    # is retrieved (tested in test_ragflow_completions.py).
    assert data["prompt"]["empty_response"] == ""
    assert data["prompt"]["opener"] == OPENER


def test_ragflow_sdk_drives_chats_and_sessions(
    client: TestClient, ds: str, api_keys: dict[str, str], fake: FakeChatModel
) -> None:
    """ragflow-sdk's own objects, their requests sent through the test client."""
    rag = sdk(client, api_keys["alice"])
    name = uniq("sdkchat")
    chat = rag.create_chat(name, dataset_ids=[ds])
    assert HEX32.fullmatch(chat.id) and chat.name == name
    assert chat.llm.model_name == DEFAULT_MODEL and chat.prompt.top_n == 8
    assert [c.id for c in rag.list_chats(name=name)] == [chat.id]
    chat.update({"name": name + "_renamed"})
    assert rag.list_chats(id=chat.id)[0].name == name + "_renamed"
    session = chat.create_session()
    assert session.chat_id == chat.id and session.name == "New session"
    assert session.messages == [{"role": "assistant", "content": OPENER}]
    fake.reply = "Quillon is 27 years old."
    messages = list(session.ask("How old is Quillon?"))
    assert messages[-1].content.startswith("Quillon is 27 years old")
    assert "##" in messages[-1].content  # the cited final answer
    assert messages[-1].reference[0]["document_name"] == "farm.txt"
    # A listed session can ask too: the SDK needs `chat_id` in list items.
    listed = chat.list_sessions(id=session.id)
    assert [s.id for s in listed] == [session.id]
    assert list(listed[0].ask("And the weather?"))[-1].content
    session.update({"name": "renamed session"})
    assert chat.list_sessions(name="renamed session")[0].id == session.id
    with pytest.raises(Exception, match=r"Please input your question\."):
        list(session.ask(""))
    chat.delete_sessions(ids=[session.id])
    assert chat.list_sessions() == []
    rag.delete_chats(ids=[chat.id])
    with pytest.raises(Exception, match="The chat doesn't exist"):
        rag.list_chats(id=chat.id)


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": 7}])
def test_name_is_required(alice: RF, body: dict[str, Any]) -> None:
    assert alice.fail("POST", "/chats", json=body) == (102, "`name` is required.")


def test_duplicate_name_is_refused_case_insensitively(alice: RF, ds: str) -> None:
    name = uniq("Dup")
    first = alice.chat([ds], name=name)
    dup = (102, "Duplicated chat name in creating chat.")
    assert alice.fail("POST", "/chats", json={"name": name.lower(), "dataset_ids": [ds]}) == dup
    assert alice.fail("POST", "/chats", json={"name": name.upper()}) == dup
    assert len(alice.ok("GET", "/chats", params={"name": name})) == 1
    # Deleting the chat frees its name.
    alice.ok("DELETE", "/chats", json={"ids": [first["id"]]})
    assert alice.chat([ds], name=name.lower())["name"] == name.lower()


def test_unknown_dataset_is_refused(alice: RF, ds: str) -> None:
    unknown = uuid_hex()
    name = uniq("nods")
    assert alice.fail("POST", "/chats", json={"name": name, "dataset_ids": [ds, unknown]}) == (
        102,
        f"You don't own the dataset {unknown}",
    )
    assert alice.fail("GET", "/chats", params={"name": name}) == (102, "The chat doesn't exist")


def test_dataset_with_no_parsed_chunks_is_refused(alice: RF) -> None:
    empty = alice.dataset()
    unparsed = alice.dataset()
    alice.upload(unparsed, "later.txt", b"Parsed some other day.")
    for dataset_id in (empty, unparsed):
        assert alice.fail(
            "POST", "/chats", json={"name": uniq("c"), "dataset_ids": [dataset_id]}
        ) == (
            102,
            f"The dataset {dataset_id} doesn't own parsed file",
        )


def test_knowledge_must_be_used_unless_optional(alice: RF, ds: str) -> None:
    no_placeholder = {
        "prompt": "You answer questions.",
        "variables": [{"key": "knowledge", "optional": False}],
    }
    assert alice.fail(
        "POST", "/chats", json={"name": uniq("k"), "dataset_ids": [ds], "prompt": no_placeholder}
    ) == (102, "Parameter 'knowledge' is not used")
    # Optional: the placeholder may be left out; present: fine either way.
    optional = {**no_placeholder, "variables": [{"key": "knowledge", "optional": True}]}
    alice.chat([ds], prompt=optional)
    alice.chat([ds], prompt={**no_placeholder, "prompt": "Use this: {knowledge}"})
    # Any declared, non-optional variable.
    topic = {"prompt": "{knowledge}", "variables": [{"key": "topic", "optional": False}]}
    assert alice.fail("POST", "/chats", json={"name": uniq("k"), "prompt": topic}) == (
        102,
        "Parameter 'topic' is not used",
    )


def test_rerank_model_is_refused(alice: RF, ds: str) -> None:
    code, message = alice.fail(
        "POST",
        "/chats",
        json={
            "name": uniq("r"),
            "dataset_ids": [ds],
            "prompt": {"rerank_model": "BAAI/bge-reranker-v2-m3"},
        },
    )
    assert code == 102 and "rerank_model" in message and "BAAI/bge-reranker-v2-m3" in message


def test_model_name_is_resolved_or_refused(alice: RF, ds: str) -> None:
    code, message = alice.fail(
        "POST",
        "/chats",
        json={"name": uniq("m"), "llm": {"model_name": "qwen-plus@Tongyi-Qianwen"}},
    )
    assert code == 102 and message == "`model_name` qwen-plus@Tongyi-Qianwen doesn't exist"
    # RAGFlow's `model@provider` spelling; the server default by either of its names.
    assert alice.chat([ds], llm={"model_name": "other@LocalAI"})["llm"]["model_name"] == "other"
    assert alice.chat([ds], llm={"model_name": "default"})["llm"]["model_name"] == DEFAULT_MODEL
    # A partial llm keeps the other defaults.
    llm = alice.chat([ds], llm={"temperature": 0.9})["llm"]
    assert llm == {
        "model_name": DEFAULT_MODEL,
        "temperature": 0.9,
        "top_p": 0.3,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.7,
        "max_tokens": 512,
    }


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("llm", "temperature", 3),
        ("llm", "top_p", "high"),
        ("llm", "max_tokens", 0),
        ("prompt", "similarity_threshold", 1.5),
        ("prompt", "top_n", 0),
    ],
)
def test_out_of_range_settings_are_refused(alice: RF, section: str, field: str, value: Any) -> None:
    code, message = alice.fail("POST", "/chats", json={"name": uniq("n"), section: {field: value}})
    assert code == 102 and f"`{field}`" in message


# ---------------------------------------------------------------------- update


def test_update_renames_and_merges_settings(alice: RF, ds: str) -> None:
    old = uniq("old")
    chat = alice.chat([ds], name=old, llm={"temperature": 0.5})
    new = uniq("new")
    assert (
        alice.ok("PUT", f"/chats/{chat['id']}", json={"name": new, "llm": {"top_p": 0.9}}) is None
    )
    got = chat_named(alice, new)
    assert got["id"] == chat["id"] and got["llm"]["temperature"] == 0.5
    assert got["llm"]["top_p"] == 0.9 and got["prompt"] == chat["prompt"]
    assert got["update_time"] >= chat["update_time"] and got["create_time"] == chat["create_time"]
    # The old name is free again; a case-only change of the chat's own name is no duplicate.
    alice.chat([ds], name=old)
    alice.ok("PUT", f"/chats/{chat['id']}", json={"name": new.upper()})
    assert chat_named(alice, new)["name"] == new.upper()


def test_update_refuses_duplicate_and_empty_names(alice: RF, ds: str) -> None:
    taken = alice.chat([ds])["name"]
    chat = alice.chat([ds])
    path = f"/chats/{chat['id']}"
    assert alice.fail("PUT", path, json={"name": taken.upper()}) == (
        102,
        "Duplicated chat name in updating chat.",
    )
    for empty in ("", "  "):
        code, message = alice.fail("PUT", path, json={"name": empty})
        assert code == 102 and "`name`" in message
    # Nothing changed; the name was not claimed either.
    assert chat_named(alice, chat["name"])["id"] == chat["id"]
    assert len(alice.ok("GET", "/chats", params={"name": taken})) == 1


def test_update_checks_datasets_and_prompt(alice: RF, ds: str) -> None:
    chat = alice.chat([ds])
    path = f"/chats/{chat['id']}"
    empty = alice.dataset()
    assert alice.fail("PUT", path, json={"dataset_ids": [empty]}) == (
        102,
        f"The dataset {empty} doesn't own parsed file",
    )
    bad = {"prompt": "no placeholder", "variables": [{"key": "knowledge", "optional": False}]}
    assert alice.fail("PUT", path, json={"prompt": bad}) == (
        102,
        "Parameter 'knowledge' is not used",
    )
    assert chat_named(alice, chat["name"]) == chat
    unknown = uuid_hex()
    assert alice.fail("PUT", f"/chats/{unknown}", json={"name": "x"}) == (
        102,
        f"You don't own the chat {unknown}",
    )


# ---------------------------------------------------------------------- list


def test_list_is_a_bare_list_paged_ordered_and_filtered(fresh: RF) -> None:
    assert fresh.ok("GET", "/chats") == []
    names = [fresh.chat([], name=f"list_{i}")["name"] for i in range(3)]
    listed = fresh.ok("GET", "/chats")
    assert [c["name"] for c in listed] == names[::-1]  # create_time, newest first
    assert [c["name"] for c in fresh.ok("GET", "/chats", params={"desc": "false"})] == names
    assert [c["name"] for c in fresh.ok("GET", "/chats", params={"desc": "False"})] == names
    page = {"page": 2, "page_size": 2, "desc": "false"}
    assert [c["name"] for c in fresh.ok("GET", "/chats", params=page)] == names[2:]
    assert fresh.ok("GET", "/chats", params={"page": 3, "page_size": 2}) == []
    # update_time order: the first chat, just updated, comes first.
    first = listed[-1]
    fresh.ok("PUT", f"/chats/{first['id']}", json={"description": "touched"})
    by_update = fresh.ok("GET", "/chats", params={"orderby": "update_time"})
    assert by_update[0]["id"] == first["id"] and by_update[0]["description"] == "touched"
    assert [c["name"] for c in fresh.ok("GET", "/chats", params={"id": first["id"]})] == ["list_0"]
    assert [c["id"] for c in fresh.ok("GET", "/chats", params={"name": "LIST_1"})] == [
        listed[1]["id"]
    ]
    for q in ({"id": uuid_hex()}, {"name": "nope"}, {"id": first["id"], "name": "list_1"}):
        assert fresh.fail("GET", "/chats", params=q) == (102, "The chat doesn't exist")
    code, message = fresh.fail("GET", "/chats", params={"orderby": "name"})
    assert code == 102 and "create_time" in message


# ---------------------------------------------------------------------- delete


def test_delete_by_ids_checks_every_id_first(alice: RF, ds: str) -> None:
    a, b = alice.chat([ds]), alice.chat([ds])
    unknown = uuid_hex()
    assert alice.fail("DELETE", "/chats", json={"ids": [a["id"], unknown]}) == (
        102,
        f"You don't own the chat {unknown}",
    )
    assert chat_named(alice, a["name"])["id"] == a["id"]  # nothing deleted
    assert alice.ok("DELETE", "/chats", json={"ids": [a["id"]]}) is None
    assert alice.fail("GET", "/chats", params={"id": a["id"]}) == (102, "The chat doesn't exist")
    assert chat_named(alice, b["name"])["id"] == b["id"]
    assert alice.fail("DELETE", "/chats", json={"ids": [a["id"]]}) == (
        102,
        f"You don't own the chat {a['id']}",
    )


@pytest.mark.parametrize("body", [None, {}, {"ids": None}])
def test_delete_without_ids_deletes_every_chat_and_its_sessions(
    client: TestClient, fresh: RF, body: dict[str, Any] | None
) -> None:
    chats = [fresh.chat([]) for _ in range(2)]
    fresh.session(chats[0]["id"])
    kw = {} if body is None else {"json": body}
    assert fresh.ok("DELETE", "/chats", **kw) is None
    assert fresh.ok("GET", "/chats") == []
    assert fresh.fail("GET", f"/chats/{chats[0]['id']}/sessions") == (
        102,
        f"You don't own the chat {chats[0]['id']}",
    )
    # The sessions are gone from storage, not only out of reach.
    records = client.app.state.container.records  # type: ignore[attr-defined]
    tenant = chats[0]["tenant_id"]
    assert records.query(keys.conversations(tenant, chats[0]["id"]), "", limit=None) == []


# ---------------------------------------------------------------------- sessions


def test_create_session_shape(alice: RF, ds: str) -> None:
    chat = alice.chat([ds])
    s = alice.ok(
        "POST", f"/chats/{chat['id']}/sessions", json={"name": "new session", "user_id": "u1"}
    )
    assert HEX32.fullmatch(s["id"])
    assert s["chat_id"] == chat["id"] and s["name"] == "new session" and s["user_id"] == "u1"
    assert s["messages"] == [{"role": "assistant", "content": OPENER}]
    assert isinstance(s["create_time"], int) and s["create_date"].endswith(" GMT")
    assert s["update_time"] == s["create_time"]
    # No body at all, as some clients send: the default name.
    r = alice.req("POST", f"/chats/{chat['id']}/sessions")
    assert r.json()["code"] == 0 and r.json()["data"]["name"] == "New session"
    # A chat without an opener: the session starts with no message.
    quiet = alice.chat([ds], prompt={"opener": ""})
    assert alice.session(quiet["id"])["messages"] == []


@pytest.mark.parametrize("name", ["", "   "])
def test_session_name_cannot_be_empty(alice: RF, ds: str, name: str) -> None:
    chat = alice.chat([ds])
    assert alice.fail("POST", f"/chats/{chat['id']}/sessions", json={"name": name}) == (
        102,
        "`name` can not be empty.",
    )
    assert alice.sessions(chat["id"]) == []


def test_update_session_name_but_not_messages(alice: RF, ds: str) -> None:
    chat = alice.chat([ds])
    s = alice.session(chat["id"], name="before")
    later = alice.session(chat["id"], name="later")
    path = f"/chats/{chat['id']}/sessions/{s['id']}"
    assert alice.ok("PUT", path, json={"name": "after", "user_id": "u9"}) is None
    got = alice.sessions(chat["id"], id=s["id"])[0]
    assert got["name"] == "after" and got["messages"] == s["messages"]
    assert got["user_id"] == "u9" and got["create_time"] == s["create_time"]
    # A change is an update (RAGFlow stamps update_time on every update).
    by_update = alice.sessions(chat["id"], orderby="update_time")
    assert [x["id"] for x in by_update] == [s["id"], later["id"]]
    assert alice.fail("PUT", path, json={"messages": []}) == (102, "`messages` can not be changed")
    assert alice.fail("PUT", path, json={"name": ""}) == (102, "`name` can not be empty.")
    assert alice.sessions(chat["id"], id=s["id"])[0]["name"] == "after"
    unknown = uuid_hex()
    code, message = alice.fail("PUT", f"/chats/{chat['id']}/sessions/{unknown}", json={"name": "x"})
    assert code == 102 and unknown in message


def test_list_sessions_with_filters(alice: RF, ds: str) -> None:
    chat = alice.chat([ds])
    other = alice.chat([ds])
    made = [alice.session(chat["id"], name=f"s{i}", user_id=f"u{i % 2}") for i in range(3)]
    alice.session(other["id"], name="s0")
    listed = alice.sessions(chat["id"])
    assert [s["id"] for s in listed] == [s["id"] for s in made[::-1]]
    # `chat_id` is what ragflow-sdk reads; `chat` is what RAGFlow's own list sends.
    assert all(s["chat_id"] == s["chat"] == chat["id"] for s in listed)
    assert [s["name"] for s in alice.sessions(chat["id"], desc="false")] == ["s0", "s1", "s2"]
    assert [s["name"] for s in alice.sessions(chat["id"], page=2, page_size=2)] == ["s0"]
    assert [s["id"] for s in alice.sessions(chat["id"], id=made[1]["id"])] == [made[1]["id"]]
    assert [s["id"] for s in alice.sessions(chat["id"], name="s2")] == [made[2]["id"]]
    assert [s["name"] for s in alice.sessions(chat["id"], user_id="u0", desc="false")] == [
        "s0",
        "s2",
    ]
    assert alice.sessions(chat["id"], id=uuid_hex()) == []
    # Another chat's session is not this chat's.
    assert alice.sessions(chat["id"], id=alice.sessions(other["id"])[0]["id"]) == []


def test_delete_sessions(alice: RF, ds: str) -> None:
    chat = alice.chat([ds])
    path = f"/chats/{chat['id']}/sessions"
    a, b, c = (alice.session(chat["id"]) for _ in range(3))
    unknown = uuid_hex()
    assert alice.fail("DELETE", path, json={"ids": [a["id"], unknown]}) == (
        102,
        f"The chat doesn't own the session {unknown}",
    )
    assert len(alice.sessions(chat["id"])) == 3
    assert alice.ok("DELETE", path, json={"ids": [a["id"]]}) is None
    assert {s["id"] for s in alice.sessions(chat["id"])} == {b["id"], c["id"]}
    assert alice.ok("DELETE", path, json={}) is None  # ids omitted: every session
    assert alice.sessions(chat["id"]) == []
    # A session of another chat cannot be deleted through this one.
    other = alice.chat([ds])
    theirs = alice.session(other["id"])
    assert alice.fail("DELETE", path, json={"ids": [theirs["id"]]}) == (
        102,
        f"The chat doesn't own the session {theirs['id']}",
    )
    assert len(alice.sessions(other["id"])) == 1


def test_session_routes_of_an_unknown_chat(alice: RF) -> None:
    unknown = uuid_hex()
    expected = (102, f"You don't own the chat {unknown}")
    assert alice.fail("POST", f"/chats/{unknown}/sessions", json={"name": "x"}) == expected
    assert alice.fail("GET", f"/chats/{unknown}/sessions") == expected
    assert alice.fail("DELETE", f"/chats/{unknown}/sessions", json={"ids": []}) == expected
    assert (
        alice.fail("PUT", f"/chats/{unknown}/sessions/{uuid_hex()}", json={"name": "x"}) == expected
    )


# ---------------------------------------------------------------------- the singular draft


def test_singular_draft_paths(alice: RF, ds: str, fake: FakeChatModel) -> None:
    """Every `/api/v1/chat...` alias once, with the draft's body shapes."""
    name = uniq("Miss_R")
    draft = {
        "avatar": "path",
        "create_date": "Wed, 04 Sep 2024 10:08:01 GMT",
        "create_time": 1725444481128,
        "description": "A helpful Assistant",
        "do_refer": "",
        "knowledgebases": [
            {
                "avatar": None,
                "chunk_count": 0,
                "description": None,
                "document_count": 0,
                "embedding_model": "",
                "id": ds,
                "language": "English",
                "name": "Test_assistant",
                "parse_method": "naive",
                "parser_config": {"pages": [[1, 1000000]]},
                "permission": "me",
                "tenant_id": "4fb0cd625f9311efba4a0242ac120006",
            }
        ],
        "language": "English",
        "llm": {
            "frequency_penalty": 0.7,
            "max_tokens": 512,
            "model_name": "other",  # the draft's deepseek-chat is not installed here
            "presence_penalty": 0.4,
            "temperature": 0.1,
            "top_p": 0.3,
        },
        "name": name,
        "prompt": {
            "empty_response": "Sorry! Can't find the context!",
            "keywords_similarity_weight": 0.7,
            "opener": "Hi! I am your assistant, what can I do for you?",
            "prompt": "Answer from the knowledge base.\nHere is the knowledge base:\n{knowledge}"
            "\nThe above is the knowledge base.",
            "rerank_model": "",
            "show_quote": True,
            "similarity_threshold": 0.2,
            "top_n": 8,
            "variables": [{"key": "knowledge", "optional": True}],
        },
        "prompt_type": "simple",
        "status": "1",
        "top_k": 1024,
        "update_date": "Wed, 04 Sep 2024 10:08:01 GMT",
        "update_time": 1725444481128,
    }
    chat = alice.ok("POST", "/chat", json=draft)
    assert chat["dataset_ids"] == [ds] and chat["name"] == name
    assert chat["llm"]["model_name"] == "other" and chat["prompt"]["top_n"] == 8
    assert chat["create_time"] != 1725444481128  # read-only fields are not taken
    cid = chat["id"]
    assert [c["id"] for c in alice.ok("GET", "/chat", params={"name": name})] == [cid]
    assert cid in {c["id"] for c in alice.ok("GET", "/chat")}
    assert alice.ok("PUT", "/chat", json={"id": cid, "name": name + "_2"}) is None
    assert alice.ok("GET", "/chats", params={"id": cid})[0]["name"] == name + "_2"
    assert alice.fail("PUT", "/chat", json={"name": "no id"}) == (102, "`id` is required")

    s = alice.ok("POST", f"/chat/{cid}/session", json={"name": "new session"})
    assert s["chat_id"] == cid
    assert s["messages"] == [
        {"role": "assistant", "content": "Hi! I am your assistant, what can I do for you?"}
    ]
    assert [x["id"] for x in alice.ok("GET", f"/chat/{cid}/session")] == [s["id"]]
    path = f"/chat/{cid}/session/{s['id']}"
    assert alice.ok("PUT", path, json={"name": "Updated session"}) is None
    assert alice.sessions(cid)[0]["name"] == "Updated session"

    other = FAKES.setdefault("other", FakeChatModel("other"))
    reset(other, "Hello from the other model.")
    question = "How old is Quillon?"
    st = alice.stream(f"{path}/completion", {"question": question, "stream": True})
    assert st.status == 200 and st.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert st.answers[-1] == "Hello from the other model."
    assert st.payloads[-1] == {"code": 0, "message": "", "data": True}
    assert st.payloads[0]["data"]["session_id"] == s["id"]
    assert other.prompts[-1][-1].content == question and fake.prompts == []
    messages = alice.sessions(cid)[0]["messages"]
    assert [m["role"] for m in messages] == ["assistant", "user", "assistant"]

    assert alice.ok("DELETE", path) is None
    assert alice.sessions(cid) == []
    assert alice.fail("DELETE", path) == (102, f"The chat doesn't own the session {s['id']}")
    assert alice.ok("DELETE", f"/chat/{cid}") is None
    assert alice.fail("GET", "/chat", params={"id": cid}) == (102, "The chat doesn't exist")
    assert alice.fail("DELETE", f"/chat/{cid}") == (102, f"You don't own the chat {cid}")


def uuid_hex() -> str:
    import uuid

    return uuid.uuid1().hex
