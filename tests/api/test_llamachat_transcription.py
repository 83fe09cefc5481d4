"""Speech to text through the app: LlamaChat's `POST /api/transcription` and the OpenAI-shaped
`POST /v1/audio/transcriptions` (an extension).

Real throughout: espeak-ng speech in six formats (tests/helpers/speech.py), PyAV decoding and
the packaged whisper tiny.en model, loaded once for the module. Transcripts must stay within
WER_BOUND (0.3: three wrong words of 13; measured 0.00-0.08 per format). Only the failing
backends are fakes (`Failing`), injected to check the 502/503 answers.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.adapters.local.pyav_audio import decode_audio
from pasture.api.app import create_app
from pasture.domain.errors import PastureError, Unavailable, Upstream
from pasture.domain.speech import AudioClip, Transcript
from pasture.ports import Transcriber
from pasture.services.transcription import TranscriptionService
from tests.api.conftest import keyed_settings
from tests.helpers.speech import (
    FORMATS,
    WER_BOUND,
    Speech,
    needs_tools,
    speech_fixture,  # noqa: F401  (the `speech` fixture)
    word_error_rate,
)

pytestmark = needs_tools

URL = "/api/transcription"
OPENAI = "/v1/audio/transcriptions"
LIMIT = 100_000  # max_audio_bytes of the `small` app: the MP3 fits, the WAV (~210 kB) does not
FORM_OVERHEAD = 64 * 1024  # what the body guard allows on top for the other form fields


@pytest.fixture(scope="module")
def key(api_keys: dict[str, str]) -> dict[str, str]:
    return {"X-Api-Key": api_keys["alice"]}


@pytest.fixture(scope="module")
def bearer(api_keys: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys['bob']}"}


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    s = keyed_settings(
        tmp_path_factory.mktemp("small"), model_cache, api_keys, max_audio_bytes=LIMIT
    )
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        yield c


def post_audio(client: TestClient, path: Path, headers: dict[str, str], **kw: Any) -> Any:
    with path.open("rb") as f:
        return client.post(URL, headers=headers, files={"audio": (path.name, f)}, **kw)


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


class Failing(Transcriber):
    """FAKE backend that fails the way a broken or unreachable one does."""

    name = "failing"

    def __init__(self, error: PastureError) -> None:
        self.error = error

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        raise self.error


@pytest.fixture
def backend(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Swap the app's transcriber (decoding stays real): backend(error) or backend(obj)."""

    def install(t: Transcriber) -> None:
        container = client.app.state.container  # type: ignore[attr-defined]
        decode = functools.partial(decode_audio, max_seconds=60)
        service = TranscriptionService(decode, lambda: t, max_audio_bytes=10**8)
        monkeypatch.setattr(container, "transcription", service)

    return install


# ---------------------------------------------------------------------- LlamaChat


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_transcribed(
    client: TestClient,
    key: dict[str, str],
    speech: Speech,
    fmt: str,
) -> None:
    r = post_audio(client, speech[fmt], key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["text"]
    wer = word_error_rate(speech.text, body["text"])
    assert wer <= WER_BOUND, (fmt, wer, body["text"])


def test_a_second_tenant_and_a_bearer_key_work_too(
    client: TestClient,
    bearer: dict[str, str],
    speech: Speech,
) -> None:
    r = post_audio(client, speech["webm"], bearer)
    assert r.status_code == 200 and word_error_rate(speech.text, r.json()["text"]) <= WER_BOUND


def test_missing_or_unknown_key_is_401(client: TestClient, speech: Speech) -> None:
    r = post_audio(client, speech["mp3"], {})
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert r.headers["www-authenticate"] == 'ApiKey header="X-Api-Key"'
    r = post_audio(client, speech["mp3"], {"X-Api-Key": "nope"})
    assert r.status_code == 401 and r.json() == {"error": "invalid API key"}


def test_missing_audio_is_400(client: TestClient, key: dict[str, str], speech: Speech) -> None:
    expected = {
        "error": "`audio` is required: send the recording as the multipart form field `audio`."
    }
    assert client.post(URL, headers=key).json() == expected
    with speech["mp3"].open("rb") as f:  # the right file under another name
        r = client.post(URL, headers=key, files={"file": ("a.mp3", f)})
    assert r.status_code == 400 and r.json() == expected
    r = client.post(URL, headers=key, json={"audio": "aGVsbG8="})
    assert r.status_code == 400 and r.json() == expected
    r = client.post(URL, headers=key, data={"audio": "not a file"})
    assert r.status_code == 400 and r.json()["error"].startswith("`audio`")


def test_unsupported_and_corrupt_audio_is_400(
    client: TestClient,
    key: dict[str, str],
    speech: Speech,
    tmp_path: Path,
) -> None:
    aiff = tmp_path / "speech.aiff"
    run("sox", str(speech["wav"]), str(aiff))
    r = post_audio(client, aiff, key)
    assert r.status_code == 400
    assert r.json() == {"error": "unsupported audio format; send WAV, MP3, OGG, WEBM, M4A or FLAC"}
    m4a = speech["m4a"].read_bytes()
    for name, data, words in [
        ("notes.txt", b"just some text\n", "not audio we can read"),
        ("cut.m4a", m4a[: len(m4a) // 2], "damaged or truncated"),
        ("empty.wav", b"", "not audio we can read"),
        ("header.wav", speech["wav"].read_bytes()[:44], "no decodable audio"),
    ]:
        r = client.post(URL, headers=key, files={"audio": (name, io.BytesIO(data))})
        assert r.status_code == 400 and words in r.json()["error"], (name, r.text)


def test_over_the_limit_is_413_with_content_length(
    small: TestClient,
    key: dict[str, str],
    speech: Speech,
) -> None:
    assert post_audio(small, speech["mp3"], key).status_code == 200  # under the limit
    r = post_audio(small, speech["wav"], key)
    assert r.status_code == 413
    assert r.json() == {
        "error": f"request body is larger than the {LIMIT + FORM_OVERHEAD} byte limit"
    }


def multipart(field: str, data: bytes, boundary: str = "pasture-test") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="a.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def test_over_the_limit_is_413_when_chunked(
    small: TestClient,
    key: dict[str, str],
    speech: Speech,
) -> None:
    """No Content-Length (a generator body is sent chunked): the guard counts the bytes."""
    body, ctype = multipart("audio", speech["wav"].read_bytes())

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    r = small.post(URL, headers={**key, "Content-Type": ctype}, content=chunks())
    assert r.request.headers.get("content-length") is None
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413  # by the guard, not by the service after buffering:
    assert r.json() == {
        "error": f"request body is larger than the {LIMIT + FORM_OVERHEAD} byte limit"
    }
    # The same way of sending, under the limit, is transcribed.
    ok, ctype = multipart("audio", speech["mp3"].read_bytes())
    r = small.post(
        URL, headers={**key, "Content-Type": ctype}, content=iter([ok[:5000], ok[5000:]])
    )
    assert r.status_code == 200 and r.json()["text"]


def test_a_file_just_over_the_audio_limit_is_413(small: TestClient, key: dict[str, str]) -> None:
    """Within the guard's allowance for form fields but over max_audio_bytes: the service
    refuses it by the upload's size."""
    data = b"\0" * (LIMIT + 1)
    r = small.post(URL, headers=key, files={"audio": ("a.wav", io.BytesIO(data))})
    assert r.status_code == 413
    assert r.json() == {"error": f"the audio file is larger than the {LIMIT} byte limit"}


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_the_limit_is_enforced_while_the_body_streams(
    small: TestClient, key: dict[str, str], content_length: bool
) -> None:
    """At the ASGI level: an endless upload is cut off after about LIMIT + allowance bytes
    (nothing is read at all when Content-Length already says too much), and the answer is
    LlamaChat's 413."""
    app = small.app
    chunk = b"\0" * 16384
    pulled = 0
    head, ctype = multipart("audio", b"")

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled == 0:
            pulled += len(head)
            return {
                "type": "http.request",
                "body": head[: -len("\r\n--pasture-test--\r\n")],
                "more_body": True,
            }
        pulled += len(chunk)
        assert pulled < 100 * LIMIT, "the guard let the body through"
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", ctype.encode()), (b"x-api-key", key["X-Api-Key"].encode())]
    if content_length:
        headers.append((b"content-length", str(10 * LIMIT).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))  # type: ignore[arg-type]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b'"error"' in b"".join(m.get("body", b"") for m in sent[1:])
    if content_length:
        assert pulled == 0
    else:
        assert LIMIT < pulled <= LIMIT + FORM_OVERHEAD + len(chunk)


@pytest.mark.parametrize(
    "error",
    [
        Upstream("the whisper.cpp server answered HTTP 500: boom"),
        Unavailable("the whisper.cpp server cannot be reached"),
    ],
    ids=["upstream", "unavailable"],
)
def test_backend_failure_is_502(
    client: TestClient,
    key: dict[str, str],
    speech: Speech,
    backend: Any,
    error: PastureError,
) -> None:
    backend(Failing(error))
    r = post_audio(client, speech["mp3"], key)
    assert r.status_code == 502
    assert r.json() == {"error": error.message}


def test_the_spooled_upload_is_closed_after_the_request(
    client: TestClient,
    key: dict[str, str],
    speech: Speech,
    backend: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Uploads over 1 MB are spooled to a temporary file (unlinked at once on Linux, so it
    only shows as an open descriptor): it is open while the transcriber runs, closed once
    the request is answered."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = tmp_path / "long.wav"
    run("sox", str(speech["wav"]), str(big), "repeat", "6")  # ~1.5 MB
    assert big.stat().st_size > 1024 * 1024

    def spooled() -> list[str]:
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(tmp_path)) and target.endswith("(deleted)"):
                out.append(target)
        return out

    seen: list[list[str]] = []

    class Spy(Transcriber):
        name = "spy"

        def transcribe(
            self, audio: AudioClip, *, language: str | None, prompt: str | None
        ) -> Transcript:
            seen.append(spooled())
            return Transcript("ok", "en", audio.seconds)

    backend(Spy())
    r = post_audio(client, big, key)
    assert r.status_code == 200 and r.json() == {"text": "ok"}
    assert seen and seen[0], "the upload was not spooled to disk: the test proves nothing"
    assert spooled() == []


# ---------------------------------------------------------------------- OpenAI shape


def openai_post(client: TestClient, path: Path | None, headers: dict[str, str], **data: Any) -> Any:
    form = {"model": "whisper-1", **data}
    if path is None:
        return client.post(OPENAI, headers=headers, data=form)
    with path.open("rb") as f:
        return client.post(OPENAI, headers=headers, data=form, files={"file": (path.name, f)})


def test_openai_json_is_the_default(
    client: TestClient, bearer: dict[str, str], speech: Speech
) -> None:
    r = openai_post(client, speech["m4a"], bearer)
    assert r.status_code == 200 and list(r.json()) == ["text"]
    assert word_error_rate(speech.text, r.json()["text"]) <= WER_BOUND


def test_openai_text(client: TestClient, bearer: dict[str, str], speech: Speech) -> None:
    r = openai_post(client, speech["ogg"], bearer, response_format="text")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text.endswith("\n") and not r.text.startswith(" ")
    assert word_error_rate(speech.text, r.text) <= WER_BOUND


def test_openai_verbose_json(client: TestClient, bearer: dict[str, str], speech: Speech) -> None:
    r = openai_post(client, speech["flac"], bearer, response_format="verbose_json", language="en")
    assert r.status_code == 200
    body = r.json()
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == pytest.approx(4.8, abs=0.3)
    assert word_error_rate(speech.text, body["text"]) <= WER_BOUND
    assert body["usage"] == {"type": "duration", "seconds": 5}
    segs = body["segments"]
    assert segs and [s["id"] for s in segs] == list(range(len(segs)))
    assert " ".join(s["text"] for s in segs) == body["text"]
    assert all(0 <= s["start"] < s["end"] <= body["duration"] + 0.5 for s in segs)


def test_openai_srt_and_vtt(client: TestClient, bearer: dict[str, str], speech: Speech) -> None:
    ts = r"(\d\d):(\d\d):(\d\d)[,.](\d{3})"
    srt = openai_post(client, speech["mp3"], bearer, response_format="srt")
    assert srt.status_code == 200
    m = re.fullmatch(rf"1\n{ts} --> {ts}\n(.+)\n\n(?:\d+\n.*\n.+\n\n)*", srt.text)
    assert m, srt.text
    assert "," in srt.text.splitlines()[1] and m.group(1, 2, 3) == ("00", "00", "00")
    vtt = openai_post(client, speech["mp3"], bearer, response_format="vtt")
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n")
    first = vtt.text.split("\n")[2]
    assert re.fullmatch(rf"{ts} --> {ts}", first) and "." in first
    # The same cue text either way.
    assert srt.text.split("\n")[2] == vtt.text.split("\n")[3]


def test_openai_language_names_and_codes(
    client: TestClient,
    bearer: dict[str, str],
    speech: Speech,
) -> None:
    r = openai_post(client, speech["webm"], bearer, language="English")
    assert r.status_code == 200 and r.json()["text"]
    r = openai_post(client, speech["webm"], bearer, language="fr")
    assert r.status_code == 400 and "does not transcribe 'fr'" in r.json()["error"]["message"]
    r = openai_post(client, speech["webm"], bearer, language="not a language")
    assert r.status_code == 400 and "ISO 639-1" in r.json()["error"]["message"]


def openai_error(r: Any, status: int, kind: str = "invalid_request_error") -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and set(err) == {"message", "type", "param", "code"}
    assert err["type"] == kind and err["param"] is None and err["code"] is None
    return str(err["message"])


def test_openai_errors(client: TestClient, bearer: dict[str, str], speech: Speech) -> None:
    assert "API key" in openai_error(
        openai_post(client, speech["mp3"], {}), 401, "authentication_error"
    )
    openai_error(
        openai_post(client, speech["mp3"], {"Authorization": "Bearer x"}),
        401,
        "authentication_error",
    )
    assert "`file` is required" in openai_error(openai_post(client, None, bearer), 400)
    with speech["mp3"].open("rb") as f:
        r = client.post(OPENAI, headers=bearer, files={"file": ("a.mp3", f)})
    assert "model" in openai_error(r, 400)
    r = client.post(
        OPENAI, headers=bearer, files={"file": ("a.txt", io.BytesIO(b"text"))}, data={"model": "m"}
    )
    assert "not audio" in openai_error(r, 400)
    cases = [
        ({"response_format": "diarized_json"}, "response_format"),
        ({"temperature": "2"}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"timestamp_granularities[]": ["segment", "word"]}, "word"),
        ({"stream": "true"}, "stream"),
    ]
    for data, word in cases:
        assert word in openai_error(openai_post(client, speech["mp3"], bearer, **data), 400), data
    # Accepted: any model name, a temperature, segment granularity.
    r = openai_post(
        client,
        speech["mp3"],
        bearer,
        model="gpt-4o-transcribe",
        temperature="0.2",
        **{"timestamp_granularities[]": "segment"},
    )
    assert r.status_code == 200, r.text


def test_openai_over_the_limit_is_413(
    small: TestClient, bearer: dict[str, str], speech: Speech
) -> None:
    message = openai_error(openai_post(small, speech["wav"], bearer), 413)
    assert message == f"request body is larger than the {LIMIT + FORM_OVERHEAD} byte limit"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Upstream("the transcription server answered HTTP 500: boom"), 502),
        (Unavailable("the transcription server cannot be reached"), 503),
    ],
    ids=["upstream", "unavailable"],
)
def test_openai_backend_failure(
    client: TestClient,
    bearer: dict[str, str],
    speech: Speech,
    backend: Any,
    error: PastureError,
    status: int,
) -> None:
    backend(Failing(error))
    assert (
        openai_error(openai_post(client, speech["mp3"], bearer), status, "server_error")
        == error.message
    )
