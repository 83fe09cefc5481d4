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
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from pasture.adapters.aws.sagemaker_runtime import (
    CONTENT_JSON,
    TASK_CHAT,
    LineAssembler,
    ModelFailure,
    SageMakerEndpoint,
    abort_stream,
    call,
    clean,
    error_parts,
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

# count_tokens has no tokenizer at hand, so it estimates, erring high on purpose (the chat
# service fits history into the context with it: too high drops an old turn a little early,
# too low gets the request refused). 3 UTF-8 bytes a token (BPE averages ~4 characters an
# English token; bytes keep CJK, ~1 token a character, covered), plus the chat template's
# role headers per message and BOS, assistant header and a default system prompt per prompt.
_BYTES_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 8
_TOKENS_PER_PROMPT = 32
# How llama.cpp's servers (and OpenAI-compatible ones) say the prompt does not fit.
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error"}
_CONTEXT_WORDS = re.compile(
    r"context[ _](length|size|window)|maximum context|prompt is too long", re.IGNORECASE
)
_LENGTH_REASONS = {"length", "max_tokens", "model_length"}
WHAT = "the SageMaker chat model"


class SageMakerChatModel(ChatModel):
    def __init__(self, client: Any, endpoint: str, *, name: str, context_length: int) -> None:
        self.name = name
        self.context_length = context_length
        self._endpoint = SageMakerEndpoint(client, endpoint)

    # ------------------------------------------------------------------ port

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """A conservative upper estimate (see `_BYTES_PER_TOKEN`): no tokenizer at hand."""
        total = _TOKENS_PER_PROMPT
        for m in messages:
            size = len(m.role.encode()) + len(m.content.encode())
            total += _TOKENS_PER_MESSAGE + math.ceil(size / _BYTES_PER_TOKEN)
        return total

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
        finish = _finish_reason(choices[0].get("finish_reason"))
        usage = _usage(data.get("usage")) or self._estimate(messages, params, text, finish, None)
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
                usage = _usage(chunk.get("usage")) or usage
                content, reason = _delta(chunk)
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
        if finish_raw is None:
            if not parts:
                # No text and no reason: llama-cpp-python's server fails this way after the
                # headers (a prompt past the context). Asked without streaming, it reports the
                # real error, or answers, which we pass on.
                completion = await self.complete(messages, params)
                if completion.text:
                    yield TextDelta(completion.text)
                yield completion
                return
            raise Upstream(f"{WHAT} ended the stream mid-answer without a finish reason")
        text = "".join(parts)
        finish = _finish_reason(finish_raw)
        if usage is None:
            usage = self._estimate(messages, params, text, finish, len(parts))
        yield Completion(text=text, finish_reason=finish, usage=usage)

    # ------------------------------------------------------------------ helpers

    def _estimate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        text: str,
        finish: FinishReason,
        pieces: int | None,
    ) -> Usage:
        """For a server that reports no usage: a stream's content chunks (one token each on
        llama.cpp-style servers), else bytes / 3; never above max_tokens."""
        if finish is FinishReason.LENGTH:
            completion = params.max_tokens
        elif pieces is not None:
            completion = pieces
        else:
            completion = math.ceil(len(text.encode()) / _BYTES_PER_TOKEN)
        completion = min(max(completion, 1 if text else 0), params.max_tokens)
        return Usage(prompt_tokens=self.count_tokens(messages), completion_tokens=completion)


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
    body: dict[str, Any] = {
        "task": TASK_CHAT,
        "messages": [m.as_dict() for m in messages],
        "max_tokens": params.max_tokens,
    }
    # Only what the request set: the server's defaults apply to the rest.
    optional = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if params.stop:
        body["stop"] = list(params.stop)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
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


def _delta(chunk: dict[str, Any]) -> tuple[str | None, str | None]:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, None  # e.g. the usage-only chunk that ends an include_usage stream
    choice = choices[0]
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    reason = choice.get("finish_reason")
    return (content if isinstance(content, str) and content else None), (
        str(reason) if reason else None
    )


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Upstream(f"{WHAT} sent malformed JSON: {clean(text)!r}")
    return data


def _is_context_error(message: str, code: str | None) -> bool:
    return code in _CONTEXT_CODES or bool(_CONTEXT_WORDS.search(message))


def _failure(e: ModelFailure) -> PastureError:
    """The container's error status as a Pasture error."""
    if e.status == 413 or (400 <= e.status < 500 and _is_context_error(e.message, e.code)):
        return Invalid(e.message)
    if e.status == 503:
        return Unavailable(f"{WHAT} is unavailable: {e.message}")
    return Upstream(f"{WHAT} answered HTTP {e.status}: {e.message}")


def _error_object(error: Any) -> PastureError:
    """An `{"error": ...}` that came with a 2xx (in a stream or a body)."""
    message, code = error_parts(json.dumps({"error": error}))
    message = clean(message) or "unspecified error"
    if _is_context_error(message, code):
        return Invalid(message)
    return Upstream(f"{WHAT} failed: {message}")


def _finish_reason(raw: Any) -> FinishReason:
    return FinishReason.LENGTH if raw in _LENGTH_REASONS else FinishReason.STOP


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and min(prompt, completion) >= 0:
        return Usage(prompt_tokens=prompt, completion_tokens=completion)
    return None
