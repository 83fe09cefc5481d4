"""SageMakerTranscriber: speech to text by Pasture's GPU container (whisper.cpp's server
behind the router, infra/inference/).

The decoded clip goes as the request body, a 16 kHz mono 16-bit WAV (`Content-Type:
audio/wav`), with the language and prompt in CustomAttributes (`language=en;prompt=...`,
percent-encoded). InvokeEndpoint takes at most 6 MB, about 3 minutes of such audio, so a
longer clip is sent in pieces cut at the quietest moment near each limit (never inside a
word if there is a pause), transcribed in order, each piece prompted with the end of the text
so far (as whisper conditions on previous text) and in the language found for the first;
segment times are shifted back onto the whole clip.

Errors: the container's 400/413/415/422 mean it refused the audio (`Invalid`); its 503 a
backend down (`Unavailable`); throttling and connection failures `Unavailable`; the rest
`Upstream`. Blocking, as the port says (services call it from a worker thread).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pasture.adapters.aws.sagemaker_runtime import (
    CONTENT_WAV,
    MAX_ATTRIBUTES,
    MAX_PAYLOAD_BYTES,
    ModelFailure,
    SageMakerEndpoint,
    encode_attributes,
    wav_bytes,
)
from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.languages import language_code
from pasture.domain.speech import SAMPLE_RATE, AudioClip, Segment, Transcript
from pasture.ports import Transcriber

WHAT = "the SageMaker transcription model"
_WAV_HEADER = 44
_REFUSED_AUDIO = frozenset({400, 413, 415, 422})
# Where to cut a long clip: the quietest 50 ms window in the last 10 s before the limit.
_WINDOW = SAMPLE_RATE // 20
_SEARCH = 10 * SAMPLE_RATE
# How much of the text so far prompts the next piece (whisper keeps ~220 tokens of it).
_CARRY_CHARS = 400


class SageMakerTranscriber(Transcriber):
    def __init__(
        self,
        client: Any,
        endpoint: str,
        *,
        name: str = "whisper",
        max_request_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.name = name
        # Samples a request may carry (even, so a piece never splits a sample).
        self.max_samples = max((max_request_bytes - _WAV_HEADER) // 2, SAMPLE_RATE)
        self._endpoint = SageMakerEndpoint(client, endpoint)

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        samples = np.frombuffer(audio.pcm, dtype="<i2")
        if not len(samples):
            return Transcript("", language, 0.0, ())
        texts: list[str] = []
        segments: list[Segment] = []
        detected: str | None = None
        start = 0
        for end in _cuts(samples, self.max_samples):
            carry = prompt if start == 0 else " ".join(texts)[-_CARRY_CHARS:] or prompt
            body = self._send(samples[start:end].tobytes(), language or detected, carry)
            offset = start / SAMPLE_RATE
            text = " ".join(str(body.get("text", "")).split())
            if text:
                texts.append(text)
            for s in body.get("segments") or ():
                try:
                    seg_text = " ".join(str(s["text"]).split())
                    segments.append(
                        Segment(float(s["start"]) + offset, float(s["end"]) + offset, seg_text)
                    )
                except (KeyError, TypeError, ValueError):
                    raise Upstream(f"{WHAT} answered a malformed segment") from None
            reported = body.get("language")
            if detected is None and isinstance(reported, str):
                detected = language_code(reported)
            start = end
        return Transcript(" ".join(texts), language or detected, audio.seconds, tuple(segments))

    def _send(self, pcm: bytes, language: str | None, prompt: str | None) -> dict[str, Any]:
        try:
            raw = self._endpoint.invoke(
                wav_bytes(pcm), CONTENT_WAV, attributes=_attributes(language, prompt)
            )
        except ModelFailure as e:
            if e.status in _REFUSED_AUDIO:
                raise Invalid(f"{WHAT} refused the audio: {e.message}") from e
            if e.status == 503:
                raise Unavailable(f"{WHAT} is unavailable: {e.message}") from e
            raise Upstream(f"{WHAT} answered HTTP {e.status}: {e.message}") from e
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise Upstream(f"{WHAT} answered something that is not a transcript")
        return body


def _attributes(language: str | None, prompt: str | None) -> str | None:
    """CustomAttributes within its 1024 characters: a prompt too long keeps its end (the
    part whisper would keep)."""
    prompt = prompt or None
    header = encode_attributes({"language": language, "prompt": prompt})
    while len(header) > MAX_ATTRIBUTES and prompt:
        prompt = prompt[max(1, len(prompt) // 8) :] or None
        header = encode_attributes({"language": language, "prompt": prompt})
    return header or None


def _cuts(samples: np.ndarray, limit: int) -> list[int]:
    """End positions of the pieces: each at most `limit` samples long, cut where the signal
    is quietest in the last stretch before the limit."""
    n = len(samples)
    cuts: list[int] = []
    start = 0
    while n - start > limit:
        hard = start + limit
        lo = max(start + limit // 2, hard - _SEARCH)
        region = np.abs(samples[lo:hard].astype(np.int32))
        if len(region) >= _WINDOW:
            energy = np.convolve(region, np.ones(_WINDOW, dtype=np.int64), mode="valid")
            cut = lo + int(np.argmin(energy)) + _WINDOW // 2
        else:
            cut = hard
        cuts.append(cut)
        start = cut
    cuts.append(n)
    return cuts
