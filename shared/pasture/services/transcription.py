"""Speech to text: an uploaded recording in, a Transcript out, whatever the dialect.

Decoding (any accepted format -> 16 kHz mono PCM) and the Transcriber come injected: the
service never imports an adapter, and the transcriber (a model load, or a client) is built
on first use, once. Everything here blocks: routes call it from a worker thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import IO

from pasture.domain.errors import Invalid, PayloadTooLarge
from pasture.domain.languages import language_code
from pasture.domain.speech import AudioClip, Transcript
from pasture.ports import Transcriber

Decoder = Callable[[IO[bytes]], AudioClip]  # raises Invalid for audio it cannot read
_CODE = re.compile(r"[a-z]{2,3}")
MAX_PROMPT_CHARS = 4000  # whisper keeps only the last ~224 tokens of a prompt anyway


class TranscriptionService:
    def __init__(
        self,
        decode: Decoder,
        transcriber: Callable[[], Transcriber],
        *,
        max_audio_bytes: int,
    ) -> None:
        self._decode = decode
        self._factory = transcriber
        self._transcriber: Transcriber | None = None
        self._lock = threading.Lock()
        self.max_audio_bytes = max_audio_bytes

    def transcriber(self) -> Transcriber:
        """The transcriber, built on the first call (thread-safe); a failed build is retried
        by the next call."""
        if self._transcriber is None:
            with self._lock:
                if self._transcriber is None:
                    self._transcriber = self._factory()
        return self._transcriber

    @property
    def model_name(self) -> str:
        return self.transcriber().name

    def transcribe(
        self,
        audio: IO[bytes],
        *,
        size: int | None = None,
        language: str | None = None,
        prompt: str | None = None,
    ) -> Transcript:
        """`audio`: the uploaded file (read from where it is, never whole into memory);
        `size`: its length in bytes when known. Raises PayloadTooLarge over the limit,
        Invalid for bad audio or options, Upstream/Unavailable for a failing backend."""
        if size is not None and size > self.max_audio_bytes:
            raise PayloadTooLarge(
                f"the audio file is larger than the {self.max_audio_bytes} byte limit"
            )
        lang = normalise_language(language)
        if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
            raise Invalid(f"prompt is longer than {MAX_PROMPT_CHARS} characters")
        clip = self._decode(audio)
        return self.transcriber().transcribe(clip, language=lang, prompt=prompt or None)


def normalise_language(value: str | None) -> str | None:
    """ "en", " EN ", "english" -> "en"; empty -> None (detect); anything else is Invalid."""
    if value is None or not value.strip():
        return None
    code = language_code(value)
    if code is not None:
        return code
    v = value.strip().lower()
    if _CODE.fullmatch(v):
        return v  # a code whisper's list lacks: the transcriber decides
    raise Invalid(f"language {value!r} is not an ISO 639-1 code such as 'en'")
