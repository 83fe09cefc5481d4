"""`POST /v1/audio/transcriptions` in OpenAI's shape (an extension: none of the reference
APIs has it), so OpenAI's SDKs and tools built on them transcribe with Pasture.

Multipart fields: `file` (required), `model` (required, as OpenAI requires it; any value is
accepted and the configured transcriber answers), `language`, `prompt`, `response_format`
(`json` default, `text`, `verbose_json`, `srt`, `vtt`), `temperature` (0-1, accepted; the
transcriber decodes with its own settings), `timestamp_granularities[]` (`segment` only).
Errors in OpenAI's envelope (`api/openai/envelope.py`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.openai.envelope import OPENAI  # noqa: F401  (registers the dialect)
from pasture.domain.errors import Invalid
from pasture.domain.languages import language_name
from pasture.domain.speech import Segment, Transcript

router = APIRouter(tags=["OpenAI audio"])

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


@router.post("/v1/audio/transcriptions", summary="Transcribe audio (OpenAI's API)")
def create_transcription(
    c: ContainerDep,
    tenant: TenantDep,
    file: Annotated[UploadFile | None, File(description="WAV, MP3, OGG, WEBM, M4A or FLAC")] = None,
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float | None, Form()] = None,
    timestamp_granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool | None, Form()] = None,
) -> Response:
    try:
        if file is None:
            raise Invalid("`file` is required: send the audio as the multipart form field `file`.")
        if not model:
            raise Invalid("you must provide a model parameter (any name, e.g. whisper-1)")
        if response_format not in FORMATS:
            raise Invalid(
                f"response_format {response_format!r} is not supported; use one of: "
                + ", ".join(FORMATS)
            )
        if temperature is not None and not 0.0 <= temperature <= 1.0:
            raise Invalid("temperature must be between 0 and 1")
        if stream:
            raise Invalid("stream is not supported: transcripts are returned whole")
        unsupported = sorted(set(timestamp_granularities or ()) - {"segment"})
        if unsupported:
            raise Invalid(f"timestamp_granularities {unsupported} are not supported (only segment)")
        transcript = c.transcription.transcribe(
            file.file, size=file.size, language=language, prompt=prompt
        )
    finally:
        if file is not None:
            file.file.close()
    return shape(transcript, response_format)


def shape(t: Transcript, response_format: str) -> Response:
    if response_format == "text":
        return PlainTextResponse(t.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(srt(segments(t)))
    if response_format == "vtt":
        return PlainTextResponse(vtt(segments(t)), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse(verbose(t))
    return JSONResponse({"text": t.text})


def segments(t: Transcript) -> tuple[Segment, ...]:
    """The transcriber's segments; one spanning the clip when it reports none
    (whisper.cpp's json answer has only the text)."""
    if t.segments:
        return t.segments
    return (Segment(0.0, t.duration, t.text),) if t.text else ()


def verbose(t: Transcript) -> dict[str, Any]:
    return {
        "task": "transcribe",
        "language": language_name(t.language),
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {
                "id": i,
                "seek": int(s.start * 100),  # whisper's unit: 10 ms frames
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
            }
            for i, s in enumerate(segments(t))
        ],
        "usage": {"type": "duration", "seconds": math.ceil(t.duration)},
    }


def timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segs: tuple[Segment, ...]) -> str:
    return "".join(
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text}\n\n"
        for i, s in enumerate(segs, 1)
    )


def vtt(segs: tuple[Segment, ...]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text}\n\n" for s in segs
    )
