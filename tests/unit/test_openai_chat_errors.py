"""OpenAICompatibleChatModel: error mapping and SSE parsing edge cases.

The contract suite runs this adapter against a real `llama_cpp.server`; the failure modes here
(a 500, a rejected key, malformed JSON, an error object mid-stream, a server that rejects
`stream_options` or sends no usage, a dropped keep-alive connection) cannot be produced on
demand by that server, which is why an `httpx.MockTransport` fake answers instead. The
unreachable-server case needs no fake: it uses a real closed port on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from pasture.adapters.remote.openai_chat import OpenAICompatibleChatModel
from pasture.domain.chat import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    TextDelta,
    Usage,
)
from pasture.domain.errors import Invalid, PastureError, Unavailable, Upstream

BASE = "http://models.test/v1"
KEY = "sk-test-7f3a9c1e5b"
MESSAGES = [ChatMessage("user", "Hi there")]
PARAMS = GenerationParams(max_tokens=8, temperature=0.0)

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class Fake:
    """A scripted server: answers requests in order from `replies`, records each request."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def model_with(fake: Handler, **kw: Any) -> OpenAICompatibleChatModel:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    kw.setdefault("api_key", KEY)
    return OpenAICompatibleChatModel(BASE, "tiny", client=client, **kw)


def sse(*events: str, sep: str = "\n\n") -> httpx.Response:
    body = "".join(f"{e}{sep}" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"choices": [choice], **extra})


def reply(text: str, finish: str = "stop", usage: dict[str, int] | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]
    }
    body["choices"][0]["finish_reason"] = finish
    if usage is not None:
        body["usage"] = usage
    return httpx.Response(200, json=body)


def error_reply(status: int, message: str, code: str | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": "invalid_request_error", "code": code}}
    )


def usage_of(prompt: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def run_complete(model: OpenAICompatibleChatModel) -> Completion:
    return asyncio.run(model.complete(MESSAGES, PARAMS))


def run_stream(
    model: OpenAICompatibleChatModel, params: GenerationParams = PARAMS
) -> list[TextDelta | Completion]:
    async def go() -> list[TextDelta | Completion]:
        return [item async for item in model.stream(MESSAGES, params)]

    return asyncio.run(go())


def raises(kind: type[PastureError], fn: Callable[[], object]) -> str:
    """The message of the domain error `fn` raises; it must never carry the key."""
    with pytest.raises(kind) as info:
        fn()
    assert KEY not in info.value.message
    return info.value.message


# ---------------------------------------------------------------------- transport failures


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    model = OpenAICompatibleChatModel(base, "tiny", api_key=KEY, connect_timeout=2)
    msg = raises(Unavailable, lambda: run_complete(model))
    assert msg.startswith(f"chat model server at {base} is unreachable")
    assert raises(Unavailable, lambda: run_stream(model)).startswith("chat model server at")


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectTimeout("slow"), "connect timeout"),
        (httpx.ReadTimeout("slow"), "read timeout"),
        (httpx.WriteTimeout("slow"), "write timeout"),
    ],
)
def test_timeouts_say_which(exc: Exception, words: str) -> None:
    msg = raises(Upstream, lambda: run_complete(model_with(Fake(exc), read_timeout=7)))
    assert words in msg
    assert ("5 s" if words == "connect timeout" else "7 s") in msg


def test_a_dropped_keep_alive_connection_is_retried_once() -> None:
    fake = Fake(httpx.RemoteProtocolError("Server disconnected"), reply("hello"))
    assert run_complete(model_with(fake)).text == "hello"
    assert len(fake.requests) == 2
    fake = Fake(httpx.ReadError("reset"), httpx.ReadError("reset"))
    msg = raises(Upstream, lambda: run_complete(model_with(fake)))
    assert msg == f"connection to the chat model server at {BASE} failed: reset"
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------- HTTP errors


def test_rejected_key() -> None:
    # Some servers echo the key they refused; it must not reach our message.
    fake = Fake(error_reply(401, f"Incorrect API key provided: {KEY}"))
    msg = raises(Upstream, lambda: run_complete(model_with(fake)))
    assert "rejected the API key (HTTP 401)" in msg
    assert "Incorrect API key provided: ***" in msg
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"
    msg = raises(Upstream, lambda: run_stream(model_with(Fake(httpx.Response(403)))))
    assert "rejected the API key (HTTP 403)" in msg


def test_missing_key() -> None:
    fake = Fake(httpx.Response(401, json={"detail": "Invalid API key"}))
    msg = raises(Upstream, lambda: run_complete(model_with(fake, api_key=None)))
    assert "requires an API key (HTTP 401), and none is configured: Invalid API key" in msg
    assert "authorization" not in fake.requests[0].headers


def test_server_error_with_openai_body() -> None:
    fake = Fake(error_reply(500, "llama_decode returned -3"))
    msg = raises(Upstream, lambda: run_complete(model_with(fake)))
    assert msg == f"chat model server at {BASE} answered HTTP 500: llama_decode returned -3"


def test_long_plain_text_error_is_truncated() -> None:
    fake = Fake(httpx.Response(502, text="<html>" + "bad gateway " * 100 + "</html>"))
    msg = raises(Upstream, lambda: run_stream(model_with(fake)))
    assert "answered HTTP 502: <html>bad gateway" in msg
    assert len(msg) < 400 and msg.endswith("…")


@pytest.mark.parametrize(
    "answer",
    [
        # OpenAI, vLLM and llama_cpp.server
        error_reply(
            400,
            "This model's maximum context length is 2048 tokens. However, you requested "
            "3037 tokens (3031 in the messages, 6 in the completion).",
            "context_length_exceeded",
        ),
        # llama.cpp's own server
        httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                }
            },
        ),
    ],
)
def test_context_exceeded_is_invalid(answer: httpx.Response) -> None:
    msg = raises(Invalid, lambda: run_complete(model_with(Fake(answer))))
    assert "context" in msg
    fake = Fake(answer)
    raises(Invalid, lambda: run_stream(model_with(fake)))
    assert len(fake.requests) == 1  # not mistaken for a refused stream_options


def test_other_400_is_upstream() -> None:
    fake = Fake(error_reply(400, "temperature must be non-negative"))
    msg = raises(Upstream, lambda: run_complete(model_with(fake)))
    assert "HTTP 400: temperature must be non-negative" in msg


def test_malformed_json() -> None:
    fake = Fake(httpx.Response(200, text="{not json"))
    assert "malformed JSON" in raises(Upstream, lambda: run_complete(model_with(fake)))
    fake = Fake(httpx.Response(200, json={"object": "chat.completion"}))
    assert "without choices" in raises(Upstream, lambda: run_complete(model_with(fake)))
    fake = Fake(sse(chunk("Hel"), "data: {broken"))
    assert "malformed JSON" in raises(Upstream, lambda: run_stream(model_with(fake)))


# ---------------------------------------------------------------------- streams


def test_stream_error_object_mid_stream() -> None:
    seen: list[TextDelta | Completion] = []

    async def go(model: OpenAICompatibleChatModel) -> None:
        async for item in model.stream(MESSAGES, PARAMS):
            seen.append(item)

    error = 'data: {"error": {"message": "CUDA out of memory", "type": "server_error"}}'
    fake = Fake(sse(chunk("Hel"), chunk("lo"), error, chunk(" there", "stop")))
    msg = raises(Upstream, lambda: asyncio.run(go(model_with(fake))))
    assert msg == f"chat model server at {BASE} failed: CUDA out of memory"
    assert seen == [TextDelta("Hel"), TextDelta("lo")]
    # llama.cpp's server sends its stream errors as an `error:` line
    fake = Fake(sse(chunk("Hel"), 'error: {"message": "slot unavailable", "code": 503}'))
    assert "slot unavailable" in raises(Upstream, lambda: run_stream(model_with(fake)))


def test_stream_data_without_space_comments_and_crlf() -> None:
    body = (
        ": ping\r\n\r\n"
        'data:{"choices":[{"delta":{"role":"assistant"},"finish_reason":null}]}\r\n\r\n'
        'data:{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\r\n'
        'data: {"choices":[{"delta":{"content":" you"},"finish_reason":null}]}\r\n'
        "event: message\r\n"
        'data:{"choices":[{"delta":{},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":2}}\r\n\r\n'
        "data:[DONE]\r\n\r\n"
        'data:{"choices":[{"delta":{"content":"after done"}}]}\r\n\r\n'
    )
    fake = Fake(httpx.Response(200, text=body))
    items = run_stream(model_with(fake))
    assert items == [
        TextDelta("Hi"),
        TextDelta(" you"),
        Completion("Hi you", FinishReason.STOP, usage_of(9, 2)),
    ]


def test_stream_asks_for_usage_and_takes_the_usage_chunk() -> None:
    usage_chunk = 'data: {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}'
    fake = Fake(sse(chunk("a"), chunk("b"), chunk("c", "stop"), usage_chunk, "data: [DONE]"))
    items = run_stream(model_with(fake))
    assert items[-1] == Completion("abc", FinishReason.STOP, usage_of(12, 3))
    assert fake.bodies[0]["stream"] is True
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_is_estimated() -> None:
    # llama_cpp.server ignores stream_options and never sends usage in a stream.
    model = model_with(Fake(sse(chunk("One"), chunk(" two"), chunk(None, "stop"), "data: [DONE]")))
    done = run_stream(model)[-1]
    assert isinstance(done, Completion)
    assert done.usage == usage_of(model.count_tokens(MESSAGES), 2)  # one token per chunk
    # Cut by max_tokens: exactly max_tokens were generated.
    fake = Fake(sse(chunk("a b"), chunk(" c"), chunk(None, "length")))  # no [DONE] either
    done = run_stream(model_with(fake))[-1]
    assert isinstance(done, Completion)
    assert done.finish_reason == FinishReason.LENGTH
    assert done.usage.completion_tokens == PARAMS.max_tokens


def test_complete_without_usage_is_estimated() -> None:
    model = model_with(Fake(reply("Hello there, friend")))
    done = run_complete(model)
    assert done.usage.prompt_tokens == model.count_tokens(MESSAGES)
    assert 1 <= done.usage.completion_tokens <= PARAMS.max_tokens
    done = run_complete(
        model_with(Fake(reply("ok", usage={"prompt_tokens": 5, "completion_tokens": 1})))
    )
    assert done.usage == usage_of(5, 1)


@pytest.mark.parametrize("status", [400, 422])
def test_rejected_stream_options_are_dropped_and_remembered(status: int) -> None:
    refused = error_reply(status, "Unrecognized request argument supplied: stream_options")
    fake = Fake(
        refused,
        sse(chunk("Hi"), chunk(None, "stop"), "data: [DONE]"),
        sse(chunk("Yo"), chunk(None, "stop"), "data: [DONE]"),
    )
    model = model_with(fake)
    usage = usage_of(model.count_tokens(MESSAGES), 1)  # estimated: these send no usage
    assert run_stream(model)[-1] == Completion("Hi", FinishReason.STOP, usage)
    assert run_stream(model)[-1] == Completion("Yo", FinishReason.STOP, usage)
    assert ["stream_options" in b for b in fake.bodies] == [True, False, False]


def test_a_400_that_persists_without_stream_options_is_reported() -> None:
    bad = error_reply(400, "unknown model 'tiny'")
    fake = Fake(bad, error_reply(400, "unknown model 'tiny'"), sse(chunk("x", "stop")))
    model = model_with(fake)
    assert "unknown model 'tiny'" in raises(Upstream, lambda: run_stream(model))
    run_stream(model)
    assert "stream_options" in fake.bodies[2]  # not blamed on stream_options


def test_stream_cut_mid_answer_is_upstream() -> None:
    # What llama_cpp.server with interrupt_requests does when another request arrives.
    fake = Fake(sse(chunk("Once upon"), chunk(" a time"), "data: [DONE]"))
    msg = raises(Upstream, lambda: run_stream(model_with(fake)))
    assert "mid-answer" in msg


def test_empty_stream_asks_again_without_streaming() -> None:
    # llama_cpp.server's answer to a streamed prompt longer than its context: 200, no events.
    too_long = error_reply(400, "maximum context length is 2048 tokens", "context_length_exceeded")
    fake = Fake(sse(), too_long)
    raises(Invalid, lambda: run_stream(model_with(fake)))
    assert [b.get("stream", False) for b in fake.bodies] == [True, False]
    # ... and when the second try answers, its text arrives as one delta.
    fake = Fake(sse(), reply("Hello", usage={"prompt_tokens": 4, "completion_tokens": 2}))
    assert run_stream(model_with(fake)) == [
        TextDelta("Hello"),
        Completion("Hello", FinishReason.STOP, usage_of(4, 2)),
    ]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("stop", FinishReason.STOP),
        ("eos", FinishReason.STOP),
        ("content_filter", FinishReason.STOP),
        ("tool_calls", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
    ],
)
def test_finish_reasons(raw: str, want: FinishReason) -> None:
    assert run_complete(model_with(Fake(reply("x", raw)))).finish_reason == want
    done = run_stream(model_with(Fake(sse(chunk("x"), chunk(None, raw)))))[-1]
    assert isinstance(done, Completion) and done.finish_reason == want


def test_closing_the_stream_closes_the_response() -> None:
    closed = asyncio.Event()

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            while True:
                yield (chunk("tok") + "\n\n").encode()
                await asyncio.sleep(0)

        async def aclose(self) -> None:
            closed.set()

    async def go() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, stream=Endless())

        gen = model_with(handler).stream(MESSAGES, PARAMS)
        assert isinstance(gen, AsyncGenerator)
        assert await anext(gen) == TextDelta("tok")
        await gen.aclose()
        assert closed.is_set()

    asyncio.run(go())


# ---------------------------------------------------------------------- requests


def test_request_carries_only_the_set_params() -> None:
    fake = Fake(reply("a"), reply("b"))
    model = model_with(fake)
    asyncio.run(model.complete(MESSAGES, GenerationParams(max_tokens=5)))
    params = GenerationParams(
        max_tokens=7,
        temperature=0.3,
        top_p=0.9,
        top_k=20,
        stop=("\n\n", "END"),
        seed=42,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )
    asyncio.run(model.complete(MESSAGES, params))
    assert str(fake.requests[0].url) == f"{BASE}/chat/completions"
    assert fake.bodies[0] == {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi there"}],
        "max_tokens": 5,
    }
    assert fake.bodies[1] == {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi there"}],
        "max_tokens": 7,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 20,
        "seed": 42,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "stop": ["\n\n", "END"],
    }


def test_credentials_in_the_url_stay_out_of_messages() -> None:
    model = OpenAICompatibleChatModel(
        "http://admin:hunter2@models.test/v1",
        "tiny",
        client=httpx.AsyncClient(transport=httpx.MockTransport(Fake(httpx.Response(500)))),
    )
    msg = raises(Upstream, lambda: run_complete(model))
    assert "hunter2" not in msg and "http://models.test/v1" in msg


def test_count_tokens_is_an_upper_estimate() -> None:
    # The contract suite checks it against a real server's count; here, its shape.
    model = OpenAICompatibleChatModel(BASE, "tiny")
    empty = model.count_tokens([ChatMessage("user", "")])
    assert empty > 8  # template overhead is counted
    assert model.count_tokens([ChatMessage("user", "x" * 300)]) - empty == 100  # ~3 bytes/token
    # CJK: about one token per character, where counting characters / 3 would undercount.
    assert model.count_tokens([ChatMessage("user", "你好世界" * 10)]) - empty == 40
    assert model.count_tokens([*MESSAGES, *MESSAGES]) > model.count_tokens(MESSAGES)
