"""OpenAICompatibleChatModel: any server speaking OpenAI's `/v1/chat/completions`.

llama.cpp's server, llama-cpp-python's `llama_cpp.server`, vLLM, Ollama and OpenAI itself all
qualify; the adapter needs only their base URL (`http://host:port/v1`), a model name and
optionally an API key. Plain httpx, no SDK: the wire format is small and this keeps the
Lambda layer light.

Quirks of real servers handled here (each is exercised by a test):
- `stream_options: {"include_usage": true}` is newer than some servers: strict ones reject it
  with a 4xx (we retry once without it and remember), lenient ones such as `llama_cpp.server`
  ignore it and never send usage in a stream (we estimate it then).
- `llama_cpp.server` answers a streamed request whose prompt does not fit the context with
  `200` and an empty event stream (the error happens after the headers went out). A stream
  that ends before any text and without a finish reason is therefore asked again without
  streaming, which reports such errors with a proper status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from pasture.adapters import openai_wire as wire
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

_MAX_ERROR_CHARS = 300


class OpenAICompatibleChatModel(ChatModel):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        name: str | None = None,
        context_length: int = 4096,
        client: httpx.AsyncClient | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.context_length = context_length
        self._url = f"{self.base_url}/chat/completions"
        # What messages show: never credentials, neither the key nor a user:password@ part.
        self._where = str(httpx.URL(self.base_url).copy_with(userinfo=b""))
        self._api_key = api_key or None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # Set per request, so the limits (and the messages naming them) hold for injected
        # clients too. Writes get the read limit: a request body is small.
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._injected = client
        self._owned: httpx.AsyncClient | None = None
        self._owned_loop: asyncio.AbstractEventLoop | None = None
        # Flipped once a server rejects `stream_options`, so later streams skip the retry.
        self._stream_usage = True

    # ------------------------------------------------------------------ port

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """A conservative upper estimate (openai_wire.BYTES_PER_TOKEN): no tokenizer at hand."""
        return wire.estimate_prompt_tokens(messages)

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Completion:
        body = self._body(messages, params, stream=False, stream_usage=False)
        with self._transport_errors():
            response = await self._send(body)
            try:
                await response.aread()
            finally:
                await response.aclose()
        self._raise_for_status(response.status_code, response.text)
        data = self._json(response.text)
        if "error" in data:
            raise self._error_object(data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise Upstream(f"chat model server at {self._where} answered without choices")
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        text = text if isinstance(text, str) else ""
        finish = wire.finish_reason(choices[0].get("finish_reason"))
        usage = wire.usage(data.get("usage")) or self._estimate_usage(
            messages, params, text, finish, pieces=None
        )
        return Completion(text=text, finish_reason=finish, usage=usage)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[TextDelta | Completion]:
        parts: list[str] = []
        finish_raw: str | None = None
        usage: Usage | None = None
        with self._transport_errors():
            response = await self._open_stream(messages, params)
            # Closing the response on every way out (end, error, the consumer's aclose or
            # cancellation) drops the connection, which is how a server learns to stop.
            try:
                async for event in self._events(response):
                    if event == "[DONE]":
                        break
                    chunk = self._json(event)
                    if "error" in chunk:
                        raise self._error_object(chunk["error"])
                    usage = wire.usage(chunk.get("usage")) or usage
                    content, reason = wire.delta(chunk)
                    if content:
                        parts.append(content)
                        yield TextDelta(content)
                    finish_raw = reason or finish_raw
            finally:
                await response.aclose()
        # Cut off mid-answer: e.g. llama_cpp.server with interrupt_requests (its default)
        # ends a stream with [DONE] once another request arrives. Not a real answer.
        cut_off = (
            f"chat model server at {self._where} ended the stream mid-answer without a"
            " finish reason (for llama_cpp.server, start it with --interrupt_requests False)"
        )
        async for out in wire.stream_end(
            self, messages, params, parts, finish_raw, usage, cut_off=cut_off
        ):
            yield out

    async def aclose(self) -> None:
        """Close the HTTP client this adapter made (an injected one belongs to its owner)."""
        client, self._owned = self._owned, None
        if client is not None and self._owned_loop is _running_loop():
            await client.aclose()

    # ------------------------------------------------------------------ requests

    def _http(self) -> httpx.AsyncClient:
        if self._injected is not None:
            return self._injected
        # Pooled connections belong to the event loop that opened them; a caller running
        # several loops one after another (`asyncio.run` per CLI command or test) gets a
        # client per loop instead of reusing dead connections.
        loop = asyncio.get_running_loop()
        if self._owned is None or self._owned_loop is not loop:
            self._owned = httpx.AsyncClient(timeout=self._timeout)
            self._owned_loop = loop
        return self._owned

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        """POST the body; returns once the response headers are in (the body is not read).

        Retried once when the connection fails before any response: that is a pooled
        keep-alive connection the server closed just as it was reused (uvicorn closes idle
        ones after 5 s, and the one of a stream its app failed), and nothing came back.
        """
        client = self._http()
        for attempt in (1, 2):
            request = client.build_request(
                "POST", self._url, json=body, headers=self._headers, timeout=self._timeout
            )
            try:
                return await client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _body(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        *,
        stream: bool,
        stream_usage: bool,
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            **wire.request_body(messages, params, stream=stream, stream_usage=stream_usage),
        }

    async def _open_stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> httpx.Response:
        """The streaming response, status checked; retried once without `stream_options`
        when the server refuses the request with it."""
        attempts = (True, False) if self._stream_usage else (False,)
        for stream_usage in attempts:
            body = self._body(messages, params, stream=True, stream_usage=stream_usage)
            response = await self._send(body)
            if 200 <= response.status_code < 300:
                if stream_usage is False and len(attempts) == 2:
                    self._stream_usage = False  # it was stream_options the server refused
                return response
            try:
                text = (await response.aread()).decode("utf-8", "replace")
            finally:
                await response.aclose()
            retry = (
                stream_usage
                and response.status_code in (400, 422)
                and not wire.is_context_error(*wire.error_parts(text))
            )
            if not retry:
                self._raise_for_status(response.status_code, text)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _events(self, response: httpx.Response) -> AsyncIterator[str]:
        """The payload of each `data:` line (with or without a space after the colon).

        Each data line is taken as one event: OpenAI-compatible servers put every JSON chunk
        on one line, and some omit the blank line between events. Comments (`: ping`) and
        `event:`/`id:` lines carry nothing we need. llama.cpp's server reports a failure
        mid-stream as an `error:` line.
        """
        async for line in response.aiter_lines():
            field, sep, value = line.partition(":")
            if not sep or not field:
                continue
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                yield value.strip()
            elif field == "error":
                try:
                    error: Any = json.loads(value)
                except ValueError:
                    error = value
                raise self._error_object(error)

    # ------------------------------------------------------------------ errors

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """httpx's transport failures as domain errors, naming the limit that ran out."""
        try:
            yield
        except httpx.ConnectTimeout as e:
            raise Upstream(
                f"chat model server at {self._where} did not accept a connection within"
                f" {self._connect_timeout:g} s (connect timeout)"
            ) from e
        except httpx.ReadTimeout as e:
            raise Upstream(
                f"chat model server at {self._where} sent nothing for"
                f" {self._read_timeout:g} s (read timeout)"
            ) from e
        except httpx.WriteTimeout as e:
            raise Upstream(
                f"chat model server at {self._where} did not take the request within"
                f" {self._read_timeout:g} s (write timeout)"
            ) from e
        except httpx.PoolTimeout as e:
            raise Upstream(
                f"no free connection to the chat model server at {self._where} within"
                f" {self._read_timeout:g} s (pool timeout)"
            ) from e
        except httpx.ConnectError as e:  # refused, no route, DNS failure
            raise Unavailable(
                f"chat model server at {self._where} is unreachable: {_describe(e)}"
            ) from e
        except httpx.TransportError as e:  # dropped connection, broken chunked encoding, ...
            raise Upstream(
                f"connection to the chat model server at {self._where} failed: {_describe(e)}"
            ) from e

    def _raise_for_status(self, status: int, text: str) -> None:
        if 200 <= status < 300:
            return
        message, code = wire.error_parts(text)
        message = self._clean(message) or f"HTTP {status}"
        if status in (401, 403):
            if self._api_key is None:
                raise Upstream(
                    f"chat model server at {self._where} requires an API key (HTTP {status}),"
                    f" and none is configured: {message}"
                )
            raise Upstream(
                f"chat model server at {self._where} rejected the API key (HTTP {status}):"
                f" {message}"
            )
        if status in (400, 413, 422) and wire.is_context_error(message, code):
            raise Invalid(message)
        raise Upstream(f"chat model server at {self._where} answered HTTP {status}: {message}")

    def _error_object(self, error: Any) -> PastureError:
        """An `{"error": ...}` that arrived with a 2xx status (in a stream or a body)."""
        message, code = wire.error_parts(json.dumps({"error": error}))
        message = self._clean(message) or "unspecified error"
        if wire.is_context_error(message, code):
            return Invalid(message)
        return Upstream(f"chat model server at {self._where} failed: {message}")

    def _json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Upstream(
                f"chat model server at {self._where} sent malformed JSON: {self._clean(text)!r}"
            )
        return data

    def _clean(self, text: str) -> str:
        """Safe to show: the key scrubbed (some servers echo it), one line, truncated."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        text = " ".join(text.split())
        if len(text) > _MAX_ERROR_CHARS:
            text = text[: _MAX_ERROR_CHARS - 1] + "…"
        return text

    def _estimate_usage(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        text: str,
        finish: FinishReason,
        *,
        pieces: int | None,
    ) -> Usage:
        return wire.estimate_usage(self.count_tokens(messages), params, text, finish, pieces=pieces)


# ---------------------------------------------------------------------- helpers


def _describe(e: Exception) -> str:
    return str(e) or type(e).__name__


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
