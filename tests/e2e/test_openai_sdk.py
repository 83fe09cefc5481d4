"""The OpenAI Python SDK as a real client of a real `pasture serve` and its default model.

`base_url` is the project (`<host>/v1/projects/<ns>/<project>`), the API key a tenant's key;
everything below goes through the SDK except the LlamaFarm-only endpoints (session history,
dataset upload) and the disconnect test, which needs to close a stream half read.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.server import Server
from tests.helpers.llamafarm import LF

pytestmark = pytest.mark.e2e

NS = "sdk"
CHAT = "chat"  # `server` template: no RAG unless asked
FARM = "farm"  # `rag` template with two processed documents
DATASET = "facts"
FACT_FILE = "quillon.txt"
# An invented fact no model can know: only the document says it.
FACT_DOC = (
    b"The Pasture test farm's oldest llama, Quillon, is 27 years old and eats 4 kg of hay a day.\n"
)
OTHER_FILE = "barn.txt"
OTHER_DOC = b"The red barn on the Pasture test farm has six stalls and a hayloft.\n"
# A request that makes SmolLM2 write on and on at temperature 0 (no early end of text).
LONG_PROMPT = (
    "Write a very long story about a llama who travels around the world."
    " Make it at least 3000 words long, with many chapters."
)
TIMEOUT = 120.0  # seconds, every request (generation is slow on a busy 2-core machine)
USER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say hello in one short sentence."}
]


@dataclass
class Live:
    srv: Server
    key: str  # alice's: she owns every project here
    other_key: str  # bob's: another tenant

    @property
    def url(self) -> str:
        return self.srv.url

    def sdk(self, project: str = CHAT, *, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1/projects/{NS}/{project}",
            api_key=key or self.key,
            timeout=openai.Timeout(TIMEOUT, connect=5.0),
            max_retries=0,
        )

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(TIMEOUT, connect=5.0),
            headers={"Authorization": f"Bearer {self.key}"},
        )

    def history(self, project: str, sid: str) -> httpx.Response:
        with self.http() as h:
            return h.get(f"/v1/projects/{NS}/{project}/chat/sessions/{sid}/history")


def _start(tmp: Path, model_cache: Path, keys: dict[str, str], **env: str) -> Server:
    api_keys = ",".join(f"{n}:{s}" for n, s in keys.items())
    return Server(tmp / "data", model_cache, {"PASTURE_API_KEYS": api_keys, **env}).start(120)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[Live]:
    srv = _start(tmp_path_factory.mktemp("sdk"), model_cache, api_keys)
    try:
        lv = Live(srv, api_keys["alice"], api_keys["bob"])
        with lv.http() as h:
            lf = LF(h)
            assert lf.create_project(NS, CHAT, template="server").status_code == 200
            assert lf.create_project(NS, FARM, template="rag").status_code == 200
            assert lf.create_dataset(NS, FARM, DATASET).status_code == 200
            for name, data in ((FACT_FILE, FACT_DOC), (OTHER_FILE, OTHER_DOC)):
                assert lf.upload(NS, FARM, DATASET, name, data).status_code == 200
            r = lf.process(NS, FARM, DATASET)
            assert r.status_code == 200 and r.json()["processed_files"] == 2, r.text
        yield lv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def short_ttl(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[Live]:
    """A second server whose sessions expire after 2 s idle."""
    srv = _start(
        tmp_path_factory.mktemp("sdk-ttl"),
        model_cache,
        api_keys,
        PASTURE_CHAT_SESSION_TTL_SECONDS="2",
    )
    try:
        lv = Live(srv, api_keys["alice"], api_keys["bob"])
        with lv.http() as h:
            assert LF(h).create_project(NS, CHAT, template="server").status_code == 200
        yield lv
    finally:
        srv.stop()


def _session_id(raw: Any) -> str:
    sid = raw.headers.get("x-session-id")
    assert sid, dict(raw.headers)
    return str(sid)


# ---------------------------------------------------------------------- completions


def test_plain_completion(live: Live) -> None:
    r = live.sdk().chat.completions.create(
        model="default", messages=USER, max_tokens=24, temperature=0
    )
    assert isinstance(r, openai.types.chat.ChatCompletion)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "default" and len(r.choices) == 1
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    u = r.usage
    assert u is not None
    assert u.prompt_tokens > 5  # the chat template and the system prompt at least
    assert 1 <= u.completion_tokens <= 24
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if choice.finish_reason == "length":
        assert u.completion_tokens == 24
    # No RAG in a `server` project: no references extension.
    assert "references" not in (r.model_extra or {})


def test_streamed_completion(live: Live) -> None:
    client = live.sdk()
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=USER,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.strip()
    assert with_choices[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert with_choices[-1].choices[0].finish_reason == finishes[0]  # the finish comes last
    # The usage chunk: after the finish, no choices.
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    u = usage_chunk.usage
    assert u.prompt_tokens > 5 and 1 <= u.completion_tokens <= 24
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens

    # Without include_usage there is no usage chunk.
    plain = list(
        client.chat.completions.create(
            model="default", messages=USER, max_tokens=8, temperature=0, stream=True
        )
    )
    assert plain and all(c.usage is None and c.choices for c in plain)
    assert plain[-1].choices[0].finish_reason in ("stop", "length")


# ---------------------------------------------------------------------- sessions


def test_session_header_round_trip(live: Live) -> None:
    client = live.sdk()
    q1, q2 = "My favourite colour is green.", "What did I just tell you?"
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": q1}], max_tokens=20, temperature=0
    )
    sid = _session_id(raw)
    a1 = raw.parse().choices[0].message.content or ""
    # The conversation resent in full, as OpenAI clients do: only the new turn is stored.
    raw2 = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[
            {"role": "user", "content": q1},
            {"role": "assistant", "content": a1},
            {"role": "user", "content": q2},
        ],
        max_tokens=20,
        temperature=0,
        extra_headers={"X-Session-ID": sid},
    )
    assert _session_id(raw2) == sid
    a2 = raw2.parse().choices[0].message.content or ""
    # The second turn carried the history: its prompt is longer than the first's.
    assert raw2.parse().usage.prompt_tokens > raw.parse().usage.prompt_tokens  # type: ignore[union-attr]

    r = live.history(CHAT, sid)
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": q2},
        {"role": "assistant", "content": a2},
    ]


def test_stateless_stores_nothing(live: Live) -> None:
    with live.http() as h:
        lf = LF(h)
        assert lf.create_project(NS, "stateless", template="server").status_code == 200
    client = live.sdk("stateless")
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=USER,
        max_tokens=8,
        temperature=0,
        extra_headers={"X-No-Session": "true"},
    )
    assert "x-session-id" not in raw.headers
    assert raw.parse().choices[0].message.content
    # Stateless wins over a session id sent alongside: that id is not stored either.
    sid = "stateless-" + secrets.token_hex(4)
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=USER,
        max_tokens=8,
        temperature=0,
        extra_headers={"X-No-Session": "true", "X-Session-ID": sid},
    )
    assert "x-session-id" not in raw.headers
    assert live.history("stateless", sid).status_code == 404
    with live.http() as h:
        r = h.delete(f"/v1/projects/{NS}/stateless/chat/sessions")
    assert r.status_code == 200 and r.json()["count"] == 0, r.text


def test_session_expires_and_id_is_reused(short_ttl: Live) -> None:
    client = short_ttl.sdk()
    sid = "ttl-" + secrets.token_hex(6)
    q1, q2 = "Remember the word apple.", "Say hi."
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": q1}],
        max_tokens=8,
        temperature=0,
        extra_headers={"X-Session-ID": sid},
    )
    assert _session_id(raw) == sid
    saved = time.monotonic()
    r = short_ttl.history(CHAT, sid)
    if time.monotonic() - saved < 1.5:  # still inside the TTL (a very slow machine may not be)
        assert r.status_code == 200 and r.json()["messages"][0]["content"] == q1

    time.sleep(3.0)  # past the 2 s TTL
    assert short_ttl.history(CHAT, sid).status_code == 404

    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": q2}],
        max_tokens=8,
        temperature=0,
        extra_headers={"X-Session-ID": sid},
    )
    assert _session_id(raw) == sid  # a fresh session under the same id
    a2 = raw.parse().choices[0].message.content
    r = short_ttl.history(CHAT, sid)
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [
        {"role": "user", "content": q2},
        {"role": "assistant", "content": a2},
    ]


# ---------------------------------------------------------------------- RAG


RAG = {"rag_enabled": True, "database": "main_db", "rag_top_k": 3}


def test_rag_fields_give_references(live: Live) -> None:
    client = live.sdk(FARM)
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": "Tell me about Quillon the llama."}],
        max_tokens=16,
        temperature=0,
        extra_body=RAG,
        extra_headers={"X-No-Session": "true"},
    )
    body = json.loads(raw.http_response.text)
    refs = body["references"]
    assert 1 <= len(refs) <= 3
    assert refs[0]["document_name"] == FACT_FILE, refs
    assert "Quillon" in refs[0]["content"]
    assert [r["number"] for r in refs] == list(range(1, len(refs) + 1))
    # The SDK keeps the extension field on the parsed object too.
    assert raw.parse().model_extra["references"] == refs  # type: ignore[index]

    # Streamed: the final chunk carries them.
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Tell me about Quillon the llama."}],
            max_tokens=8,
            temperature=0,
            stream=True,
            extra_body=RAG,
            extra_headers={"X-No-Session": "true"},
        )
    )
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1
    assert final[0].model_extra["references"][0]["document_name"] == FACT_FILE  # type: ignore[index]

    # rag_enabled false: no retrieval, no references.
    r = client.chat.completions.create(
        model="default",
        messages=USER,
        max_tokens=4,
        temperature=0,
        extra_body={"rag_enabled": False},
        extra_headers={"X-No-Session": "true"},
    )
    assert "references" not in (r.model_extra or {})


def test_default_model_answers_from_the_document(live: Live) -> None:
    """SmolLM2-135M, greedy, answers a question only the uploaded document can answer."""
    client = live.sdk(FARM)
    for question, fact in (("How old is Quillon?", "27"), ("How much hay does Quillon eat?", "4")):
        r = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": question}],
            max_tokens=40,
            temperature=0,
            extra_body=RAG,
            extra_headers={"X-No-Session": "true"},
        )
        answer = r.choices[0].message.content or ""
        assert fact in answer, (question, answer)
        assert r.model_extra["references"][0]["document_name"] == FACT_FILE  # type: ignore[index]


# ---------------------------------------------------------------------- errors


def test_errors_map_to_sdk_exceptions(live: Live) -> None:
    client = live.sdk()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=4)
    # LlamaFarm's error shape, `{"detail": ...}`, is the SDK's `body`.
    assert bad.value.status_code == 400
    assert isinstance(bad.value.body, dict) and "no-such-model" in bad.value.body["detail"]

    with pytest.raises(openai.AuthenticationError) as auth:
        live.sdk(key="wrong-" + secrets.token_hex(8)).chat.completions.create(
            model="default", messages=USER, max_tokens=4
        )
    assert auth.value.status_code == 401

    with pytest.raises(openai.NotFoundError) as missing:
        live.sdk("no-such-project").chat.completions.create(
            model="default", messages=USER, max_tokens=4
        )
    assert missing.value.status_code == 404
    # Another tenant's project is just as unknown.
    with pytest.raises(openai.NotFoundError):
        live.sdk(key=live.other_key).chat.completions.create(
            model="default", messages=USER, max_tokens=4
        )

    with pytest.raises(openai.UnprocessableEntityError) as empty:
        client.chat.completions.create(model="default", messages=[], max_tokens=4)
    assert empty.value.status_code == 422

    # The same through a stream request: errors found before streaming starts are plain
    # HTTP errors, not an SSE frame.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="no-such-model", messages=USER, max_tokens=4, stream=True
        )


# ---------------------------------------------------------------------- disconnect


def test_client_disconnect_stops_generation(live: Live) -> None:
    """Closing a stream frees the model: the next request does not wait for the first one."""
    url = f"/v1/projects/{NS}/{CHAT}/chat/completions"
    long = {
        "model": "default",
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "temperature": 0,
    }
    nosession = {"X-No-Session": "true"}
    with live.http() as h:
        # The speed of this machine now, on the same greedy path the stream below takes; the
        # prompt runs past `control` tokens without ending, so the stream would too.
        control = 400
        t = time.perf_counter()
        r = h.post(url, json={**long, "max_tokens": control}, headers=nosession)
        elapsed = time.perf_counter() - t
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["finish_reason"] == "length", body
        rate = body["usage"]["completion_tokens"] / elapsed  # tokens/s, overheads included

        read = 0
        stream = {**long, "max_tokens": 1500, "stream": True}
        with h.stream("POST", url, json=stream, headers=nosession) as s:
            assert s.status_code == 200
            for line in s.iter_lines():
                if line.startswith("data: {"):
                    read += 1
                    if read >= 8:
                        break
        closed = time.perf_counter()  # the connection is closed on leaving the block
        r = h.post(
            url,
            json={"model": "default", "messages": USER, "max_tokens": 4, "temperature": 0},
            headers=nosession,
        )
        waited = time.perf_counter() - closed
        assert r.status_code == 200, r.text

    # Had the first generation kept the model, this request would have queued behind at least
    # (control - read) more tokens of it (and up to 1500 - read).
    would_wait = (control - read) / rate
    assert waited < 0.5 * would_wait, (
        f"the next request took {waited:.2f}s; the abandoned generation would have held the"
        f" model for >= {would_wait:.2f}s more at {rate:.1f} tokens/s"
    )


def test_abandoned_non_streamed_request_frees_the_model(live: Live) -> None:
    """A client that gives up on a non-streamed reply (a timeout, a closed tab) must not keep
    the model busy: the server notices the disconnect and stops the generation."""
    url = f"/v1/projects/{NS}/{CHAT}/chat/completions"
    nosession = {"X-No-Session": "true"}
    long = {
        "model": "default",
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "temperature": 0,
        "max_tokens": 1500,
    }
    with live.http() as h:
        t = time.perf_counter()
        # The same greedy path runs at least 400 tokens without ending (and this measures the
        # machine's speed now).
        r = h.post(url, json={**long, "max_tokens": 400}, headers=nosession)
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
        rate = 400 / (time.perf_counter() - t)
        with pytest.raises(httpx.ReadTimeout):
            h.post(url, json=long, headers=nosession, timeout=1.0)  # gives up after 1 s
        closed = time.perf_counter()
        r = h.post(
            url,
            json={"model": "default", "messages": USER, "max_tokens": 4, "temperature": 0},
            headers=nosession,
        )
        waited = time.perf_counter() - closed
        assert r.status_code == 200, r.text
    would_wait = (400 - rate * 1.0) / rate  # the least the abandoned generation had left
    assert waited < 0.5 * would_wait, (
        f"the next request took {waited:.2f}s; the abandoned one would have held the model"
        f" for about {would_wait:.2f}s more at {rate:.1f} tokens/s"
    )
