"""What the three SageMaker adapters share: the `/invocations` wire protocol of Pasture's GPU
container (infra/inference/router.py), blocking boto3 calls moved off the event loop, the
reassembly of streamed lines and the translation of SageMaker's errors.

The protocol (the full text is in infra/inference/README.md; both ends are tested together):
- chat: `Content-Type: application/json`, body `{"task": "chat", ...}` with the rest an OpenAI
  chat completion request; the answer is OpenAI's JSON, or with `"stream": true` the llama.cpp
  server's SSE stream passed through as it comes (InvokeEndpointWithResponseStream).
- embeddings: `application/json`, `{"task": "embed", "texts": [...]}`; the answer is
  `{"model", "dimension", "shape": [n, d], "dtype": "float32", "data": base64}` with `data` the
  little-endian float32 rows (exact and a third of the size of JSON numbers).
- transcription: `Content-Type: audio/wav` and the clip as a 16 kHz mono 16-bit WAV as the
  body (no base64: a request holds at most 6 MB); `CustomAttributes` carries the options as
  `language=en;prompt=<percent-encoded>`; the answer is `{"text", "language", "duration",
  "segments": [{"start", "end", "text"}]}`.
- errors: the container answers 4xx/5xx with `{"error": {"message", "type"}}`; SageMaker
  turns them into a `ModelError` carrying OriginalStatusCode and OriginalMessage.

Errors become Pasture errors here: throttling, an endpoint that is not ready and a connection
that fails (after botocore's own retries) are `Unavailable`; a read timeout and any other
failure are `Upstream`; each adapter decides which of the container's 4xx mean `Invalid`.
Messages name neither the endpoint nor the account (clients see them); the log has the rest.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import logging
import wave
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

from pasture.adapters import openai_wire as wire
from pasture.adapters.aws.errors import error_code, translate
from pasture.domain.errors import PastureError, Unavailable, Upstream
from pasture.domain.speech import SAMPLE_RATE

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "SageMaker"
TASK_CHAT = "chat"
TASK_EMBED = "embed"
CONTENT_JSON = "application/json"
CONTENT_WAV = "audio/wav"
# InvokeEndpoint takes at most 6 MB of request payload (real-time endpoints).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# CustomAttributes: at most 1024 visible US-ASCII characters.
MAX_ATTRIBUTES = 1024
_MAX_ERROR_CHARS = 300
# Codes of a SageMaker that will answer if asked again later (on top of errors.translate's).
_NOT_READY = frozenset({"ModelNotReadyException", "ModelNotReady"})


# ---------------------------------------------------------------------- wire helpers


def encode_attributes(values: Mapping[str, str | None]) -> str:
    """`k=v;k=v` with each value percent-encoded (visible ASCII only); None values left out."""
    return ";".join(f"{k}={quote(v, safe='')}" for k, v in values.items() if v is not None)


def decode_attributes(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (header or "").split(";"):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def wav_bytes(pcm: bytes) -> bytes:
    """16 kHz mono signed 16-bit PCM as a RIFF/WAVE file (stdlib `wave`)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return buf.getvalue()


class LineAssembler:
    """Bytes in arbitrary pieces -> whole text lines.

    SageMaker cuts a response stream into PayloadPart events wherever it likes: in the middle
    of an SSE line, of a JSON object, even of a multi-byte UTF-8 character. Lines come out
    only once their newline has arrived (`\\n`, `\\r\\n` or `\\r`), decoded incrementally.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._pending + self._decoder.decode(data)
        lines: list[str] = []
        start = 0
        # Only CR and LF end a line (not str.splitlines' other separators: U+2028 may sit
        # raw inside a JSON string). A CR at the very end may be the first half of CRLF.
        while True:
            cut = _line_end(text, start)
            if cut < 0 or (text[cut] == "\r" and cut == len(text) - 1):
                break
            lines.append(text[start:cut])
            start = cut + (2 if text.startswith("\r\n", cut) else 1)
        self._pending = text[start:]
        return lines

    def close(self) -> list[str]:
        """The last line, when the stream did not end with a newline."""
        rest = (self._pending + self._decoder.decode(b"", final=True)).rstrip("\r\n")
        self._pending = ""
        return [rest] if rest else []


def _line_end(text: str, start: int) -> int:
    lf, cr = text.find("\n", start), text.find("\r", start)
    if lf < 0 or cr < 0:
        return max(lf, cr)
    return min(lf, cr)


def clean(text: str) -> str:
    """One line, truncated: safe to put in a message."""
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 1] + "…"
    return text


# ---------------------------------------------------------------------- errors


class ModelFailure(Exception):
    """The container answered an error status (SageMaker's ModelError), unpacked."""

    def __init__(self, status: int, message: str, code: str | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.code = code


def translate_error(exc: BotoCoreError | ClientError, operation: str) -> PastureError:
    """Any botocore failure but a ModelError (see `model_failure`)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        log.warning(
            "%s %s failed (%s): %s",
            SERVICE,
            operation,
            code,
            exc.response.get("Error", {}).get("Message"),
        )
        if code in _NOT_READY:
            return Unavailable(f"the SageMaker endpoint is not ready ({code}); try again later")
        if code in ("ModelStreamError", "InternalStreamFailure"):
            return Upstream(f"the SageMaker response stream failed ({code})")
    elif isinstance(exc, ReadTimeoutError):
        return Upstream(f"the SageMaker endpoint did not answer in time ({operation})")
    else:
        log.warning("%s %s failed: %s", SERVICE, operation, exc)
    return translate(exc, SERVICE, operation)


def model_failure(exc: ClientError) -> ModelFailure | None:
    """The container's own status and error when `exc` is SageMaker's ModelError."""
    if error_code(exc) != "ModelError":
        return None
    response: Mapping[str, Any] = exc.response
    status = response.get("OriginalStatusCode")
    original = response.get("OriginalMessage")
    if not isinstance(original, str):
        original = str(response.get("Error", {}).get("Message", ""))
    message, code = wire.error_parts(original)
    return ModelFailure(
        status if isinstance(status, int) else 500, clean(message) or "no message", code
    )


# ---------------------------------------------------------------------- calls


class SageMakerEndpoint:
    """One endpoint of a sagemaker-runtime client (boto3, injected). Every method blocks:
    async callers use `call` (a worker thread) or `payload_parts`."""

    def __init__(self, client: Any, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint

    def invoke(self, body: bytes, content_type: str, *, attributes: str | None = None) -> bytes:
        """InvokeEndpoint; the whole answer. Raises ModelFailure for the container's error
        statuses and Pasture errors for the rest."""
        kwargs: dict[str, Any] = {
            "EndpointName": self.endpoint,
            "Body": body,
            "ContentType": content_type,
            "Accept": CONTENT_JSON,
        }
        if attributes:
            kwargs["CustomAttributes"] = attributes
        try:
            response = self.client.invoke_endpoint(**kwargs)
            data: bytes = response["Body"].read()
        except ClientError as e:
            failure = model_failure(e)
            if failure is not None:
                raise failure from e
            raise translate_error(e, "InvokeEndpoint") from e
        except (BotoCoreError, Urllib3Error) as e:
            raise _read_error(e, "InvokeEndpoint") from e
        return data

    def open_stream(self, body: bytes, content_type: str) -> Any:
        """InvokeEndpointWithResponseStream; its event stream (botocore's EventStream)."""
        try:
            response = self.client.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint,
                Body=body,
                ContentType=content_type,
                Accept="text/event-stream",
            )
        except ClientError as e:
            failure = model_failure(e)
            if failure is not None:
                raise failure from e
            raise translate_error(e, "InvokeEndpointWithResponseStream") from e
        except (BotoCoreError, Urllib3Error) as e:
            raise _read_error(e, "InvokeEndpointWithResponseStream") from e
        return response["Body"]

    async def open_stream_async(self, body: bytes, content_type: str) -> Any:
        """`open_stream` in a worker thread. Cancelled while waiting, it still closes the
        stream that arrives afterwards, so no connection (or generation) is left running."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.open_stream, body, content_type)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_late_stream)
            raise


def _close_late_stream(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        abort_stream(future.result())


def _read_error(exc: Exception, operation: str) -> PastureError:
    if isinstance(exc, BotoCoreError):
        return translate_error(exc, operation)
    log.warning("%s %s: reading the answer failed: %s", SERVICE, operation, exc)
    return Upstream(f"the SageMaker endpoint's answer broke off ({operation})")


async def call(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread: boto3 blocks, the event loop must not."""
    return await asyncio.to_thread(fn, *args)


def _next_event(events: Iterator[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    try:
        return next(events, None)
    except ClientError as e:  # botocore's EventStreamError: an error event in the stream
        raise translate_error(e, "InvokeEndpointWithResponseStream") from e
    except (BotoCoreError, Urllib3Error, OSError) as e:
        raise _read_error(e, "InvokeEndpointWithResponseStream") from e


def abort_stream(stream: Any) -> None:
    """Close an event stream that is still running, from any thread: shut its socket down
    (which also wakes a thread blocked reading it), then close it. The dropped connection is
    how SageMaker, and through it the container, learns to stop generating."""
    raw = getattr(stream, "_raw_stream", None)  # the urllib3 response under the EventStream
    shutdown = getattr(raw, "shutdown", None)  # urllib3 >= 2.3
    if callable(shutdown):
        with contextlib.suppress(Exception):
            shutdown()
    with contextlib.suppress(Exception):
        stream.close()


async def payload_parts(stream: Any) -> AsyncGenerator[bytes, None]:
    """The bytes of each PayloadPart event, in order, each read in a worker thread.

    Closing this iterator early (`aclose`, or its consumer being cancelled, even while a
    read is under way) aborts the stream (`abort_stream`)."""
    events = iter(stream)
    finished = False
    try:
        while True:
            event = await asyncio.to_thread(_next_event, events)
            if event is None:
                finished = True
                return
            part = event.get("PayloadPart")
            data = part.get("Bytes") if isinstance(part, Mapping) else None
            if data:
                yield bytes(data)
    finally:
        if finished:
            with contextlib.suppress(Exception):
                stream.close()
        else:
            abort_stream(stream)


__all__ = [
    "CONTENT_JSON",
    "CONTENT_WAV",
    "MAX_ATTRIBUTES",
    "MAX_PAYLOAD_BYTES",
    "TASK_CHAT",
    "TASK_EMBED",
    "LineAssembler",
    "ModelFailure",
    "SageMakerEndpoint",
    "abort_stream",
    "call",
    "clean",
    "decode_attributes",
    "encode_attributes",
    "model_failure",
    "payload_parts",
    "translate_error",
    "wav_bytes",
]
