"""Speech to text on a real `pasture serve` (127.0.0.1), driven by real clients: the OpenAI
Python SDK's `audio.transcriptions.create` against `/v1/audio/transcriptions`, and an httpx
multipart POST to LlamaChat's `/api/transcription`, as `curl -F audio=@...` sends it.

The server runs the packaged whisper tiny.en model; the audio is espeak-ng speech
(tests/helpers/speech.py), held to WER_BOUND.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.server import Server
from tests.helpers.speech import (
    WER_BOUND,
    Speech,
    needs_tools,
    speech_fixture,  # noqa: F401  (the `speech` fixture)
    word_error_rate,
)

pytestmark = [pytest.mark.e2e, needs_tools]

MAX_AUDIO = 400_000  # every test file fits (the largest, the WAV, is ~210 kB)
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[Server]:
    keys = ",".join(f"{n}:{k}" for n, k in api_keys.items())
    s = Server(
        tmp_path_factory.mktemp("audio") / "data",
        model_cache,
        {"PASTURE_API_KEYS": keys, "PASTURE_MAX_AUDIO_BYTES": str(MAX_AUDIO)},
    ).start(120)
    try:
        yield s
    finally:
        s.stop()


def sdk(srv: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{srv.url}/v1",
        api_key=key,
        timeout=openai.Timeout(TIMEOUT, connect=5.0),
        max_retries=0,
    )


def test_sdk_transcribes(srv: Server, api_keys: dict[str, str], speech: Speech) -> None:
    client = sdk(srv, api_keys["alice"])
    with speech["mp3"].open("rb") as f:
        t = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert isinstance(t, openai.types.audio.Transcription)
    assert word_error_rate(speech.text, t.text) <= WER_BOUND, t.text


def test_sdk_verbose_json(srv: Server, api_keys: dict[str, str], speech: Speech) -> None:
    client = sdk(srv, api_keys["bob"])
    with speech["webm"].open("rb") as f:
        t = client.audio.transcriptions.create(
            model="whisper-1",
            file=f,
            response_format="verbose_json",
            language="en",
            timestamp_granularities=["segment"],
        )
    assert isinstance(t, openai.types.audio.TranscriptionVerbose)
    assert t.language == "english" and t.duration == pytest.approx(4.8, abs=0.3)
    assert t.segments and t.segments[0].start == 0.0 and t.segments[-1].end <= t.duration + 0.5
    assert word_error_rate(speech.text, t.text) <= WER_BOUND, t.text


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_sdk_text_formats(srv: Server, api_keys: dict[str, str], speech: Speech, fmt: str) -> None:
    client = sdk(srv, api_keys["alice"])
    with speech["ogg"].open("rb") as f:
        out = client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)  # type: ignore[call-overload]
    assert isinstance(out, str)
    if fmt == "vtt":
        assert out.startswith("WEBVTT\n\n")
    if fmt == "srt":
        assert out.startswith("1\n00:00:00,000 --> ")
    spoken = " ".join(
        line
        for line in out.splitlines()
        if line and "-->" not in line and not line.isdigit() and line != "WEBVTT"
    )
    assert word_error_rate(speech.text, spoken) <= WER_BOUND, out


def test_sdk_errors(srv: Server, api_keys: dict[str, str], speech: Speech, tmp_path: Path) -> None:
    with speech["mp3"].open("rb") as f, pytest.raises(openai.AuthenticationError) as auth:
        sdk(srv, "wrong-key").audio.transcriptions.create(model="whisper-1", file=f)
    assert auth.value.status_code == 401
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    with bad.open("rb") as f, pytest.raises(openai.BadRequestError) as e:
        sdk(srv, api_keys["alice"]).audio.transcriptions.create(model="whisper-1", file=f)
    assert "not audio we can read" in e.value.message
    assert e.value.body == {
        "message": e.value.body["message"],  # type: ignore[index]
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@pytest.mark.parametrize("fmt", ["wav", "m4a", "flac"])
def test_llamachat_multipart(
    srv: Server, api_keys: dict[str, str], speech: Speech, fmt: str
) -> None:
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http, speech[fmt].open("rb") as f:
        r = http.post(
            "/api/transcription",
            headers={"X-Api-Key": api_keys["bob"]},
            files={"audio": (speech[fmt].name, f)},
        )
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["text"]
    assert word_error_rate(speech.text, r.json()["text"]) <= WER_BOUND, r.text


def test_llamachat_errors(srv: Server, api_keys: dict[str, str], speech: Speech) -> None:
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http:
        r = http.post("/api/transcription", files={"audio": ("a.mp3", speech["mp3"].read_bytes())})
        assert r.status_code == 401 and set(r.json()) == {"error"}
        r = http.post("/api/transcription", headers={"X-Api-Key": api_keys["alice"]})
        assert r.status_code == 400 and r.json()["error"].startswith("`audio` is required")
        # Over the limit, declared up front: refused before the body is read.
        big = b"\0" * (MAX_AUDIO + 100_000)
        r = http.post(
            "/api/transcription",
            headers={"X-Api-Key": api_keys["alice"]},
            files={"audio": ("big.wav", big)},
        )
        assert r.status_code == 413 and "byte limit" in r.json()["error"]

        # Over the limit and chunked (no Content-Length): cut off while it streams in.
        def chunked() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
            for _ in range(64):
                yield b"\0" * 65536  # 4 MB in all
            yield b"\r\n--b--\r\n"

        r = http.post(
            "/api/transcription",
            headers={
                "X-Api-Key": api_keys["alice"],
                "Content-Type": "multipart/form-data; boundary=b",
            },
            content=chunked(),
        )
        assert r.request.headers.get("content-length") is None
        assert r.status_code == 413 and "byte limit" in r.json()["error"]
