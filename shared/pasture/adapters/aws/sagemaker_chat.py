"""SageMakerChatModel: the chat model of Pasture's GPU container on a SageMaker endpoint.

The container's router (infra/inference/router.py) hands `{"task": "chat", ...}` to a llama.cpp
server's `/v1/chat/completions`, so the request and the answer are OpenAI's chat format:
`complete` is one InvokeEndpoint, `stream` one InvokeEndpointWithResponseStream whose
PayloadPart events carry the server's SSE stream cut at arbitrary bytes (reassembled into
lines here; NDJSON lines are read too). Every boto3 call and every read of the event stream
runs in a worker thread; closing the stream early shuts its connection, and SageMaker, the
router and the llama.cpp server each stop in turn when their client goes away.

Usage is the server's own when it reports it (llama.cpp's server does, with
`stream_options.include_usage`); a server that sends none in a stream (llama-cpp-python's)
gets the count of content chunks, one token each on llama.cpp-style servers.

Errors: the container's 4xx saying the prompt does not fit (or a 413) is `Invalid`; its 503
(a backend down) `Unavailable`; throttling and connection failures `Unavailable`; the rest
`Upstream`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from pasture.adapters import openai_wire as wire
from pasture.adapters.aws.sagemaker_runtime import (
    CONTENT_JSON,
    TASK_CHAT,
    LineAssembler,
    ModelFailure,
    SageMakerEndpoint,
    abort_stream,
    call,
    clean,
    payload_parts,
)
from pasture.domain.chat import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    TextDelta,
    Usage,
)
from pasture.domain.errors import Invalid, PastureError, Unavailable, Upstream
from pasture.ports import ChatModel

WHAT = "the SageMaker chat model"


class SageMakerChatModel(ChatModel):
    def __init__(self, client: Any, endpoint: str, *, name: str, context_length: int) -> None:
        self.name = name
        self.context_length = context_length
        self._endpoint = SageMakerEndpoint(client, endpoint)

    # ------------------------------------------------------------------ port

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """A conservative upper estimate (openai_wire.BYTES_PER_TOKEN): no tokenizer at hand."""
        return wire.estimate_prompt_tokens(messages)

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Completion:
        body = _body(messages, params, stream=False)
        try:
            raw = await call(self._endpoint.invoke, body, CONTENT_JSON)
        except ModelFailure as e:
            raise _failure(e) from e
        data = _json(raw.decode("utf-8", "replace"))
        if "error" in data:
            raise _error_object(data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise Upstream(f"{WHAT} answered without choices")
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        text = text if isinstance(text, str) else ""
        finish = wire.finish_reason(choices[0].get("finish_reason"))
        usage = wire.usage(data.get("usage")) or self._estimate(
            messages, params, text, finish, None
        )
        return Completion(text=text, finish_reason=finish, usage=usage)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[TextDelta | Completion]:
        body = _body(messages, params, stream=True)
        try:
            events = await self._endpoint.open_stream_async(body, CONTENT_JSON)
        except ModelFailure as e:
            raise _failure(e) from e
        parts: list[str] = []
        finish_raw: str | None = None
        usage: Usage | None = None
        chunks = _chunk_stream(events)
        ended = False
        try:
            async for chunk in chunks:
                usage = wire.usage(chunk.get("usage")) or usage
                content, reason = wire.delta(chunk)
                if content:
                    parts.append(content)
                    yield TextDelta(content)
                finish_raw = reason or finish_raw
            ended = True
        finally:
            # Every way out but the end (an error, the consumer's aclose or cancellation)
            # drops the connection, which is how the generation learns to stop.
            await chunks.aclose()
            if not ended:
                abort_stream(events)
        cut_off = f"{WHAT} ended the stream mid-answer without a finish reason"
        async for out in wire.stream_end(
            self, messages, params, parts, finish_raw, usage, cut_off=cut_off
        ):
            yield out

    # ------------------------------------------------------------------ helpers

    def _estimate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        text: str,
        finish: FinishReason,
        pieces: int | None,
    ) -> Usage:
        return wire.estimate_usage(self.count_tokens(messages), params, text, finish, pieces=pieces)


# ---------------------------------------------------------------------- wire


async def _chunk_stream(events: Any) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON chunks of the event stream, up to `[DONE]` or its end."""
    lines = LineAssembler()
    parts = payload_parts(events)
    try:
        async for data in parts:
            for chunk in _chunks(lines.feed(data)):
                if chunk is None:
                    return
                yield chunk
        for chunk in _chunks(lines.close()):
            if chunk is None:
                return
            yield chunk
    finally:
        await parts.aclose()


def _body(messages: Sequence[ChatMessage], params: GenerationParams, *, stream: bool) -> bytes:
    body = {
        "task": TASK_CHAT,
        **wire.request_body(messages, params, stream=stream, stream_usage=True),
    }
    return json.dumps(body).encode()


def _chunks(lines: list[str]) -> list[dict[str, Any] | None]:
    """The JSON chunks of complete lines: SSE `data:` lines or bare NDJSON objects; None for
    `[DONE]`. An `error:` line or a chunk with an `error` raises."""
    out: list[dict[str, Any] | None] = []
    for line in lines:
        if line.startswith("{"):
            value = line
        else:
            field, sep, value = line.partition(":")
            if not sep or not field:
                continue  # blank line between events, or an SSE comment (": ping")
            value = value[1:] if value.startswith(" ") else value
            if field == "error":
                try:
                    error: Any = json.loads(value)
                except ValueError:
                    error = value
                raise _error_object(error)
            if field != "data":
                continue  # event:, id:, retry:
        value = value.strip()
        if value == "[DONE]":
            out.append(None)
            break
        chunk = _json(value)
        if "error" in chunk:
            raise _error_object(chunk["error"])
        out.append(chunk)
    return out


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Upstream(f"{WHAT} sent malformed JSON: {clean(text)!r}")
    return data


def _failure(e: ModelFailure) -> PastureError:
    """The container's error status as a Pasture error."""
    if e.status == 413 or (400 <= e.status < 500 and wire.is_context_error(e.message, e.code)):
        return Invalid(e.message)
    if e.status == 503:
        return Unavailable(f"{WHAT} is unavailable: {e.message}")
    return Upstream(f"{WHAT} answered HTTP {e.status}: {e.message}")


def _error_object(error: Any) -> PastureError:
    """An `{"error": ...}` that came with a 2xx (in a stream or a body)."""
    message, code = wire.error_parts(json.dumps({"error": error}))
    message = clean(message) or "unspecified error"
    if wire.is_context_error(message, code):
        return Invalid(message)
    return Upstream(f"{WHAT} failed: {message}")
