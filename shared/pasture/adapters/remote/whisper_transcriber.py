"""Transcribers over HTTP: a whisper.cpp server, or any server of OpenAI's audio API.

Both get the already decoded clip as a 16 kHz mono 16-bit WAV (built with the stdlib `wave`
module), so the server never sees the client's original format and needs no ffmpeg.

- `WhisperCppTranscriber`: whisper.cpp's `server` example, `POST <base>/inference` with the
  multipart fields `file`, `response_format=json` and optionally `language` and `prompt`;
  it answers `{"text": ...}` (no segments, no detected language).
- `OpenAITranscriber`: `POST <base>/v1/audio/transcriptions` (OpenAI, faster-whisper-server,
  LocalAI, vLLM, ...) with `file`, `model`, `response_format=verbose_json` (segments and
  language), `language`, `prompt`, and the API key as a bearer token. A server that refuses
  verbose_json (OpenAI's gpt-4o models do) is asked again with `json`, and from then on
  only with `json`.

Failures: a server that cannot be reached is Unavailable; one that answers an error, times
out or answers something unreadable is Upstream; a 400/413/415/422 about the audio is
Invalid (the client's recording was refused). Messages never name the server's address
(clients see them); the address goes to the log.
"""

from __future__ import annotations

import io
import json
import logging
import wave
from typing import Any

import httpx

from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.languages import language_code
from pasture.domain.speech import SAMPLE_RATE, AudioClip, Segment, Transcript
from pasture.ports import Transcriber

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300
_REFUSED_AUDIO = frozenset({400, 413, 415, 422})


def wav_bytes(audio: AudioClip) -> bytes:
    """The clip as a RIFF/WAVE file: PCM, 1 channel, 16-bit, 16 kHz."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(audio.pcm)
    return buf.getvalue()


def _error_text(r: httpx.Response) -> str:
    """The server's own words: `{"error": "..."}`, `{"error": {"message": ...}}`,
    `{"detail": ...}` or the start of the body."""
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:_MAX_ERROR_CHARS] or r.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:_MAX_ERROR_CHARS]
    return json.dumps(body)[:_MAX_ERROR_CHARS]


class _HttpTranscriber(Transcriber):
    what = "the transcription server"

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float) -> None:
        self.url = url
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.read_timeout = read_timeout

    def _post(
        self, data: dict[str, str], audio: AudioClip, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        files = {"file": ("audio.wav", wav_bytes(audio), "audio/wav")}
        try:
            # A client per call: a transcription takes far longer than a TCP handshake, and
            # nothing is left open between requests.
            with httpx.Client(timeout=self.timeout) as client:
                return client.post(self.url, data=data, files=files, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            log.warning("transcription server %s unreachable: %s", self.url, e)
            raise Unavailable(f"{self.what} cannot be reached") from e
        except httpx.TimeoutException as e:
            log.warning("transcription server %s timed out: %s", self.url, e)
            raise Upstream(f"{self.what} did not answer within {self.read_timeout:g} s") from e
        except httpx.HTTPError as e:
            log.warning("transcription server %s failed: %s", self.url, e)
            raise Upstream(f"{self.what} failed: {type(e).__name__}") from e

    def _check(self, r: httpx.Response) -> dict[str, Any]:
        if r.status_code in _REFUSED_AUDIO:
            raise Invalid(f"{self.what} refused the audio: {_error_text(r)}")
        if r.status_code >= 300:
            log.warning(
                "transcription server %s answered %s: %s", self.url, r.status_code, r.text[:500]
            )
            raise Upstream(f"{self.what} answered HTTP {r.status_code}: {_error_text(r)}")
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise Upstream(f"{self.what} answered something that is not a transcript")
        return body


class WhisperCppTranscriber(_HttpTranscriber):
    what = "the whisper.cpp server"

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "whisper.cpp",
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ) -> None:
        super().__init__(
            base_url.rstrip("/") + "/inference",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self.name = name

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        data = {"response_format": "json"}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        body = self._check(self._post(data, audio))
        # whisper.cpp puts a space before every segment and a newline between them.
        text = " ".join(body["text"].split())
        return Transcript(text, language, audio.seconds, ())


class OpenAITranscriber(_HttpTranscriber):
    what = "the transcription server"

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "whisper-1",
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ) -> None:
        """`base_url` is the server's root (`http://host:port`); one ending in `/v1` is
        accepted too."""
        base = base_url.rstrip("/")
        base = base.removesuffix("/v1")
        super().__init__(
            base + "/v1/audio/transcriptions",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self.name = model
        self.model = model
        self.api_key = api_key
        self.verbose = True  # ask for verbose_json until the server refuses it

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        data = {"model": self.model}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        if self.verbose:
            r = self._post({**data, "response_format": "verbose_json"}, audio, headers)
            if 400 <= r.status_code < 500 and _about_format(r):
                log.info("%s refuses verbose_json; using json from now on", self.url)
                self.verbose = False
            else:
                return self._transcript(self._check(r), audio, language)
        r = self._post({**data, "response_format": "json"}, audio, headers)
        return self._transcript(self._check(r), audio, language)

    def _transcript(
        self, body: dict[str, Any], audio: AudioClip, language: str | None
    ) -> Transcript:
        segments: list[Segment] = []
        for s in body.get("segments") or ():
            try:
                segments.append(Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip()))
            except (KeyError, TypeError, ValueError):
                raise Upstream(f"{self.what} answered a malformed segment") from None
        duration = body.get("duration")
        reported = body.get("language")
        return Transcript(
            body["text"].strip(),
            (language_code(reported) if isinstance(reported, str) else None) or language,
            float(duration) if isinstance(duration, int | float) else audio.seconds,
            tuple(segments),
        )


def _about_format(r: httpx.Response) -> bool:
    text = _error_text(r).lower()
    return "response_format" in text or "verbose_json" in text or "response format" in text
