"""RAGFlow chat completions (`POST /api/v1/chats/{chat_id}/completions`): framing, citations,
sessions and history, prompt variables, errors.

Most tests use a fake chat model (deterministic words, recorded prompts; see
tests/helpers/ragflow_chats.py). One test runs the real embedded default model.

Framing, as RAGFlow v0.14 sends it (its server writes `"data:" + json.dumps(...) + "\\n\\n"`):
`data:` with no space, one JSON object per frame, a blank line after each; each frame carries
the whole answer so far; the last content frame adds `reference`, `prompt` and the citation
markers; the stream always ends with `data:{"code": 0, "message": "", "data": true}`.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.bootstrap import build_container
from tests.api.conftest import keyed_settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import FINAL_FRAME, RF, fake_client, reset, uniq

HEX32 = re.compile(r"[0-9a-f]{32}")
DEFAULT_MODEL = "smollm2-135m-instruct"
OPENER = "Hi! I'm your assistant, what can I do for you?"
EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
QUESTION = "How old is Quillon?"
FACT = "Quillon is 27 years old and is the oldest llama on the Pasture test farm."
FARM = {
    "farm.txt": (
        b"The weather on the coast was mild all through October, with light rain most evenings."
        b"\n\n" + FACT.encode() + b"\n\n"
        b"A good compost heap needs both green and brown material, turned every few weeks.\n"
    )
}
# Nothing in the file is about this: retrieval finds nothing above the threshold.
OFF_TOPIC = "Which zebra plays the xylophone?"
FAKES: dict[str, FakeChatModel] = {}
SPARE = {f"spare{i}": "sk-" + secrets.token_hex(16) for i in range(4)}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("rf_completions")
    with fake_client(data, model_cache, {**api_keys, **SPARE}, FAKES) as c:
        yield c


@pytest.fixture
def alice(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["alice"])


@pytest.fixture(scope="module")
def ds(client: TestClient, api_keys: dict[str, str]) -> str:
    return RF(client, api_keys["alice"]).parsed_dataset(FARM)


@pytest.fixture
def fake(client: TestClient) -> FakeChatModel:
    FAKES.setdefault(DEFAULT_MODEL, FakeChatModel(DEFAULT_MODEL))
    return reset(FAKES[DEFAULT_MODEL], "Quillon is 27 years old.")


@pytest.fixture
def chat(alice: RF, ds: str) -> dict[str, Any]:
    return dict(alice.chat([ds]))


def completions(chat: dict[str, Any]) -> str:
    return f"/chats/{chat['id']}/completions"


def messages_of(rf: RF, chat: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    found = rf.sessions(chat["id"], id=session_id)
    assert len(found) == 1, found
    return list(found[0]["messages"])


def strip_marks(text: str) -> str:
    return re.sub(r" ?##\d+\$\$", "", text)


def frame(payload: Any) -> bytes:
    """RAGFlow's frame bytes: json.dumps with its default separators, non-ASCII kept."""
    return b"data:" + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


# ---------------------------------------------------------------------- framing


def test_stream_is_the_default_and_framed_exactly(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    session = alice.session(chat["id"])
    st = alice.stream(completions(chat), {"question": QUESTION, "session_id": session["id"]})
    assert st.status == 200
    assert st.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert st.headers["cache-control"] == "no-cache"
    assert st.headers["x-accel-buffering"] == "no"
    payloads = st.payloads
    first = payloads[0]["data"]
    message_id = first["id"]
    assert str(uuid.UUID(message_id)) == message_id  # a dashed uuid4, as RAGFlow's
    assert first["session_id"] == session["id"]
    # The whole body, byte for byte: cumulative answers, then the cited last content frame,
    # then the end frame.
    words = ["Quillon", "is", "27", "years", "old."]

    def head(answer: str) -> dict[str, Any]:
        return {
            "answer": answer,
            "reference": {},
            "audio_binary": None,
            "id": message_id,
            "session_id": session["id"],
        }

    last = payloads[-2]["data"]
    expected = b"".join(
        frame({"code": 0, "message": "", "data": head(" ".join(words[: i + 1]))})
        for i in range(len(words))
    )
    expected += frame(
        {
            "code": 0,
            "message": "",
            "data": {
                **head("Quillon is 27 years old ##0$$."),
                "reference": last["reference"],
                "prompt": last["prompt"],
            },
        }
    )
    expected += FINAL_FRAME
    assert st.raw == expected
    assert st.raw.endswith(b'\n\ndata:{"code": 0, "message": "", "data": true}\n\n')
    assert b"data: " not in st.raw
    assert last["reference"]["total"] == 1
    assert last["prompt"].startswith("system: ") and last["prompt"].endswith(f"user: {QUESTION}")


@pytest.mark.parametrize("flag", [False, "false"])
def test_non_stream_body(alice: RF, chat: dict[str, Any], fake: FakeChatModel, flag: Any) -> None:
    r = alice.req("POST", completions(chat), json={"question": QUESTION, "stream": flag})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"code", "data"} and body["code"] == 0
    data = body["data"]
    assert set(data) == {"answer", "reference", "audio_binary", "id", "session_id", "prompt"}
    assert data["answer"] == "Quillon is 27 years old ##0$$."
    assert data["audio_binary"] is None and str(uuid.UUID(data["id"])) == data["id"]
    assert HEX32.fullmatch(data["session_id"])
    assert set(data["reference"]) == {"total", "chunks", "doc_aggs"}
    assert alice.fail(
        "POST", completions(chat), json={"question": QUESTION, "stream": "maybe"}
    ) == (
        102,
        "`stream` must be a boolean",
    )


def test_reference_shape(alice: RF, chat: dict[str, Any], ds: str, fake: FakeChatModel) -> None:
    data = alice.ok("POST", completions(chat), json={"question": QUESTION, "stream": False})
    ref = data["reference"]
    assert ref["total"] == len(ref["chunks"]) == 1
    (chunk,) = ref["chunks"]
    assert set(chunk) == {
        "id",
        "content",
        "document_id",
        "document_name",
        "dataset_id",
        "image_id",
        "similarity",
        "vector_similarity",
        "term_similarity",
        "positions",
    }
    assert chunk["content"] == FACT and chunk["document_name"] == "farm.txt"
    assert chunk["dataset_id"] == ds and chunk["image_id"] == "" and chunk["positions"] == []
    assert 0.2 <= chunk["similarity"] <= 1.0 and chunk["term_similarity"] == 1.0
    # similarity = (1 - keywords_similarity_weight) * vector + weight * term
    assert chunk["similarity"] == pytest.approx(
        0.3 * chunk["vector_similarity"] + 0.7 * chunk["term_similarity"]
    )
    doc = alice.ok("GET", f"/datasets/{ds}/documents")["docs"][0]
    assert chunk["document_id"] == doc["id"]
    assert ref["doc_aggs"] == [{"doc_name": "farm.txt", "doc_id": doc["id"], "count": 1}]


# ---------------------------------------------------------------------- citations


def test_citation_follows_the_supported_sentence_only(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    fake.reply = (
        "Quillon is 27 years old and the oldest llama on the farm. Bananas are yellow and curved."
    )
    st = alice.stream(completions(chat), {"question": QUESTION})
    answers = st.answers
    assert answers[-2] == fake.reply
    assert answers[-1] == (
        "Quillon is 27 years old and the oldest llama on the farm ##0$$."
        " Bananas are yellow and curved."
    )
    assert st.payloads[-2]["data"]["reference"]["chunks"][0]["content"] == FACT


def test_show_quote_false_leaves_out_the_markers(alice: RF, ds: str, fake: FakeChatModel) -> None:
    chat = alice.chat([ds], prompt={"show_quote": False})
    assert chat["do_refer"] == "0"
    st = alice.stream(completions(chat), {"question": QUESTION})
    last = st.payloads[-2]["data"]
    assert last["answer"] == "Quillon is 27 years old."
    assert last["reference"]["chunks"][0]["content"] == FACT  # the reference is still sent


def test_top_n_and_similarity_threshold_bound_the_reference(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    wide = alice.chat([ds], prompt={"similarity_threshold": 0.0, "top_n": 2})
    ref = alice.ok("POST", completions(wide), json={"question": QUESTION, "stream": False})[
        "reference"
    ]
    assert ref["total"] == 2 and ref["chunks"][0]["content"] == FACT
    # The knowledge the model saw is exactly the referenced chunks.
    system = fake.prompts[-1][0].content
    assert all(c["content"] in system for c in ref["chunks"])
    assert "compost" in system or "weather" in system


# ---------------------------------------------------------------------- sessions


def test_no_session_id_with_a_question_creates_a_session(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    st = alice.stream(completions(chat), {"question": QUESTION, "user_id": "u-7"})
    session_id = st.payloads[0]["data"]["session_id"]
    assert HEX32.fullmatch(session_id)
    assert all(p["data"]["session_id"] == session_id for p in st.payloads[:-1])
    (session,) = alice.sessions(chat["id"])
    assert session["id"] == session_id and session["name"] == "New session"
    assert session["user_id"] == "u-7"
    msgs = session["messages"]
    assert [m["role"] for m in msgs] == ["assistant", "user", "assistant"]
    assert msgs[0]["content"] == OPENER
    assert msgs[1]["content"] == QUESTION
    assert msgs[2]["content"] == st.answers[-1] == "Quillon is 27 years old ##0$$."
    # Listed, as RAGFlow lists a session: an answer's `reference` is its list of chunks.
    assert msgs[2]["reference"] == st.payloads[-2]["data"]["reference"]["chunks"]
    assert msgs[1]["id"] == msgs[2]["id"] == st.payloads[0]["data"]["id"]
    assert len(fake.prompts) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_no_session_id_and_no_question_answers_the_opener(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel, stream: bool
) -> None:
    if stream:
        st = alice.stream(completions(chat), {})
        assert set(st.answers) == {OPENER}
        assert st.raw.endswith(FINAL_FRAME)
        data = st.payloads[-2]["data"]
    else:
        data = alice.ok("POST", completions(chat), json={"stream": False})
        assert data["answer"] == OPENER
    (session,) = alice.sessions(chat["id"])
    assert data["session_id"] == session["id"]
    assert session["messages"] == [{"role": "assistant", "content": OPENER}]
    assert fake.prompts == []


def test_unknown_session_is_a_plain_json_error(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    unknown = uuid.uuid1().hex
    r = alice.req("POST", completions(chat), json={"question": QUESTION, "session_id": unknown})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"code": 102, "message": f"The session {unknown} doesn't exist"}
    assert fake.prompts == [] and alice.sessions(chat["id"]) == []


@pytest.mark.parametrize("body", [{}, {"question": ""}, {"question": "   "}])
def test_question_is_required_with_a_session(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel, body: dict[str, Any]
) -> None:
    session = alice.session(chat["id"])
    r = alice.req("POST", completions(chat), json={**body, "session_id": session["id"]})
    assert r.headers["content-type"] == "application/json"
    # RAGFlow's chat wording (its agents say `question` is required.).
    assert r.json() == {"code": 102, "message": "Please input your question."}
    assert messages_of(alice, chat, session["id"]) == session["messages"]
    assert fake.prompts == []


def test_unknown_chat(alice: RF, fake: FakeChatModel) -> None:
    unknown = uuid.uuid1().hex
    assert alice.fail("POST", f"/chats/{unknown}/completions", json={"question": "hi"}) == (
        102,
        f"You don't own the chat {unknown}",
    )


def test_conversation_is_stored_and_history_reaches_the_model(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    session = alice.session(chat["id"])
    body = {"question": QUESTION, "session_id": session["id"], "stream": False}
    first = alice.ok("POST", completions(chat), json=body)
    assert first["answer"] == "Quillon is 27 years old ##0$$."
    fake.reply = "He is older than every other llama."
    second = alice.ok("POST", completions(chat), json={**body, "question": "Is he the oldest?"})
    prompt = fake.prompts[-1]
    assert [(m.role, m.content) for m in prompt[1:]] == [
        ("user", QUESTION),
        ("assistant", "Quillon is 27 years old."),  # markers stripped, opener left out
        ("user", "Is he the oldest?"),
    ]
    assert prompt[0].role == "system" and FACT in prompt[0].content
    msgs = messages_of(alice, chat, session["id"])
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("assistant", OPENER),
        ("user", QUESTION),
        ("assistant", first["answer"]),
        ("user", "Is he the oldest?"),
        ("assistant", second["answer"]),
    ]
    assert msgs[2]["reference"] == first["reference"]["chunks"]
    assert msgs[4]["reference"] == second["reference"]["chunks"]


def test_llm_settings_reach_the_model(alice: RF, ds: str, fake: FakeChatModel) -> None:
    llm = {"temperature": 0.9, "top_p": 0.5, "presence_penalty": -1, "frequency_penalty": 1.5}
    chat = alice.chat([ds], llm={**llm, "max_tokens": 3})
    data = alice.ok("POST", completions(chat), json={"question": QUESTION, "stream": False})
    got = fake.params[-1]
    assert (got.temperature, got.top_p, got.presence_penalty, got.frequency_penalty) == (
        0.9,
        0.5,
        -1,
        1.5,
    )
    assert got.max_tokens == 3
    assert strip_marks(data["answer"]) == "Quillon is 27"
    # Another installed model answers for a chat that names it.
    other = reset(FAKES.setdefault("other", FakeChatModel("other")), "Other model here.")
    chat2 = alice.chat([ds], llm={"model_name": "other"})
    data = alice.ok("POST", completions(chat2), json={"question": QUESTION, "stream": False})
    assert data["answer"] == "Other model here." and len(other.prompts) == 1


# ---------------------------------------------------------------------- empty response


def test_empty_response_without_calling_the_model(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    session = alice.session(chat["id"])
    body = {"question": OFF_TOPIC, "session_id": session["id"]}
    st = alice.stream(completions(chat), body)
    assert set(st.answers) == {EMPTY_RESPONSE}
    assert st.raw.endswith(FINAL_FRAME)
    assert fake.prompts == []
    msgs = messages_of(alice, chat, session["id"])
    assert [(m["role"], m["content"]) for m in msgs[1:]] == [
        ("user", OFF_TOPIC),
        ("assistant", EMPTY_RESPONSE),
    ]
    data = alice.ok("POST", completions(chat), json={**body, "stream": False})
    assert data["answer"] == EMPTY_RESPONSE and data["reference"]["chunks"] == []
    assert fake.prompts == []


def test_a_null_empty_response_lets_the_model_answer(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    """ragflow-sdk sends `empty_response: null`: nothing retrieved, the model still answers."""
    chat = alice.chat([ds], prompt={"empty_response": None})
    fake.reply = "I do not know that zebra."
    data = alice.ok("POST", completions(chat), json={"question": OFF_TOPIC, "stream": False})
    assert data["answer"] == "I do not know that zebra."
    assert data["reference"] == {"total": 0, "chunks": [], "doc_aggs": []}
    assert len(fake.prompts) == 1 and FACT not in fake.prompts[0][0].content


def test_a_chat_without_datasets_always_asks_the_model(alice: RF, fake: FakeChatModel) -> None:
    chat = alice.chat([])
    data = alice.ok("POST", completions(chat), json={"question": OFF_TOPIC, "stream": False})
    assert data["answer"] == "Quillon is 27 years old."  # no chunks: nothing to cite
    assert len(fake.prompts) == 1


def test_a_chat_whose_datasets_are_gone_gives_the_empty_response(
    alice: RF, fake: FakeChatModel
) -> None:
    gone = alice.parsed_dataset(FARM)
    chat = alice.chat([gone])
    alice.ok("DELETE", "/datasets", json={"ids": [gone]})
    data = alice.ok("POST", completions(chat), json={"question": QUESTION, "stream": False})
    assert data["answer"] == EMPTY_RESPONSE and fake.prompts == []


# ---------------------------------------------------------------------- prompt variables


def test_declared_variables_are_required_and_substituted(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    prompt = {
        "prompt": "Answer in {lang} for {audience}.\n{knowledge}",
        "variables": [
            {"key": "knowledge", "optional": False},
            {"key": "lang", "optional": False},
            {"key": "audience", "optional": True},
        ],
    }
    chat = alice.chat([ds], prompt=prompt)
    session = alice.session(chat["id"])
    body = {"question": QUESTION, "session_id": session["id"], "stream": False}
    assert alice.fail("POST", completions(chat), json=body) == (102, "Miss parameter: lang")
    assert fake.prompts == []
    alice.ok("POST", completions(chat), json={**body, "lang": "French"})
    system = fake.prompts[-1][0].content
    assert system.startswith("Answer in French for  .\n")  # optional and absent: a space
    assert FACT in system and "{" not in system
    alice.ok("POST", completions(chat), json={**body, "lang": "Welsh", "audience": "children"})
    assert fake.prompts[-1][0].content.startswith("Answer in Welsh for children.\n")


def test_a_missing_variable_is_reported_even_when_nothing_is_retrieved(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    prompt = {"prompt": "In {lang}: {knowledge}", "variables": [{"key": "lang"}]}
    chat = alice.chat([ds], prompt=prompt)
    assert alice.fail("POST", completions(chat), json={"question": OFF_TOPIC, "stream": False}) == (
        102,
        "Miss parameter: lang",
    )
    # A failed request leaves no session behind.
    assert alice.sessions(chat["id"]) == []


# ---------------------------------------------------------------------- model failures


def test_a_model_failing_mid_stream_sends_an_error_frame_then_the_end(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    session = alice.session(chat["id"])
    fake.fail_after = 2
    st = alice.stream(completions(chat), {"question": QUESTION, "session_id": session["id"]})
    assert st.status == 200
    assert st.answers == ["Quillon", "Quillon is"]
    assert st.frames[-2] + b"\n\n" == frame(
        {
            "code": 500,
            "message": "fake model backend failed",
            "data": {"answer": "**ERROR**: fake model backend failed", "reference": []},
        }
    )
    assert st.raw.endswith(FINAL_FRAME) and len(st.frames) == 4
    # A failed turn is not stored.
    assert messages_of(alice, chat, session["id"]) == session["messages"]


def test_a_model_failing_before_the_first_token(
    alice: RF, chat: dict[str, Any], fake: FakeChatModel
) -> None:
    """What happens (documented, not required by RAGFlow): a stream has already begun when the
    model is first asked, so it is HTTP 200 event-stream with the error frame and the end
    frame; without streaming it is RAGFlow's JSON error (code 100, exception)."""
    fake.fail_after = 0
    st = alice.stream(completions(chat), {"question": QUESTION})
    assert st.status == 200 and st.headers["content-type"].startswith("text/event-stream")
    assert [p["code"] for p in st.payloads] == [500, 0]
    assert st.payloads[0]["data"]["answer"] == "**ERROR**: fake model backend failed"
    assert st.raw.endswith(FINAL_FRAME)
    r = alice.req("POST", completions(chat), json={"question": QUESTION, "stream": False})
    assert r.status_code == 200
    assert r.json() == {"code": 100, "message": "fake model backend failed"}


# ---------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def real(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[RF]:
    s = keyed_settings(tmp_path_factory.mktemp("rf_real"), model_cache, api_keys)
    container = build_container(s)
    try:
        with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
            yield RF(c, api_keys["alice"])
    finally:
        container.close()


@pytest.mark.slow
def test_the_real_default_model_answers_from_an_uploaded_file(real: RF) -> None:
    ds = real.parsed_dataset(FARM)
    chat = real.chat([ds], name=uniq("real"), llm={"max_tokens": 24, "temperature": 0.0})
    assert chat["llm"]["model_name"] == DEFAULT_MODEL
    st = real.stream(completions(chat), {"question": QUESTION})
    assert st.status == 200 and st.raw.endswith(FINAL_FRAME)
    payloads = st.payloads
    assert all(p["code"] == 0 for p in payloads), payloads
    answers = st.answers
    assert len(answers) >= 3, answers
    # Cumulative: each frame extends the previous one; only the last content frame may add
    # citation markers.
    for before, after in itertools.pairwise(answers[:-1]):
        assert after.startswith(before) and len(after) > len(before), (before, after)
    assert strip_marks(answers[-1]) == answers[-2]
    last = payloads[-2]["data"]
    assert last["reference"]["chunks"][0]["content"] == FACT
    assert "27" in answers[-1], answers[-1]
