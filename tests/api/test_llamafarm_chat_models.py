"""Chat through the API with real models: the embedded default, and a llama.cpp server by URL.

Both run SmolLM2-135M-Instruct: in process, and behind a real `python -m llama_cpp.server` on
loopback (the `llama_server` fixture). Greedy decoding keeps the answers comparable.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers.llamafarm import LF, uniq

QUESTION = [{"role": "user", "content": "Name three colours."}]


def _project(lf: LF, models: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    ns, p = uniq("ns"), uniq("models")
    assert lf.create_project(ns, p, "server").status_code == 200
    if models:
        cfg = lf.req("GET", f"/v1/projects/{ns}/{p}").json()["project"]["config"]
        cfg["runtime"] = {"models": models, "default_model": models[0]["name"]}
        r = lf.req("PUT", f"/v1/projects/{ns}/{p}", json={"config": cfg})
        assert r.status_code == 200, r.text
    return ns, p


def _turn(lf: LF, ns: str, p: str, **body: Any) -> Any:
    return lf.req(
        "POST",
        f"/v1/projects/{ns}/{p}/chat/completions",
        json={"messages": QUESTION, "temperature": 0, "max_tokens": 12, **body},
        headers=body.pop("headers", {}),
    )


def _streamed(lf: LF, ns: str, p: str, **body: Any) -> tuple[str, list[dict[str, Any]]]:
    with lf.c.stream(
        "POST",
        f"/v1/projects/{ns}/{p}/chat/completions",
        json={"messages": QUESTION, "temperature": 0, "max_tokens": 12, "stream": True, **body},
        headers=lf.h,
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    return text, chunks


def test_embedded_default_model_answers_plain_and_streamed(alice: LF) -> None:
    ns, p = _project(alice)
    r = _turn(alice, ns, p)
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["choices"][0]["message"]["content"]
    assert text.strip() and body["model"] == "default"
    assert 0 < body["usage"]["completion_tokens"] <= 12 and body["usage"]["prompt_tokens"] > 5
    streamed, _ = _streamed(alice, ns, p)
    assert streamed == text  # same prompt, greedy: the same answer either way


def test_llama_cpp_server_by_url_answers_like_the_embedded_model(
    alice: LF, llama_server: str
) -> None:
    remote = {
        "name": "remote",
        "provider": "llamacpp-server",
        "model": "smollm2-135m-instruct",
        "base_url": llama_server,
        "description": "the same GGUF behind llama_cpp.server",
    }
    ns, p = _project(alice, [remote])
    r = _turn(alice, ns, p)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "remote"
    remote_text = body["choices"][0]["message"]["content"]
    assert remote_text.strip() and body["usage"]["completion_tokens"] <= 12
    streamed, chunks = _streamed(alice, ns, p)
    assert streamed == remote_text
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    # Sessions work the same over a remote model: the second turn sees the first.
    sid = r.headers["X-Session-ID"]
    r2 = _turn(alice, ns, p, headers={"X-Session-ID": sid})
    assert r2.status_code == 200 and r2.headers["X-Session-ID"] == sid
    assert r2.json()["usage"]["prompt_tokens"] > body["usage"]["prompt_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_model_server_is_a_clear_error(alice: LF, stream: bool) -> None:
    dead = {
        "name": "dead",
        "provider": "openai-compatible",
        "model": "x",
        "base_url": "http://127.0.0.1:9/v1",  # discard port: nothing listens
    }
    ns, p = _project(alice, [dead])
    if not stream:
        r = _turn(alice, ns, p)
        assert r.status_code == 503, r.text
        assert "unreachable" in r.json()["detail"]
        return
    # The failure comes before the first token, so it still gets a real status, not a stream.
    r = _turn(alice, ns, p, stream=True)
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert "unreachable" in r.json()["detail"]
