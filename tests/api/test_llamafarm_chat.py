"""LlamaFarm chat endpoints over the real app, storage and retrieval, with a fake chat model.

The model is the one fake here (deterministic text and token counts, recorded prompts) so the
assertions can be exact; the real llama.cpp model is exercised by the ChatModel contract
suite and the end-to-end tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.bootstrap import build_container
from pasture.domain.projects import ModelConfig
from pasture.ports import ChatModel
from pasture.services import keys
from tests.api.conftest import keyed_settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.llamafarm import LF, uniq

FAKES: dict[str, FakeChatModel] = {}


def fake_factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
    if mc.name not in FAKES:
        FAKES[mc.name] = FakeChatModel(mc.model or mc.name)
    return ("fake", mc.name), lambda: FAKES[mc.name]


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    s = keyed_settings(tmp_path_factory.mktemp("chat"), model_cache, api_keys)
    container = build_container(s, chat_factory=fake_factory)
    try:
        with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
            yield c
    finally:
        container.close()


@pytest.fixture
def fake() -> Iterator[FakeChatModel]:
    """The `default` model's fake, reset for each test."""
    fake_factory(ModelConfig(name="default", model="smollm2-135m-instruct"))
    f = FAKES["default"]
    f.reply, f.delay, f.fail_after, f.context_length = (
        "Pasture fake answer: grass is green.",
        0.0,
        None,
        4096,
    )
    f.prompts.clear()
    f.params.clear()
    yield f


def chat(lf: LF, ns: str, p: str, content: str | None = None, **kw: Any) -> Any:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content or "Hello!"}]}
    headers = kw.pop("headers", {})
    body.update(kw)
    return lf.req("POST", f"/v1/projects/{ns}/{p}/chat/completions", json=body, headers=headers)


def sse(lf: LF, ns: str, p: str, body: dict[str, Any], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """(response headers, raw lines) of a streamed completion."""
    with lf.c.stream(
        "POST",
        f"/v1/projects/{ns}/{p}/chat/completions",
        json={**body, "stream": True},
        headers={**lf.h, **(headers or {})},
    ) as r:
        assert r.status_code == 200, r.read()
        return r.headers, [line for line in r.iter_lines() if line]


def project(lf: LF, template: str = "server") -> tuple[str, str]:
    ns, p = uniq("ns"), uniq("chat")
    assert lf.create_project(ns, p, template).status_code == 200
    return ns, p


# ---------------------------------------------------------------------- completions


def test_completion_has_openai_shape_usage_and_a_session(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    r = chat(alice, ns, p, "What is Pasture?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "default"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Pasture fake answer: grass is green."},
            "finish_reason": "stop",
        }
    ]
    prompt = fake.prompts[-1]
    assert body["usage"] == {
        "prompt_tokens": fake.count_tokens(prompt),
        "completion_tokens": 6,
        "total_tokens": fake.count_tokens(prompt) + 6,
    }
    assert "references" not in body  # the server template does not use RAG by default
    assert uuid.UUID(r.headers["X-Session-ID"])
    # The project's system prompt comes first, then the user's message.
    assert [m.role for m in prompt] == ["system", "user"]
    assert prompt[0].content == "You are a helpful assistant."


def test_stream_frames_are_openai_chunks_ending_with_done(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    headers, lines = sse(
        alice,
        ns,
        p,
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "stream_options": {"include_usage": True},
        },
    )
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    assert uuid.UUID(headers["x-session-id"])
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    text = "".join(d.get("content", "") for d in deltas)
    assert text == "Pasture fake answer: grass is green."
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_stream_without_include_usage_has_no_usage_chunk(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    _, lines = sse(alice, ns, p, {"messages": [{"role": "user", "content": "Hi"}]})
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["choices"] for c in chunks)


def test_error_inside_a_stream_is_a_frame_then_done(alice: LF, fake: FakeChatModel) -> None:
    fake.fail_after = 2
    ns, p = project(alice)
    _, lines = sse(alice, ns, p, {"messages": [{"role": "user", "content": "Hi"}]})
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])
    assert error["error"]["message"] == "fake model backend failed"
    assert error["error"]["code"] == 502
    assert len(lines) == 4  # two content chunks, the error, [DONE]


def test_sampling_parameters_reach_the_model(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    r = chat(
        alice,
        ns,
        p,
        temperature=0.3,
        top_p=0.5,
        top_k=7,
        max_tokens=3,
        stop=["END"],
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    assert r.status_code == 200, r.text
    got = fake.params[-1]
    assert (got.temperature, got.top_p, got.top_k, got.max_tokens) == (0.3, 0.5, 7, 3)
    assert (got.stop, got.seed, got.presence_penalty, got.frequency_penalty) == (
        ("END",),
        11,
        0.5,
        -0.5,
    )
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    # max_completion_tokens is OpenAI's newer name; a lone stop string is a list of one.
    chat(alice, ns, p, max_completion_tokens=2, stop="X")
    assert (fake.params[-1].max_tokens, fake.params[-1].stop) == (2, ("X",))


def test_content_parts_and_developer_role_are_understood(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    r = alice.req(
        "POST",
        f"/v1/projects/{ns}/{p}/chat/completions",
        json={
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [(m.role, m.content) for m in fake.prompts[-1]] == [
        ("system", "Be brief."),  # the request's system prompt replaces the project's
        ("user", "Hi there"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"messages": []}, 422, None),
        ({}, 422, None),
        ({"messages": [{"role": "tool", "content": "x"}]}, 422, None),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, 400, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "top_k": -1}, 400, "top_k"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n must be 1"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            400,
            "tools",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"},
            },
            400,
            "response_format",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
            400,
            "stop",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "rag_top_k": 0}, 400, "rag_top_k"),
        (
            {"messages": [{"role": "user", "content": "x"}], "rag_score_threshold": 2},
            400,
            "rag_score",
        ),
        ({"messages": [{"role": "assistant", "content": "x"}]}, 400, "last message"),
        ({"messages": [{"role": "system", "content": "x"}]}, 400, "last message"),
        (
            {"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"},
            400,
            "available: default",
        ),
    ],
)
def test_bad_requests_get_clear_errors(
    alice: LF, fake: FakeChatModel, body: dict[str, Any], status: int, needle: str | None
) -> None:
    ns, p = project(alice)
    for stream in (False, True):  # validation happens before any streaming starts
        r = alice.req(
            "POST", f"/v1/projects/{ns}/{p}/chat/completions", json={**body, "stream": stream}
        )
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        if needle:
            assert needle in detail


def test_unknown_project_and_missing_key(alice: LF, client: TestClient) -> None:
    assert chat(alice, "nons", "noproj").status_code == 404
    assert chat(alice, "nons", "noproj").json() == {"detail": "Project nons/noproj not found"}
    r = client.post(
        "/v1/projects/a/b/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 401


# ---------------------------------------------------------------------- sessions


def test_session_history_continues_and_is_listed(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    sid = chat(alice, ns, p, "first question").headers["X-Session-ID"]
    r = chat(alice, ns, p, "second question", headers={"X-Session-ID": sid})
    assert r.headers["X-Session-ID"] == sid
    assert [m.content for m in fake.prompts[-1][1:]] == [
        "first question",
        "Pasture fake answer: grass is green.",
        "second question",
    ]
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history")
    assert hist.status_code == 200
    assert hist.json() == {
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "Pasture fake answer: grass is green."},
            {"role": "user", "content": "second question"},
            {"role": "assistant", "content": "Pasture fake answer: grass is green."},
        ]
    }


def test_resending_the_whole_conversation_does_not_duplicate_it(
    alice: LF, fake: FakeChatModel
) -> None:
    """OpenAI-style clients send everything each time, with the session header too."""
    ns, p = project(alice)
    sid = chat(alice, ns, p, "q1").headers["X-Session-ID"]
    answer = "Pasture fake answer: grass is green."
    alice.req(
        "POST",
        f"/v1/projects/{ns}/{p}/chat/completions",
        headers={"X-Session-ID": sid},
        json={
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "q2"},
            ]
        },
    )
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert [m["content"] for m in hist["messages"]] == ["q1", answer, "q2", answer]


def test_unknown_session_id_starts_a_fresh_session_under_that_id(
    alice: LF, fake: FakeChatModel
) -> None:
    ns, p = project(alice)
    sid = "my-own-session-" + uuid.uuid4().hex[:6]
    r = chat(alice, ns, p, "hello", headers={"X-Session-ID": sid})
    assert r.headers["X-Session-ID"] == sid
    assert [m.role for m in fake.prompts[-1]] == ["system", "user"]
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert len(hist["messages"]) == 2


def test_stateless_mode_stores_nothing_and_sends_no_session_header(
    alice: LF, fake: FakeChatModel
) -> None:
    ns, p = project(alice)
    sid = chat(alice, ns, p, "remember me").headers["X-Session-ID"]
    r = chat(alice, ns, p, "stateless", headers={"X-No-Session": "true", "X-Session-ID": sid})
    assert r.status_code == 200 and "X-Session-ID" not in r.headers
    assert [m.content for m in fake.prompts[-1][1:]] == ["stateless"]  # no history either
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert len(hist["messages"]) == 2  # the stateless turn was not added
    headers, _ = sse(
        alice, ns, p, {"messages": [{"role": "user", "content": "x"}]}, {"X-No-Session": "1"}
    )
    assert "x-session-id" not in headers


def test_invalid_session_id_is_refused(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    r = chat(alice, ns, p, headers={"X-Session-ID": "bad id with spaces"})
    assert r.status_code == 400 and "session id" in r.json()["detail"]
    r = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{'x' * 200}/history")
    assert r.status_code == 400


def test_delete_one_session_then_all(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    sids = [chat(alice, ns, p, f"q{i}").headers["X-Session-ID"] for i in range(3)]
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/chat/sessions/{sids[0]}")
    assert r.status_code == 200 and r.json() == {"message": f"Session {sids[0]} deleted"}
    assert alice.req("DELETE", f"/v1/projects/{ns}/{p}/chat/sessions/{sids[0]}").status_code == 404
    assert (
        alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sids[0]}/history").status_code
        == 404
    )
    r = alice.req("DELETE", f"/v1/projects/{ns}/{p}/chat/sessions")
    assert r.json() == {"message": "Deleted 2 session(s)", "count": 2}
    assert alice.req("DELETE", f"/v1/projects/{ns}/{p}/chat/sessions").json()["count"] == 0


def test_deleting_the_project_deletes_its_sessions(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    sid = chat(alice, ns, p, "q").headers["X-Session-ID"]
    assert alice.req("DELETE", f"/v1/projects/{ns}/{p}").status_code == 200
    assert alice.create_project(ns, p, "server").status_code == 200
    assert alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").status_code == 404


def test_sessions_are_per_tenant_even_for_the_same_names(
    alice: LF, bob: LF, fake: FakeChatModel
) -> None:
    ns, p = project(alice)
    sid = chat(alice, ns, p, "alice's secret").headers["X-Session-ID"]
    assert bob.create_project(ns, p, "server").status_code == 200
    unknown = bob.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{uuid.uuid4()}/history")
    theirs = bob.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history")
    assert theirs.status_code == unknown.status_code == 404
    # Bob using Alice's id starts his own fresh session; hers is untouched.
    r = chat(bob, ns, p, "bob", headers={"X-Session-ID": sid})
    assert r.headers["X-Session-ID"] == sid
    assert [m.content for m in fake.prompts[-1][1:]] == ["bob"]
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert hist["messages"][0]["content"] == "alice's secret" and len(hist["messages"]) == 2
    assert bob.req("DELETE", f"/v1/projects/{ns}/{p}/chat/sessions").json()["count"] == 1


# ---------------------------------------------------------------------- history window


def test_history_window_drops_the_oldest_turns_and_never_overflows(
    alice: LF, fake: FakeChatModel
) -> None:
    fake.context_length = 200
    ns, p = project(alice)
    sid = uniq("s")
    for i in range(30):
        r = chat(
            alice, ns, p, f"turn {i} " + "word " * 10, max_tokens=20, headers={"X-Session-ID": sid}
        )
        assert r.status_code == 200, r.text
        prompt = fake.prompts[-1]
        assert fake.count_tokens(prompt) + min(20, 100) <= 200
        assert prompt[-1].content.startswith(f"turn {i} ")  # the newest message is always there
    # Oldest dropped first: what is kept is a contiguous recent run of turns.
    kept = [m.content.split()[1] for m in prompt[1:] if m.role == "user"]
    assert kept == [str(i) for i in range(30 - len(kept), 30)] and 1 < len(kept) < 30
    # The stored session still has everything.
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert len(hist["messages"]) == 60


def test_a_message_too_long_for_the_model_is_a_clear_400(alice: LF, fake: FakeChatModel) -> None:
    fake.context_length = 200
    ns, p = project(alice)
    r = chat(alice, ns, p, "word " * 400)
    assert r.status_code == 400 and "shorten" in r.json()["detail"]


def test_max_tokens_is_capped_by_what_the_context_has_left(alice: LF, fake: FakeChatModel) -> None:
    fake.context_length = 200
    ns, p = project(alice)
    r = chat(alice, ns, p, "word " * 100, max_tokens=5000)
    assert r.status_code == 200, r.text
    assert fake.params[-1].max_tokens == 200 - fake.count_tokens(fake.prompts[-1])


# ---------------------------------------------------------------------- RAG


@pytest.fixture(scope="module")
def rag_project(client: TestClient, api_keys: dict[str, str]) -> tuple[str, str]:
    lf = LF(client, {"X-Api-Key": api_keys["alice"]})
    ns, p, ds = lf.project_with_dataset()  # rag template: RAG on by default
    lf.upload(
        ns, p, ds, "orchard.txt", b"The orchard's oldest pear tree was planted in 1911 by Mirela."
    )
    lf.upload(ns, p, ds, "barn.md", b"# Barn\nThe red barn holds forty bales of straw in winter.")
    task = lf.process(ns, p, ds, asynchronous=True).json()["task_id"]
    assert lf.wait_task(ns, p, task)["state"] == "SUCCESS"
    return ns, p


def test_rag_puts_numbered_sources_in_the_prompt_and_returns_references(
    alice: LF, fake: FakeChatModel, rag_project: tuple[str, str]
) -> None:
    ns, p = rag_project
    r = chat(alice, ns, p, "When was the oldest pear tree planted?", rag_top_k=1)
    assert r.status_code == 200, r.text
    last = fake.prompts[-1][-1].content
    assert last.startswith("Sources:\n[1] (orchard.txt) The orchard's oldest pear tree")
    assert last.endswith("Question: When was the oldest pear tree planted?")
    refs = r.json()["references"]
    assert [(x["number"], x["document_name"]) for x in refs] == [(1, "orchard.txt")]
    assert 0 < refs[0]["score"] <= 1 and "1911" in refs[0]["content"]
    # The session keeps the user's own words, not the sources.
    sid = r.headers["X-Session-ID"]
    hist = alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").json()
    assert hist["messages"][0]["content"] == "When was the oldest pear tree planted?"


def test_rag_references_arrive_on_the_final_stream_chunk(
    alice: LF, fake: FakeChatModel, rag_project: tuple[str, str]
) -> None:
    ns, p = rag_project
    _, lines = sse(
        alice,
        ns,
        p,
        {"messages": [{"role": "user", "content": "straw in the barn"}], "rag_top_k": 2},
    )
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    final = next(c for c in chunks if c["choices"][0]["finish_reason"])
    names = [x["document_name"] for x in final["references"]]
    assert names[0] == "barn.md" and len(names) <= 2
    assert all("references" not in c for c in chunks if c is not final)


def test_rag_can_be_switched_off_and_filtered(
    alice: LF, fake: FakeChatModel, rag_project: tuple[str, str]
) -> None:
    ns, p = rag_project
    r = chat(alice, ns, p, "pear tree", rag_enabled=False)
    assert "references" not in r.json()
    assert fake.prompts[-1][-1].content == "pear tree"
    r = chat(alice, ns, p, "pear tree", rag_score_threshold=0.99)
    assert r.json()["references"] == []
    assert fake.prompts[-1][-1].content == "pear tree"  # nothing found: no sources block
    r = chat(alice, ns, p, "pear tree", database="nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_rag_on_request_for_a_server_project(
    alice: LF, fake: FakeChatModel, client: TestClient
) -> None:
    ns, p = project(alice, "server")
    assert "references" not in chat(alice, ns, p, "x").json()  # off by default
    r = chat(alice, ns, p, "x", rag_enabled=True)
    assert r.status_code == 200 and r.json()["references"] == []  # on, nothing indexed yet


# ---------------------------------------------------------------------- models


def test_models_lists_the_project_models_and_routes_by_name(alice: LF, fake: FakeChatModel) -> None:
    ns, p = project(alice)
    r = alice.req("GET", f"/v1/projects/{ns}/{p}/models")
    assert r.json() == {
        "total": 1,
        "models": [
            {
                "name": "default",
                "provider": "llamacpp",
                "model": "smollm2-135m-instruct",
                "base_url": None,
                "default": True,
                "description": "SmolLM2-135M-Instruct, embedded, run in process by llama.cpp",
            }
        ],
    }
    cfg = alice.req("GET", f"/v1/projects/{ns}/{p}").json()["project"]["config"]
    cfg["runtime"] = {
        "models": [
            {"name": "fast-model", "provider": "llamacpp", "model": "smollm2-135m-instruct"},
            {
                "name": "smart-model",
                "provider": "ollama",
                "model": "llama3.2:70b",
                "base_url": "http://127.0.0.1:9/v1",
                "description": "Larger model",
            },
        ],
        "default_model": "smart-model",
    }
    assert alice.req("PUT", f"/v1/projects/{ns}/{p}", json={"config": cfg}).status_code == 200
    listed = alice.req("GET", f"/v1/projects/{ns}/{p}/models").json()
    assert listed["total"] == 2
    assert [(m["name"], m["default"]) for m in listed["models"]] == [
        ("fast-model", False),
        ("smart-model", True),
    ]
    assert listed["models"][1]["base_url"] == "http://127.0.0.1:9/v1"
    assert chat(alice, ns, p).json()["model"] == "smart-model"
    assert FAKES["smart-model"].prompts  # the default model answered
    assert chat(alice, ns, p, model="fast-model").json()["model"] == "fast-model"
    # OpenAI clients may name the underlying model instead of the configured name.
    assert chat(alice, ns, p, model="llama3.2:70b").json()["model"] == "smart-model"
    assert alice.req("GET", f"/v1/projects/{ns}/nope/models").status_code == 404


# ---------------------------------------------------------------------- expiry


def test_sessions_slide_their_expiry_and_expired_ones_start_fresh(
    alice: LF, fake: FakeChatModel, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store hides an item once its TTL passes; the service's clock decides the TTL."""
    container = client.app.state.container  # type: ignore[attr-defined]
    ns, p = project(alice)
    sid = chat(alice, ns, p, "one").headers["X-Session-ID"]
    pk = keys.chat_sessions("alice", ns, p)  # tenants are the consumer names of the keys
    first = container.records.get(pk, sid).expires_at
    ttl = container.settings.chat_session_ttl_seconds
    assert ttl == 30 * 60 and abs(first - (time.time() + ttl)) < 5
    # A turn later on pushes the expiry out again (sliding, not fixed from creation).
    now = time.time()
    monkeypatch.setattr(container.chat, "_clock", lambda: now + 600)
    chat(alice, ns, p, "two", headers={"X-Session-ID": sid})
    assert container.records.get(pk, sid).expires_at == pytest.approx(now + 600 + ttl)
    # A session last used longer ago than the TTL is gone: history 404, and the same id
    # starts a fresh session.
    monkeypatch.setattr(container.chat, "_clock", lambda: now - ttl - 1)
    chat(alice, ns, p, "three", headers={"X-Session-ID": sid})
    monkeypatch.undo()
    assert alice.req("GET", f"/v1/projects/{ns}/{p}/chat/sessions/{sid}/history").status_code == 404
    r = chat(alice, ns, p, "four", headers={"X-Session-ID": sid})
    assert r.headers["X-Session-ID"] == sid
    assert [m.content for m in fake.prompts[-1][1:]] == ["four"]
