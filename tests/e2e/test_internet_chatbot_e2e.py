"""llama_internet_chatbot end to end: the real `pasture serve` on 127.0.0.1 with the embedded
SmolLM2 model (answers capped at 24 tokens), driven over HTTP with httpx the way the original's
clients call it, reading the SSE answer as a stream.

The web search engine is pointed at a closed port on 127.0.0.1 (tests may not reach the
internet), so a web answer here is the "no sources" path; web answers with pages are covered
by tests/api/test_internet_answers.py against fake local servers.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server
from tests.helpers.process import free_port

pytestmark = pytest.mark.e2e
TIMEOUT = httpx.Timeout(120.0, connect=5.0)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[dict[str, str]]:
    keys = {"alice": "ak-" + secrets.token_hex(16), "bob": "bk-" + secrets.token_hex(16)}
    srv = Server(
        tmp_path_factory.mktemp("ichat-e2e") / "data",
        model_cache,
        {
            "PASTURE_API_KEYS": ",".join(f"{n}:{k}" for n, k in keys.items()),
            "PASTURE_CHAT_MAX_TOKENS": "24",
            "PASTURE_DUCKDUCKGO_URL": f"http://127.0.0.1:{free_port()}/html/",
        },
    ).start(timeout=120)
    try:
        yield {"url": srv.url, **keys}
    finally:
        srv.stop()


def client(live: dict[str, str], who: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=live["url"], timeout=TIMEOUT, headers={"X-Api-Key": live[who]})


def read_events(r: httpx.Response) -> tuple[bytes, list[str]]:
    """The raw body, and the events' data as an SSE client sees it (data lines joined by
    newlines, one event per blank line)."""
    raw = b""
    for chunk in r.iter_bytes():
        raw += chunk
    events = []
    for block in raw.decode("utf-8").split("\n\n")[:-1]:
        lines = block.split("\n")
        assert all(ln.startswith("data:") for ln in lines), block
        events.append("\n".join(ln[len("data:") :] for ln in lines))
    assert raw.endswith(b"\n\n") or raw == b""
    return raw, events


def stream_answer(h: httpx.Client, chat_id: str, attempts: int = 4) -> tuple[bytes, list[str]]:
    """The first non-empty streamed answer. The real model samples, and now and then ends its
    turn at once: that is an empty stream (and no stored row), so ask again, a few times."""
    for _ in range(attempts):
        with h.stream("GET", f"/conversations/inference/{chat_id}") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            raw, events = read_events(r)
        if events:
            return raw, events
        rows = h.get("/conversations/", params={"chat_id": chat_id}).json()
        assert rows[-1]["role"] == "Human", rows  # an empty answer is not stored
    raise AssertionError(f"{attempts} empty answers in a row")


def new_chat(h: httpx.Client, message: str) -> dict[str, Any]:
    r = h.post("/chats/create", json={"name": "e2e"})
    assert r.status_code == 201, r.text
    chat = dict(r.json())
    r = h.post(
        "/conversations/create",
        json={"chat_id": chat["id"], "role": "Human", "message": message},
    )
    assert r.status_code == 201, r.text
    return chat


def test_chat_and_streamed_inference(live: dict[str, str]) -> None:
    with client(live) as h:
        chat = new_chat(h, "Say hello to the llamas in one short sentence.")
        assert uuid.UUID(chat["id"])
        raw, events = stream_answer(h, chat["id"])
        # An event per piece of text the model gives (about a token; text held back while it
        # might be a stop string comes as one piece), `data:` with nothing added after it.
        assert 1 <= len(events) <= 32, raw
        assert raw.startswith(b"data:") and not raw.startswith(b"data: ")
        answer = "".join(events)
        assert answer.strip() and not answer.startswith(" ")
        assert "[[Human]]" not in answer  # the stop strings end the turn
        rows = h.get("/conversations/", params={"chat_id": chat["id"]}).json()
        assert [x["role"] for x in rows] == ["Human", "Assistant"]
        assert rows[1]["message"] == answer.rstrip()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", rows[1]["created_at"])

        # The next turn streams too, with the stored answer in the transcript.
        h.post(
            "/conversations/create",
            json={"chat_id": chat["id"], "role": "Human", "message": "Thank you!"},
        )
        stream_answer(h, chat["id"])
        assert [x["role"] for x in h.get(f"/conversations/?chat_id={chat['id']}").json()] == [
            "Human",
            "Assistant",
            "Human",
            "Assistant",
        ]

    # Another tenant cannot read or stream it; an empty chat says so in one frame.
    with client(live, "bob") as b:
        r = b.get(f"/conversations/inference/{chat['id']}")
        assert r.status_code == 404
        assert r.json()["error"]["reason"] == "Not Found"
        empty = b.post("/chats/create", json={"name": "empty"}).json()
        r = b.get(f"/conversations/inference/{empty['id']}")
        assert r.content == b"data:No messages found in database\n\n"


def test_internet_inference_without_a_reachable_engine(live: dict[str, str]) -> None:
    with client(live) as h:
        chat = new_chat(h, "What is the capital of France?")
        with h.stream("GET", f"/conversations/inference_internet/{chat['id']}") as r:
            assert r.status_code == 200
            _, events = read_events(r)
        assert events[-1] == "\n\nSources: none (the web search failed)"
        rows = h.get("/conversations/", params={"chat_id": chat["id"]}).json()
        assert rows[-1]["role"] == "Assistant"
        assert rows[-1]["message"].endswith("Sources: none (the web search failed)")
