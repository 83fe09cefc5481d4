"""OpenAI's chat-completions wire format, for the adapters that speak it: over HTTP to any
OpenAI-compatible server (`remote/openai_chat.py`) and through the SageMaker endpoint, whose
router forwards it to llama.cpp's server (`aws/sagemaker_chat.py`). Pure functions: no I/O,
no HTTP client, so the Lambda adapter imports no httpx.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from pasture.domain.chat import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    TextDelta,
    Usage,
)
from pasture.domain.errors import Upstream

if TYPE_CHECKING:
    from pasture.ports import ChatModel

# Token estimate (no tokenizer for a remote model). It errs high on purpose: the chat service
# uses count_tokens to fit history into the context, and an over-estimate only drops old turns
# a little early, while an under-estimate makes the server reject the request.
# - 3 UTF-8 bytes per token: BPE vocabularies average ~4 characters per English token; counting
#   bytes rather than characters keeps CJK and other multi-byte scripts (~1 token per
#   character) covered too.
# - per message: role header and separators of the chat template (`<|im_start|>user\n`, ...).
# - per prompt: BOS, the assistant header and the default system prompt some templates add
#   when none is given (SmolLM2's is ~20 tokens).
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 8
TOKENS_PER_PROMPT = 32

# How servers say "the prompt does not fit": OpenAI/vLLM/llama_cpp.server use the code
# `context_length_exceeded` and "maximum context length"; llama.cpp's server uses the type
# `exceed_context_size_error` and "exceeds the available context size".
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error"}
_CONTEXT_WORDS = re.compile(
    r"context[ _](length|size|window)|maximum context|prompt is too long", re.IGNORECASE
)
# Finish reasons that mean "cut short by a token limit"; every other reason (stop, eos,
# content_filter, tool_calls, ...) means the answer ended on the server's terms.
_LENGTH_REASONS = {"length", "max_tokens", "model_length"}


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """A conservative upper estimate of the prompt's tokens (see BYTES_PER_TOKEN)."""
    total = TOKENS_PER_PROMPT
    for m in messages:
        size = len(m.role.encode()) + len(m.content.encode())
        total += TOKENS_PER_MESSAGE + math.ceil(size / BYTES_PER_TOKEN)
    return total


def estimate_usage(
    prompt_tokens: int,
    params: GenerationParams,
    text: str,
    finish: FinishReason,
    *,
    pieces: int | None,
) -> Usage:
    """For servers that report no usage. A stream's content chunks are one token each on
    llama.cpp-style servers (a few tokens when a multi-byte character or a possible stop
    string is held back), so their number is the best count at hand; a whole text gets the
    byte estimate. Never more than max_tokens: the server honoured it."""
    if finish is FinishReason.LENGTH:
        completion = params.max_tokens
    elif pieces is not None:
        completion = pieces
    else:
        completion = math.ceil(len(text.encode()) / BYTES_PER_TOKEN)
    completion = min(max(completion, 1 if text else 0), params.max_tokens)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion)


def request_body(
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    *,
    stream: bool,
    stream_usage: bool,
) -> dict[str, Any]:
    """The request's messages and sampling fields (the caller adds `model` or a task)."""
    body: dict[str, Any] = {
        "messages": [m.as_dict() for m in messages],
        "max_tokens": params.max_tokens,
    }
    # Only what the request set: a server's own defaults apply to the rest. top_k is not
    # OpenAI's, but llama.cpp, vLLM and Ollama take it (and OpenAI ignores it when unset).
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
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def delta(chunk: dict[str, Any]) -> tuple[str | None, str | None]:
    """(content, finish reason) of a stream chunk; (None, None) for one without choices (the
    usage-only chunk that ends an include_usage stream)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, None
    choice = choices[0]
    change = choice.get("delta")
    content = change.get("content") if isinstance(change, dict) else None
    reason = choice.get("finish_reason")
    return (content if isinstance(content, str) and content else None), (
        str(reason) if reason else None
    )


def finish_reason(raw: Any) -> FinishReason:
    return FinishReason.LENGTH if raw in _LENGTH_REASONS else FinishReason.STOP


def usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and min(prompt, completion) >= 0:
        return Usage(prompt_tokens=prompt, completion_tokens=completion)
    return None


def error_parts(text: str) -> tuple[str, str | None]:
    """(message, code) of an error body: OpenAI's `{"error": {"message", "code", "type"}}`,
    `{"error": "..."}`, FastAPI's `{"detail": ...}`, or plain text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(data, dict):
        return text, None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        code = error.get("code") if isinstance(error.get("code"), str) else None
        if code is None and isinstance(error.get("type"), str):
            code = error["type"]
        if message is not None:
            return (message if isinstance(message, str) else json.dumps(message)), code
    return text, None


def is_context_error(message: str, code: str | None) -> bool:
    """Whether an error says the prompt does not fit the model's context."""
    return code in _CONTEXT_CODES or bool(_CONTEXT_WORDS.search(message))


async def stream_end(
    model: ChatModel,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    parts: Sequence[str],
    finish_raw: str | None,
    usage: Usage | None,
    *,
    cut_off: str,
) -> AsyncIterator[TextDelta | Completion]:
    """What ends a stream once its chunks are read: the Completion (usage estimated when the
    server sent none). A stream with no text and no finish reason is llama_cpp.server's way of
    failing after the headers (context overflow): asked again without streaming, the server
    reports the real error, or answers, which is passed on. Text without a finish reason was
    cut off mid-answer: Upstream(`cut_off`)."""
    if finish_raw is None:
        if not parts:
            completion = await model.complete(messages, params)
            if completion.text:
                yield TextDelta(completion.text)
            yield completion
            return
        raise Upstream(cut_off)
    text = "".join(parts)
    finish = finish_reason(finish_raw)
    if usage is None:
        usage = estimate_usage(
            model.count_tokens(messages), params, text, finish, pieces=len(parts)
        )
    yield Completion(text=text, finish_reason=finish, usage=usage)
