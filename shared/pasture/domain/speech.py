"""Speech-to-text values shared by the Transcriber port, the service and the dialects."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000  # every transcriber takes 16 kHz mono


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio: 16 kHz mono signed 16-bit little-endian PCM."""

    pcm: bytes
    source_format: str  # the container it came in ("wav", "mp3", "ogg", "webm", "m4a", "flac")

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * SAMPLE_RATE)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the clip
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float  # seconds of audio transcribed
    segments: tuple[Segment, ...] = ()
