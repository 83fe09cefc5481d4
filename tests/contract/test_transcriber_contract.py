"""The Transcriber contract, run against every adapter:

- `FasterWhisperTranscriber`: the real tiny.en model, in process;
- `WhisperCppTranscriber` against a FAKE whisper.cpp server, and `OpenAITranscriber` against
  a FAKE OpenAI audio API, both small Starlette apps served by uvicorn on 127.0.0.1.

The fakes are fakes because neither real server can run here: whisper.cpp's server is a C++
binary we do not build, and OpenAI is a paid service outside the sandbox. They are faithful
where it matters: they parse the multipart request the adapter really sends (fields, file
part, WAV header) and transcribe the WAV they received with the same real local model, so a
wrong WAV (rate, sample width, byte order) shows as a bad transcript; their answers follow
whisper.cpp's `/inference` (`{"text": " ...\\n"}`, `{"error": ...}`) and OpenAI's
`/v1/audio/transcriptions` (verbose_json with language *names*, `{"error": {"message", ...}}`,
gpt-4o's refusal of verbose_json). Error answers are switched on per test.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pasture.adapters.local.faster_whisper_transcriber import FasterWhisperTranscriber
from pasture.adapters.local.model_files import whisper_tiny_en_dir
from pasture.adapters.local.pyav_audio import decode_audio
from pasture.adapters.remote.whisper_transcriber import OpenAITranscriber, WhisperCppTranscriber
from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.languages import language_name
from pasture.domain.speech import SAMPLE_RATE, AudioClip
from pasture.ports import Transcriber
from tests.helpers.process import free_port
from tests.helpers.sagemaker_fake import sagemaker_stack  # noqa: F401  (the fixture)
from tests.helpers.speech import (
    WER_BOUND,
    Speech,
    speech_fixture,  # noqa: F401  (the `speech` fixture)
    word_error_rate,
)

API_KEY = "sk-fake-test-key"

# ---------------------------------------------------------------------- fake servers


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None  # answer this status with an error body
    delay: float = 0.0  # seconds to wait before answering
    garbage: bool = False  # answer 200 with something that is not a transcript
    refuse_verbose: bool = False  # OpenAI: refuse response_format=verbose_json like gpt-4o

    def reset(self) -> None:
        self.requests.clear()
        self.fail_status = None
        self.delay = 0.0
        self.garbage = False
        self.refuse_verbose = False


async def _record(request: Request, state: FakeState) -> tuple[dict[str, Any], bytes]:
    form = await request.form()
    upload = form["file"]
    assert not isinstance(upload, str)
    data = await upload.read()
    with wave.open(io.BytesIO(data)) as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes())
        pcm = w.readframes(w.getnframes())
    rec = {
        "fields": sorted(form.keys()),
        "values": {k: v for k, v in form.items() if isinstance(v, str)},
        "filename": upload.filename,
        "content_type": upload.content_type,
        "wav": params,
        "pcm": pcm,
        "authorization": request.headers.get("authorization"),
    }
    state.requests.append(rec)
    if state.delay:
        await asyncio.sleep(state.delay)
    return rec, pcm


def _transcribe(model: Transcriber, pcm: bytes, values: dict[str, str]) -> Any:
    return model.transcribe(
        AudioClip(pcm, "wav"), language=values.get("language"), prompt=values.get("prompt")
    )


def whispercpp_app(state: FakeState, model: Transcriber) -> Starlette:
    """FAKE whisper.cpp `server`: POST /inference (see the module docstring)."""

    async def inference(request: Request) -> Response:
        rec, pcm = await _record(request, state)
        if state.fail_status:
            return JSONResponse({"error": "failed to process audio"}, state.fail_status)
        if state.garbage:
            return PlainTextResponse("<html>proxy error</html>")
        t = await run_in_threadpool(_transcribe, model, pcm, rec["values"])
        # whisper.cpp: every segment's text starts with a space; segments end with "\n".
        return JSONResponse({"text": "".join(f" {s.text}\n" for s in t.segments)})

    return Starlette(routes=[Route("/inference", inference, methods=["POST"])])


def openai_app(state: FakeState, model: Transcriber) -> Starlette:
    """FAKE OpenAI audio API: POST /v1/audio/transcriptions (see the module docstring)."""

    def error(status: int, message: str, param: str | None = None) -> JSONResponse:
        body = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
        return JSONResponse({"error": body}, status)

    async def transcriptions(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return error(401, "Incorrect API key provided.")
        rec, pcm = await _record(request, state)
        fmt = rec["values"].get("response_format", "json")
        if state.fail_status:
            return JSONResponse(
                {"error": {"message": "The server had an error"}}, state.fail_status
            )
        if state.garbage:
            return PlainTextResponse("upstream connect error")
        if fmt == "verbose_json" and state.refuse_verbose:
            return error(
                400,
                "response_format 'verbose_json' is not compatible with model"
                " 'gpt-4o-transcribe'. Use 'json' or 'text' instead.",
                "response_format",
            )
        t = await run_in_threadpool(_transcribe, model, pcm, rec["values"])
        if fmt == "json":
            return JSONResponse({"text": t.text})
        return JSONResponse(
            {
                "task": "transcribe",
                "language": language_name(t.language),  # OpenAI says "english"
                "duration": t.duration,
                "text": t.text,
                "segments": [
                    {
                        "id": i,
                        "seek": 0,
                        "start": s.start,
                        "end": s.end,
                        "text": " " + s.text,
                        "tokens": [],
                        "temperature": 0.0,
                        "avg_logprob": -0.3,
                        "compression_ratio": 1.2,
                        "no_speech_prob": 0.01,
                    }
                    for i, s in enumerate(t.segments)
                ],
            }
        )

    return Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])])


class FakeServer:
    """A Starlette app on 127.0.0.1 under uvicorn, in a thread of this process."""

    def __init__(self, app: Starlette, state: FakeState) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "fake server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def local_model() -> FasterWhisperTranscriber:
    """The real tiny.en model, loaded once for the module (adapter under test and the
    fakes' engine)."""
    return FasterWhisperTranscriber(whisper_tiny_en_dir(), preload=True)


@pytest.fixture(scope="module")
def whispercpp(local_model: FasterWhisperTranscriber) -> Iterator[FakeServer]:
    state = FakeState()
    with FakeServer(whispercpp_app(state, local_model), state) as srv:
        yield srv


@pytest.fixture(scope="module")
def openai_fake(local_model: FasterWhisperTranscriber) -> Iterator[FakeServer]:
    state = FakeState()
    with FakeServer(openai_app(state, local_model), state) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    for name in ("whispercpp", "openai_fake"):
        if name in request.fixturenames:
            request.getfixturevalue(name).state.reset()


def fake(kind: str, request: pytest.FixtureRequest) -> FakeServer:
    srv: FakeServer = request.getfixturevalue(
        "whispercpp" if kind == "whisper.cpp" else "openai_fake"
    )
    return srv


def make(kind: str, request: pytest.FixtureRequest, **kw: Any) -> Transcriber:
    """The adapter of `kind`; a remote one's fake server starts the test with no errors
    switched on and no requests recorded."""
    if kind == "faster-whisper":
        return request.getfixturevalue("local_model")  # type: ignore[no-any-return]
    if kind == "sagemaker":  # real boto3 -> fake sagemaker-runtime -> real router -> whisper
        from pasture.adapters.aws.sagemaker_transcriber import SageMakerTranscriber

        stack = request.getfixturevalue("sagemaker_stack")
        stack.reset()
        return SageMakerTranscriber(stack.client(), stack.endpoint, **kw)
    srv = fake(kind, request)
    srv.state.reset()
    if kind == "whisper.cpp":
        return WhisperCppTranscriber(srv.url, **kw)
    return OpenAITranscriber(srv.url, model="whisper-1", api_key=API_KEY, **kw)


KINDS = ("faster-whisper", "whisper.cpp", "openai", "sagemaker")
REMOTE = ("whisper.cpp", "openai")


@pytest.fixture(params=KINDS)
def transcriber(request: pytest.FixtureRequest) -> Transcriber:
    return make(request.param, request)


@pytest.fixture(scope="module")
def clip(speech: Speech) -> AudioClip:
    return decode_audio(str(speech["wav"]), max_seconds=60)


# ---------------------------------------------------------------------- the contract


def test_transcribes_speech(transcriber: Transcriber, clip: AudioClip, speech: Speech) -> None:
    t = transcriber.transcribe(clip, language=None, prompt=None)
    assert word_error_rate(speech.text, t.text) <= WER_BOUND, t.text
    assert t.text == t.text.strip() and "\n" not in t.text
    assert t.duration == pytest.approx(clip.seconds, abs=0.05)
    assert t.language in ("en", None)
    last = 0.0
    for s in t.segments:
        assert last - 0.01 <= s.start <= s.end <= t.duration + 0.5 and s.text == s.text.strip()
        last = s.end
    assert isinstance(transcriber.name, str) and transcriber.name


def test_language_and_prompt(transcriber: Transcriber, clip: AudioClip, speech: Speech) -> None:
    t = transcriber.transcribe(clip, language="en", prompt="Bicycle, school.")
    assert t.language == "en"
    assert word_error_rate(speech.text, t.text) <= WER_BOUND, t.text


def test_silence_is_not_an_error(transcriber: Transcriber) -> None:
    silence = AudioClip(b"\x00\x00" * int(1.5 * SAMPLE_RATE), "wav")
    t = transcriber.transcribe(silence, language="en", prompt=None)
    assert isinstance(t.text, str)
    assert t.duration == pytest.approx(1.5, abs=0.05)


def test_concurrent_calls(transcriber: Transcriber, clip: AudioClip) -> None:
    """Three threads at once (the API's threadpool does this) all get the same transcript."""
    with ThreadPoolExecutor(3) as pool:
        texts = list(
            pool.map(
                lambda _: transcriber.transcribe(clip, language=None, prompt=None).text, range(3)
            )
        )
    assert len(set(texts)) == 1 and texts[0]


# ---------------------------------------------------------------------- remote adapters


def test_whispercpp_request(whispercpp: FakeServer, clip: AudioClip) -> None:
    t = WhisperCppTranscriber(whispercpp.url)
    t.transcribe(clip, language="en", prompt="Bicycle.")
    t.transcribe(clip, language=None, prompt=None)
    with_options, bare = whispercpp.state.requests
    assert with_options["fields"] == ["file", "language", "prompt", "response_format"]
    assert with_options["values"] == {
        "response_format": "json",
        "language": "en",
        "prompt": "Bicycle.",
    }
    assert bare["fields"] == ["file", "response_format"]
    # The clip itself, as a 16 kHz mono 16-bit WAV.
    assert with_options["filename"] == "audio.wav" and with_options["content_type"] == "audio/wav"
    assert with_options["wav"] == (1, 2, SAMPLE_RATE, len(clip.pcm) // 2)
    assert with_options["pcm"] == clip.pcm
    assert with_options["authorization"] is None


def test_openai_request(openai_fake: FakeServer, clip: AudioClip) -> None:
    t = OpenAITranscriber(openai_fake.url + "/v1/", model="whisper-large", api_key=API_KEY)
    assert t.name == "whisper-large"
    result = t.transcribe(clip, language="en", prompt="Bicycle.")
    (req,) = openai_fake.state.requests
    assert req["fields"] == ["file", "language", "model", "prompt", "response_format"]
    assert req["values"] == {
        "model": "whisper-large",
        "response_format": "verbose_json",
        "language": "en",
        "prompt": "Bicycle.",
    }
    assert req["authorization"] == f"Bearer {API_KEY}"
    assert req["wav"] == (1, 2, SAMPLE_RATE, len(clip.pcm) // 2) and req["pcm"] == clip.pcm
    # verbose_json's language name comes back as a code; segments come through, trimmed.
    assert result.language == "en" and result.segments
    assert result.text.startswith(result.segments[0].text)


def test_openai_falls_back_to_json_once_and_remembers(
    openai_fake: FakeServer, clip: AudioClip
) -> None:
    openai_fake.state.refuse_verbose = True
    t = OpenAITranscriber(openai_fake.url, api_key=API_KEY)
    first = t.transcribe(clip, language=None, prompt=None)
    second = t.transcribe(clip, language=None, prompt=None)
    formats = [r["values"]["response_format"] for r in openai_fake.state.requests]
    assert formats == ["verbose_json", "json", "json"]
    assert first.text and first.text == second.text
    assert first.segments == () and first.duration == pytest.approx(clip.seconds, abs=0.01)


def test_openai_wrong_key_is_upstream(openai_fake: FakeServer, clip: AudioClip) -> None:
    t = OpenAITranscriber(openai_fake.url, api_key="wrong")
    with pytest.raises(Upstream, match="HTTP 401: Incorrect API key"):
        t.transcribe(clip, language=None, prompt=None)


@pytest.mark.parametrize("kind", REMOTE)
def test_server_error_is_upstream(
    kind: str, request: pytest.FixtureRequest, clip: AudioClip
) -> None:
    t = make(kind, request)
    srv = fake(kind, request)
    srv.state.fail_status = 500
    with pytest.raises(Upstream, match="HTTP 500") as e:
        t.transcribe(clip, language=None, prompt=None)
    assert "127.0.0.1" not in e.value.message  # clients see it: no internal address


@pytest.mark.parametrize("kind", REMOTE)
def test_refused_audio_is_invalid(
    kind: str, request: pytest.FixtureRequest, clip: AudioClip
) -> None:
    t = make(kind, request)
    srv = fake(kind, request)
    srv.state.fail_status = 400
    with pytest.raises(Invalid, match="refused the audio"):
        t.transcribe(clip, language=None, prompt=None)


@pytest.mark.parametrize("kind", REMOTE)
def test_unreadable_answer_is_upstream(
    kind: str, request: pytest.FixtureRequest, clip: AudioClip
) -> None:
    t = make(kind, request)
    srv = fake(kind, request)
    srv.state.garbage = True
    with pytest.raises(Upstream, match="not a transcript"):
        t.transcribe(clip, language=None, prompt=None)


@pytest.mark.parametrize("kind", REMOTE)
def test_slow_server_is_upstream(
    kind: str, request: pytest.FixtureRequest, clip: AudioClip
) -> None:
    t = make(kind, request, read_timeout=0.3)
    srv = fake(kind, request)
    srv.state.delay = 1.5
    with pytest.raises(Upstream, match=r"did not answer within 0\.3 s"):
        t.transcribe(clip, language=None, prompt=None)


@pytest.mark.parametrize(
    "adapter",
    [
        lambda url: WhisperCppTranscriber(url),
        lambda url: OpenAITranscriber(url, api_key=API_KEY),
    ],
    ids=REMOTE,
)
def test_unreachable_server_is_unavailable(adapter: Any, clip: AudioClip) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    with pytest.raises(Unavailable, match="cannot be reached"):
        adapter(url).transcribe(clip, language=None, prompt=None)


# ---------------------------------------------------------------------- local adapter


def test_local_name_and_languages(local_model: FasterWhisperTranscriber, clip: AudioClip) -> None:
    assert local_model.name == "whisper-tiny.en"
    with pytest.raises(Invalid, match="does not transcribe 'fr'"):
        local_model.transcribe(clip, language="fr", prompt=None)


def test_local_model_loads_once_lazily(clip: AudioClip) -> None:
    t = FasterWhisperTranscriber(whisper_tiny_en_dir())
    assert t._model is None  # nothing loaded until the first transcription
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: t.load(), range(3)))
    model = t._model
    assert model is not None
    t.transcribe(AudioClip(clip.pcm[: SAMPLE_RATE * 2], "wav"), language=None, prompt=None)
    assert t._model is model


def test_local_missing_model_is_unavailable(tmp_path: Any, clip: AudioClip) -> None:
    t = FasterWhisperTranscriber(tmp_path)
    with pytest.raises(Unavailable, match=r"no model\.bin"):
        t.transcribe(clip, language=None, prompt=None)
