"""Pasture's inference router: the process SageMaker talks to inside the GPU container.

SageMaker sends every request to `POST /invocations` on port 8080 and asks `GET /ping` whether
the container is healthy. The router answers both and forwards the work:

- chat (`application/json`, `{"task": "chat", ...}`): to the llama.cpp server's
  `/v1/chat/completions`, the rest of the body unchanged; a streamed answer is passed through
  chunk by chunk as it arrives (SageMaker relays it as PayloadPart events);
- embeddings (`{"task": "embed", "texts": [...]}`): computed here, all-MiniLM-L6-v2 with
  onnxruntime (CUDA, else CPU) through Pasture's own `OnnxEmbedder` and ONNX graph builder, so
  the vectors are those of the local embedder;
- transcription (`audio/wav` body, `language`/`prompt` in CustomAttributes): to the whisper.cpp
  server's `/inference`.

The protocol is written out in README.md beside this file. Errors are JSON
`{"error": {"message", "type"}}` with a 4xx for a bad request and a 5xx for a backend that
fails (503 when it cannot be reached), so SageMaker's ModelError carries a status that says
whose fault it was. Backends and settings come from `ROUTER_*` environment variables (see
`Config`). Dependencies: starlette, uvicorn, httpx (+ numpy, onnxruntime, tokenizers, onnx and
the `pasture` package for embeddings), pinned in requirements.txt.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("pasture.router")

EMBED_MODEL = "all-MiniLM-L6-v2"
WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value.strip()


@dataclass(frozen=True)
class Config:
    """Settings from the environment. An empty backend URL switches its task off (its
    requests answer 501 and /ping stops waiting for it)."""

    host: str
    port: int
    llama_url: str
    llama_health: str
    whisper_url: str
    whisper_health: str
    embeddings: bool
    minilm_dir: str
    onnx_cache: str
    onnx_providers: tuple[str, ...]
    embed_threads: int
    embed_batch: int
    max_texts: int
    timeout: float

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            host=_env("ROUTER_HOST", "0.0.0.0"),  # every interface: SageMaker calls in
            port=int(_env("SAGEMAKER_BIND_TO_PORT", "") or _env("ROUTER_PORT", "8080")),
            llama_url=_env("ROUTER_LLAMA_URL", "http://127.0.0.1:8081").rstrip("/"),
            llama_health=_env("ROUTER_LLAMA_HEALTH", "/health"),
            whisper_url=_env("ROUTER_WHISPER_URL", "http://127.0.0.1:8082").rstrip("/"),
            whisper_health=_env("ROUTER_WHISPER_HEALTH", "/health"),
            embeddings=_env("ROUTER_EMBEDDINGS", "onnx").lower() not in ("", "off", "0", "false"),
            minilm_dir=_env("ROUTER_MINILM_DIR", ""),
            onnx_cache=_env("ROUTER_ONNX_CACHE", "/tmp/pasture-onnx"),
            onnx_providers=tuple(
                p.strip()
                for p in _env(
                    "ROUTER_ONNX_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider"
                ).split(",")
                if p.strip()
            ),
            embed_threads=int(_env("ROUTER_EMBED_THREADS", "0")),
            embed_batch=int(_env("ROUTER_EMBED_BATCH", "32")),
            max_texts=int(_env("ROUTER_MAX_TEXTS", "4096")),
            timeout=float(_env("ROUTER_TIMEOUT", "600")),
        )


# ---------------------------------------------------------------------- embeddings


class Embeddings:
    """MiniLM loaded in a background thread at startup (/ping answers 503 until it is in)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model: Any = None
        self.providers: list[str] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._load, name="minilm-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _load(self) -> None:
        try:
            self.model, self.providers = load_embedder(self.config)
            log.info("MiniLM ready on %s", ", ".join(self.providers))
        except Exception as e:  # reported by /ping and /invocations, not raised
            log.exception("MiniLM failed to load")
            self.error = f"{type(e).__name__}: {e}"


def load_embedder(config: Config) -> tuple[Any, list[str]]:
    """Pasture's OnnxEmbedder with the configured onnxruntime providers: the same graph,
    tokenizer settings and batching as the local embedder, so vectors are interchangeable."""
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    providers = list(config.onnx_providers)

    class ProviderOnnxEmbedder(OnnxEmbedder):
        def _open_session(self, path: Path) -> Any:
            import onnxruntime as ort

            # The local embedder's options; only the providers differ.
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self.threads or os.cpu_count() or 1
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            available = set(ort.get_available_providers())
            wanted = [p for p in providers if p in available] or ["CPUExecutionProvider"]
            return ort.InferenceSession(str(path), opts, providers=wanted)

    model_dir = Path(config.minilm_dir) if config.minilm_dir else minilm_dir()
    embedder = ProviderOnnxEmbedder(
        model_dir,
        Path(config.onnx_cache),
        batch_size=config.embed_batch,
        threads=config.embed_threads or None,
    )
    session, _ = embedder._load()  # build (or reuse) the graph and open the session now
    return embedder, list(session.get_providers())


# ---------------------------------------------------------------------- responses


def error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def backend_failure(what: str, e: httpx.HTTPError) -> JSONResponse:
    log.warning("the %s failed: %r", what, e, exc_info=e)
    if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
        return error(503, f"the {what} cannot be reached", "backend_unavailable")
    if isinstance(e, httpx.TimeoutException):
        return error(504, f"the {what} did not answer in time", "backend_timeout")
    return error(502, f"the connection to the {what} failed: {type(e).__name__}", "backend_error")


def decode_attributes(header: str | None) -> dict[str, str]:
    """CustomAttributes `k=v;k=v`, values percent-encoded."""
    out: dict[str, str] = {}
    for item in (header or "").split(";"):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


# ---------------------------------------------------------------------- the app


def create_app(config: Config | None = None) -> Starlette:
    cfg = config or Config.from_env()
    embeddings = Embeddings(cfg) if cfg.embeddings else None
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if embeddings is not None:
            embeddings.start()
        timeout = httpx.Timeout(cfg.timeout, connect=5.0)
        # No pool limit below the backends' own queues: llama.cpp and whisper.cpp queue. Idle
        # connections are dropped well before the backends' own 5 s keep-alive timeout, so a
        # request rarely meets one the backend is closing.
        limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=32, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            state["http"] = client
            yield

    def http() -> httpx.AsyncClient:
        return state["http"]

    async def healthy(url: str, path: str) -> tuple[bool, str]:
        try:
            r = await http().get(url + path, timeout=2.0)
        except httpx.HTTPError as e:
            return False, f"unreachable ({type(e).__name__})"
        return r.status_code == 200, f"HTTP {r.status_code}"

    async def ping(request: Request) -> Response:
        checks: dict[str, tuple[bool, str]] = {}

        async def check(name: str, url: str, path: str) -> None:
            checks[name] = await healthy(url, path)

        async with anyio.create_task_group() as tg:
            if cfg.llama_url:
                tg.start_soon(check, "chat", cfg.llama_url, cfg.llama_health)
            if cfg.whisper_url:
                tg.start_soon(check, "transcription", cfg.whisper_url, cfg.whisper_health)
        if embeddings is not None:
            if embeddings.model is not None:
                checks["embeddings"] = (True, "on " + ", ".join(embeddings.providers))
            else:
                checks["embeddings"] = (False, embeddings.error or "loading")
        ok = all(good for good, _ in checks.values())
        body = {
            "status": "ok" if ok else "unavailable",
            "backends": {k: {"ok": good, "detail": d} for k, (good, d) in sorted(checks.items())},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in WAV_TYPES:
            return await transcribe(request)
        if content_type != "application/json":
            return error(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}: send application/json"
                " (chat, embed) or audio/wav (transcription)",
                "unsupported_media_type",
            )
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return error(400, "the body is not valid JSON", "invalid_request")
        if not isinstance(payload, dict):
            return error(400, "the body must be a JSON object", "invalid_request")
        task = payload.get("task")
        if task == "chat":
            return await chat(payload)
        if task == "embed":
            return await embed(payload)
        return error(400, f"unknown task {task!r}: expected 'chat' or 'embed'", "invalid_request")

    async def send(build: Callable[[], httpx.Request]) -> httpx.Response:
        """Send with the body unread (the caller reads or streams it). Retried once when the
        connection fails before any answer: a pooled keep-alive connection the backend had
        just closed (llama-cpp-python's server drops the one of a stream that failed)."""
        for attempt in (1, 2, 3):
            try:
                return await http().send(build(), stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ chat

    async def chat(payload: dict[str, Any]) -> Response:
        if not cfg.llama_url:
            return error(501, "this container serves no chat model", "not_served")
        body = {k: v for k, v in payload.items() if k != "task"}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error(400, "'messages' must be a non-empty list", "invalid_request")
        stream = body.get("stream") is True
        url = cfg.llama_url + "/v1/chat/completions"
        try:
            response = await send(lambda: http().build_request("POST", url, json=body))
        except httpx.HTTPError as e:
            return backend_failure("chat backend (llama.cpp server)", e)
        if not stream or response.status_code >= 300:
            try:
                content = await response.aread()
            except httpx.HTTPError as e:
                return backend_failure("chat backend (llama.cpp server)", e)
            finally:
                await response.aclose()
            # The backend's own status and error: a 400 for a prompt past the context stays
            # a 400 (the caller's fault), a 5xx stays a 5xx.
            return Response(
                content,
                status_code=response.status_code,
                media_type=response.headers.get("content-type", "application/json"),
            )
        return StreamingResponse(
            relay(response),
            media_type=response.headers.get("content-type", "text/event-stream"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def relay(response: httpx.Response) -> AsyncIterator[bytes]:
        """The backend's stream as it arrives. When SageMaker's connection goes away,
        Starlette cancels this generator and the backend connection is closed, which stops
        the generation there."""
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as e:
            log.warning("chat stream from the backend broke off: %s", e)
            failure = {"message": "the chat backend broke off the stream", "type": "backend_error"}
            yield f"data: {json.dumps({'error': failure})}\n\n".encode()
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    # ------------------------------------------------------------------ embeddings

    async def embed(payload: dict[str, Any]) -> Response:
        if embeddings is None:
            return error(501, "this container serves no embedding model", "not_served")
        texts = payload.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return error(400, "'texts' must be a list of strings", "invalid_request")
        if len(texts) > cfg.max_texts:
            return error(
                413, f"at most {cfg.max_texts} texts per request ({len(texts)} sent)", "too_large"
            )
        model = embeddings.model
        if model is None:
            if embeddings.error:
                return error(
                    500, f"the embedding model failed to load: {embeddings.error}", "backend_error"
                )
            return error(503, "the embedding model is still loading", "backend_unavailable")
        vectors = await run_in_threadpool(model.embed, texts)
        data = vectors.astype("<f4", copy=False).tobytes()
        return JSONResponse(
            {
                "model": EMBED_MODEL,
                "dimension": int(vectors.shape[1]),
                "shape": [int(vectors.shape[0]), int(vectors.shape[1])],
                "dtype": "float32",
                "data": base64.b64encode(data).decode("ascii"),
            }
        )

    # ------------------------------------------------------------------ transcription

    async def transcribe(request: Request) -> Response:
        if not cfg.whisper_url:
            return error(501, "this container serves no transcription model", "not_served")
        audio = await request.body()
        if len(audio) < 12 or audio[:4] != b"RIFF" or audio[8:12] != b"WAVE":
            return error(400, "the body is not a WAV file", "invalid_audio")
        attrs = decode_attributes(request.headers.get(ATTRIBUTES_HEADER))
        form = {
            "response_format": "verbose_json",
            # whisper.cpp detects the language only when told "auto" (its default is "en").
            "language": attrs.get("language") or "auto",
            "temperature": "0.0",
        }
        if attrs.get("prompt"):
            form["prompt"] = attrs["prompt"]
        try:
            r = await send(
                lambda: http().build_request(
                    "POST",
                    cfg.whisper_url + "/inference",
                    data=form,
                    files={"file": ("audio.wav", audio, "audio/wav")},
                )
            )
        except httpx.HTTPError as e:
            return backend_failure("transcription backend (whisper.cpp server)", e)
        try:
            await r.aread()
        except httpx.HTTPError as e:
            return backend_failure("transcription backend (whisper.cpp server)", e)
        finally:
            await r.aclose()
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error(
                502,
                f"the whisper.cpp server answered HTTP {r.status_code} without JSON",
                "backend_error",
            )
        if r.status_code >= 300 or "error" in body:
            message = body.get("error")
            if isinstance(message, dict):
                message = message.get("message")
            message = str(message or f"HTTP {r.status_code}")
            # whisper.cpp says so with a 200 (older) or a 4xx (newer); reading the WAV is
            # the one failure that is the audio's fault.
            bad_audio = 400 <= r.status_code < 500 or "wav" in message.lower()
            return error(
                400 if bad_audio else 502,
                f"whisper.cpp: {message}",
                "invalid_audio" if bad_audio else "backend_error",
            )
        return JSONResponse(transcript(body))

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def transcript(body: dict[str, Any]) -> dict[str, Any]:
    """whisper.cpp's verbose_json (or plain json) -> the router's transcript."""
    segments = []
    for s in body.get("segments") or ():
        if isinstance(s, dict) and {"start", "end", "text"} <= s.keys():
            segments.append(
                {"start": float(s["start"]), "end": float(s["end"]), "text": str(s["text"]).strip()}
            )
    text = " ".join(str(body.get("text", "")).split())
    duration = body.get("duration")
    language = body.get("language")
    return {
        "text": text,
        "language": language if isinstance(language, str) else None,
        "duration": float(duration) if isinstance(duration, int | float) else None,
        "segments": segments,
    }


def main() -> None:
    import uvicorn

    logging.basicConfig(
        level=_env("ROUTER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = Config.from_env()
    uvicorn.run(
        create_app(cfg),
        host=cfg.host,
        port=cfg.port,
        log_level=_env("ROUTER_LOG_LEVEL", "INFO").lower(),
        # SageMaker keeps connections open between invocations.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
