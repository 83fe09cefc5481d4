"""A FAKE sagemaker-runtime endpoint on 127.0.0.1, and the whole SageMaker stack for tests.

It stands in for AWS: there is no network to AWS here, and no Docker engine to run the GPU
container. Real boto3 reaches the fake through `endpoint_url` with dummy credentials; the
fake implements the two operations Pasture uses the way the service model and the SageMaker
docs describe them, and forwards the body and headers to the REAL router
(infra/inference/router.py, a subprocess on loopback) as SageMaker forwards to a container's
`/invocations`:

- `POST /endpoints/{name}/invocations`: the container's answer as the body (its Content-Type
  kept), or for a container error status `424 ModelError` with OriginalStatusCode and
  OriginalMessage; a container that cannot be reached is ModelError with status 0, as
  SageMaker reports a container that does not answer.
- `POST /endpoints/{name}/invocations-response-stream`: `application/vnd.amazon.eventstream`,
  AWS's binary event-stream framing (prelude with total and header lengths and its CRC32,
  string headers, payload, message CRC32): one `PayloadPart` event per piece of the
  container's stream (re-cut at sizes a test chooses), `ModelStreamError` (StreamBroken) when
  the container's stream breaks, `InternalStreamFailure` on request. botocore decodes this
  framing itself, so a wrong byte fails the tests.
- errors in the JSON shapes of rest-json (`x-amzn-ErrorType` + `{"message"}`):
  `ValidationError` for an unknown endpoint or a body over 6 MB, and whatever a test switches
  on (ThrottlingException, ServiceUnavailable, ...).

Behind the router run a REAL `python -m llama_cpp.server` with the packaged SmolLM2 and a
whisper.cpp-shaped server (`/inference`, `/health`) that transcribes with the REAL
faster-whisper tiny.en: whisper.cpp's server is a C++ binary we do not build here.

`shared_stack()` starts all of it once per test session (every module shares it, including
the contract suites whose factories get no fixture request); the `sagemaker_stack` fixture
hands it to tests and stops it, by PID, at the end of the session (an atexit hook covers a
session that started it without the fixture).
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers.process import free_port, start_and_wait, stop, tail

REGION = "us-east-1"
ENDPOINT = "pasture-test-endpoint"
ACCOUNT = "123456789012"
ROUTER = Path(__file__).resolve().parents[2] / "infra" / "inference" / "router.py"
MAX_PAYLOAD = 6 * 1024 * 1024
_PAYLOAD_HEADERS = {
    ":event-type": "PayloadPart",
    ":content-type": "application/octet-stream",
    ":message-type": "event",
}


# ---------------------------------------------------------------------- event stream


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding, every header a string (type 7)."""
    raw_headers = b"".join(
        struct.pack(">B", len(k.encode()))
        + k.encode()
        + b"\x07"
        + struct.pack(">H", len(v.encode()))
        + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_part(data: bytes) -> bytes:
    return event_message(_PAYLOAD_HEADERS, data)


def stream_error(kind: str, message: str, error_code: str | None = None) -> bytes:
    body: dict[str, str] = {"Message": message}
    if error_code:
        body["ErrorCode"] = error_code
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return event_message(headers, json.dumps(body).encode())


# ---------------------------------------------------------------------- the fake service


@dataclass
class FakeSageMakerState:
    """What a test switches on, and what the fake saw."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail: tuple[int, str, str] | None = None  # (status, code, message) for every request
    fail_count: int | None = None  # only this many requests fail (None: all)
    delay: float = 0.0  # seconds before forwarding
    part_sizes: Iterator[int] | None = None  # re-cut streamed bytes into parts of these sizes
    break_after: int | None = None  # stream bytes after which the stream "breaks"
    stream_failure: str = "ModelStreamError"  # or InternalStreamFailure
    streams_started: int = 0
    streams_finished: int = 0
    streams_abandoned: int = 0  # the client went away before the end
    parts_sent: int = 0  # PayloadPart events written

    def reset(self) -> None:
        self.requests.clear()
        self.fail = None
        self.fail_count = None
        self.delay = 0.0
        self.part_sizes = None
        self.break_after = None
        self.stream_failure = "ModelStreamError"
        self.streams_started = self.streams_finished = self.streams_abandoned = 0
        self.parts_sent = 0


def aws_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"message": message, **extra},
        status_code=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def model_error(status: int, text: str) -> JSONResponse:
    """SageMaker's answer to a container error status (or 0: no answer at all)."""
    kind = "client" if 400 <= status < 500 else "server"
    return aws_error(
        424,
        "ModelError",
        f'Received {kind} error ({status}) from primary with message "{text}". See'
        f" https://{REGION}.console.aws.amazon.com/cloudwatch/home in account {ACCOUNT}"
        " for more information.",
        ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL",
        OriginalStatusCode=status,
        OriginalMessage=text,
        LogStreamArn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}",
    )


def fake_sagemaker_app(router_url: str, state: FakeSageMakerState) -> Starlette:
    client: dict[str, httpx.AsyncClient] = {}

    def http() -> httpx.AsyncClient:
        if "c" not in client:
            client["c"] = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5))
        return client["c"]

    async def common(request: Request, operation: str) -> tuple[Response | None, bytes]:
        body = await request.body()
        state.requests.append(
            {
                "operation": operation,
                "endpoint": request.path_params["name"],
                "content_type": request.headers.get("content-type"),
                "attributes": request.headers.get("x-amzn-sagemaker-custom-attributes"),
                "signed": request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"),
                "size": len(body),
            }
        )
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.fail is not None and (state.fail_count is None or state.fail_count > 0):
            if state.fail_count is not None:
                state.fail_count -= 1
            status, code, message = state.fail
            return aws_error(status, code, message), body
        if request.path_params["name"] != ENDPOINT:
            name = request.path_params["name"]
            return aws_error(
                400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found."
            ), body
        if len(body) > MAX_PAYLOAD:
            return aws_error(
                400,
                "ValidationError",
                f"Request payload size {len(body)} exceeds the {MAX_PAYLOAD} byte limit.",
            ), body
        return None, body

    def forward_headers(request: Request, accept: str | None) -> dict[str, str]:
        headers = {"Content-Type": request.headers.get("content-type", "application/octet-stream")}
        if accept:
            headers["Accept"] = accept
        attributes = request.headers.get("x-amzn-sagemaker-custom-attributes")
        if attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        return headers

    async def invoke(request: Request) -> Response:
        refused, body = await common(request, "InvokeEndpoint")
        if refused is not None:
            return refused
        try:
            r = await http().post(
                router_url + "/invocations",
                content=body,
                headers=forward_headers(request, request.headers.get("accept")),
            )
        except httpx.HTTPError:
            return model_error(0, "Amazon SageMaker could not get a response from the container")
        if r.status_code >= 300:
            return model_error(r.status_code, r.text)
        return Response(
            r.content,
            headers={
                "Content-Type": r.headers.get("content-type", "application/json"),
                "x-Amzn-Invoked-Production-Variant": "AllTraffic",
            },
        )

    def recut(data: bytes) -> Iterable[bytes]:
        if state.part_sizes is None:
            yield data
            return
        pos = 0
        while pos < len(data):
            n = max(1, next(state.part_sizes))
            yield data[pos : pos + n]
            pos += n

    async def invoke_stream(request: Request) -> Response:
        refused, body = await common(request, "InvokeEndpointWithResponseStream")
        if refused is not None:
            return refused
        accept = request.headers.get("x-amzn-sagemaker-accept")
        req = http().build_request(
            "POST",
            router_url + "/invocations",
            content=body,
            headers=forward_headers(request, accept),
        )
        try:
            r = await http().send(req, stream=True)
        except httpx.HTTPError:
            return model_error(0, "Amazon SageMaker could not get a response from the container")
        if r.status_code >= 300:
            try:
                text = (await r.aread()).decode("utf-8", "replace")
            finally:
                await r.aclose()
            return model_error(r.status_code, text)
        state.streams_started += 1

        async def events() -> Any:
            sent = 0
            ended = False
            try:
                async for chunk in r.aiter_raw():
                    for piece in recut(chunk):
                        if state.break_after is not None and sent + len(piece) > state.break_after:
                            ended = True
                            if state.stream_failure == "InternalStreamFailure":
                                yield stream_error("InternalStreamFailure", "Internal failure")
                            else:
                                yield stream_error(
                                    "ModelStreamError",
                                    "The connection to the model was reset.",
                                    "StreamBroken",
                                )
                            return
                        sent += len(piece)
                        state.parts_sent += 1
                        yield payload_part(piece)
                ended = True
                state.streams_finished += 1
            except httpx.HTTPError:
                ended = True
                yield stream_error(
                    "ModelStreamError", "The connection to the model was reset.", "StreamBroken"
                )
            finally:
                if not ended:
                    state.streams_abandoned += 1
                with anyio.CancelScope(shield=True):
                    await r.aclose()

        return StreamingResponse(
            events(),
            headers={
                "Content-Type": "application/vnd.amazon.eventstream",
                "X-Amzn-SageMaker-Content-Type": r.headers.get("content-type", ""),
                "x-Amzn-Invoked-Production-Variant": "AllTraffic",
            },
        )

    return Starlette(
        routes=[
            Route("/endpoints/{name}/invocations", invoke, methods=["POST"]),
            Route("/endpoints/{name}/invocations-response-stream", invoke_stream, methods=["POST"]),
        ]
    )


# ---------------------------------------------------------------------- whisper.cpp-shaped


@dataclass
class WhisperState:
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_status: int | None = None  # answer this status with {"error": ...}
    down: bool = False  # /health answers 503 (model loading)

    def reset(self) -> None:
        self.requests.clear()
        self.fail_status = None
        self.down = False


def whisper_cpp_app(state: WhisperState, model: Any) -> Starlette:
    """whisper.cpp's `whisper-server`: `/inference` (multipart `file`, `response_format`
    json|verbose_json, `language` with "auto" to detect, `prompt`) and `/health`. Like the
    real server it answers an unreadable WAV with `{"error": "failed to read WAV file"}`."""
    import io
    import wave

    from pasture.domain.languages import language_name
    from pasture.domain.speech import AudioClip

    async def health(request: Request) -> Response:
        if state.down:
            return JSONResponse({"status": "loading model"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def inference(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        state.requests.append(values)
        if upload is None or isinstance(upload, str):
            return JSONResponse({"error": "no 'file' field in the request"})
        if state.fail_status:
            return JSONResponse({"error": "failed to process audio"}, state.fail_status)
        try:
            with wave.open(io.BytesIO(await upload.read())) as w:
                if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 16000):
                    raise wave.Error("not 16 kHz mono 16-bit")
                pcm = w.readframes(w.getnframes())
        except (wave.Error, EOFError):
            return JSONResponse({"error": "failed to read WAV file"})
        language = values.get("language") or "en"
        t = await run_in_threadpool(
            model.transcribe,
            AudioClip(pcm, "wav"),
            language=None if language == "auto" else language,
            prompt=values.get("prompt") or None,
        )
        text = "".join(f" {s.text}\n" for s in t.segments)
        if values.get("response_format") != "verbose_json":
            return JSONResponse({"text": text})
        return JSONResponse(
            {
                "task": "transcribe",
                "language": language_name(t.language) or "english",
                "duration": len(pcm) / 32000,
                "text": text,
                "segments": [
                    {"id": i, "text": f" {s.text}", "start": s.start, "end": s.end, "tokens": []}
                    for i, s in enumerate(t.segments)
                ],
            }
        )

    return Starlette(
        routes=[
            Route("/inference", inference, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


class ThreadServer:
    """An ASGI app on 127.0.0.1 under uvicorn, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ---------------------------------------------------------------------- the router


class Router:
    """infra/inference/router.py as a subprocess on a free loopback port."""

    def __init__(
        self,
        log: Path,
        *,
        llama_url: str,
        whisper_url: str,
        onnx_cache: Path,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        self.env.update(
            ROUTER_HOST="127.0.0.1",
            ROUTER_PORT=str(self.port),
            ROUTER_LLAMA_URL=llama_url,
            # llama-cpp-python's server has no /health; its model list answers once loaded.
            ROUTER_LLAMA_HEALTH="/v1/models",
            ROUTER_WHISPER_URL=whisper_url,
            ROUTER_ONNX_CACHE=str(onnx_cache),
            ROUTER_ONNX_PROVIDERS="CPUExecutionProvider",  # no GPU here
            ROUTER_EMBED_THREADS="1",
            ROUTER_LOG_LEVEL="WARNING",
        )
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0, *, healthy: bool = True) -> Router:
        """Returns once /ping answers 200, or with `healthy=False` answers at all (a router
        whose backends are down on purpose)."""
        if healthy:
            self.proc = start_and_wait(
                "router",
                [sys.executable, str(ROUTER)],
                self.log,
                self.url + "/ping",
                timeout=timeout,
                env=self.env,
            )
            return self
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROUTER)], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited {self.proc.returncode}: {tail(self.log)}")
            try:
                httpx.get(self.url + "/ping", timeout=5)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"router did not answer in {timeout}s: {tail(self.log)}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop(proc)


# ---------------------------------------------------------------------- the stack


def sagemaker_client(url: str, *, attempts: int = 1, read_timeout: float = 120) -> Any:
    """A real boto3 sagemaker-runtime client aimed at `url` with dummy credentials; botocore's
    standard retries, `attempts` in all."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker-runtime",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        config=Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            read_timeout=read_timeout,
            connect_timeout=5,
        ),
    )


@dataclass
class SageMakerStack:
    runtime: ThreadServer  # the fake sagemaker-runtime
    state: FakeSageMakerState
    router: Router
    llama_url: str  # root of the llama.cpp-style server (no /v1)
    whisper: ThreadServer
    whisper_state: WhisperState
    whisper_model: Any
    _closers: list[Any] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return ENDPOINT

    def client(self, *, attempts: int = 1, read_timeout: float = 120) -> Any:
        """A real boto3 sagemaker-runtime client aimed at the fake (dummy credentials)."""
        return sagemaker_client(self.runtime.url, attempts=attempts, read_timeout=read_timeout)

    def reset(self) -> None:
        self.state.reset()
        self.whisper_state.reset()

    def stop(self) -> None:
        while self._closers:
            close = self._closers.pop()
            try:
                close()
            except Exception as e:  # keep stopping the rest
                print(f"sagemaker stack: stopping failed: {e!r}", file=sys.stderr)


_SHARED: dict[str, SageMakerStack] = {}
_LOCK = threading.Lock()


def shared_stack(tmp: pytest.TempPathFactory) -> SageMakerStack:
    """The session's stack, started on first use (skips when a model is not installed)."""
    with _LOCK:
        if "stack" not in _SHARED:
            _SHARED["stack"] = _start(tmp)
            atexit.register(stop_shared)
        return _SHARED["stack"]


def stop_shared() -> None:
    with _LOCK:
        stack = _SHARED.pop("stack", None)
    if stack is not None:
        stack.stop()


def _start(tmp: pytest.TempPathFactory) -> SageMakerStack:
    import importlib.util

    from pasture.domain.errors import Unavailable
    from tests.helpers.llama_server import _SERVER_MODULES, LlamaServer

    missing = [m for m in (*_SERVER_MODULES, "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the SageMaker stack needs {', '.join(missing)}")
    from pasture.adapters.local.faster_whisper_transcriber import FasterWhisperTranscriber
    from pasture.adapters.local.model_files import minilm_dir, smollm2_gguf, whisper_tiny_en_dir

    try:
        gguf, whisper_dir = smollm2_gguf(), whisper_tiny_en_dir()
        minilm_dir()
    except Unavailable as e:
        pytest.skip(e.message)
    base = tmp.mktemp("sagemaker-stack")
    closers: list[Any] = []
    try:
        llama = LlamaServer(gguf, base / "llama.log").start()
        closers.append(llama.stop)
        whisper_model = FasterWhisperTranscriber(whisper_dir, threads=1, preload=True)
        whisper_state = WhisperState()
        whisper = ThreadServer(whisper_cpp_app(whisper_state, whisper_model)).start()
        closers.append(whisper.stop)
        cache = Path(os.environ.get("PASTURE_TEST_MODEL_CACHE") or base / "onnx")
        router = Router(
            base / "router.log",
            llama_url=llama.base_url.removesuffix("/v1"),
            whisper_url=whisper.url,
            onnx_cache=cache,
        ).start()
        closers.append(router.stop)
        state = FakeSageMakerState()
        runtime = ThreadServer(fake_sagemaker_app(router.url, state)).start()
        closers.append(runtime.stop)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return SageMakerStack(
        runtime=runtime,
        state=state,
        router=router,
        llama_url=llama.base_url.removesuffix("/v1"),
        whisper=whisper,
        whisper_state=whisper_state,
        whisper_model=whisper_model,
        _closers=closers,
    )


@pytest.fixture(scope="session")
def sagemaker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SageMakerStack]:
    """The shared stack; import this fixture into a test module to use it."""
    stack = shared_stack(tmp_path_factory)
    yield stack
    stop_shared()


def part_sizes(sizes: Iterable[int]) -> Iterator[int]:
    """Cycle through `sizes` for `FakeSageMakerState.part_sizes`."""
    return itertools.cycle(list(sizes))
