"""LlamaChat's `POST /api/transcription`: multipart field `audio` -> `{"text": "..."}`.

Formats: WAV, MP3, OGG, WEBM, M4A, FLAC (recognised from the bytes). Errors in LlamaChat's
envelope: 400 missing field or bad audio, 401 key, 413 over PASTURE_MAX_AUDIO_BYTES (refused
by the body-size guard while the upload streams in), 502 the speech backend failed or cannot
be reached (LlamaChat's one backend status; the OpenAI route keeps 503 for the latter). A plain
`def` route: decoding and transcribing block, so they run in the threadpool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamachat.envelope import LLAMACHAT  # noqa: F401  (registers the dialect)
from pasture.domain.errors import Invalid, Unavailable, Upstream

router = APIRouter(tags=["LlamaChat"])


@router.post("/api/transcription", summary="Transcribe an audio file")
def transcribe(
    c: ContainerDep,
    tenant: TenantDep,
    audio: Annotated[
        UploadFile | None,
        File(description="The recording: WAV, MP3, OGG, WEBM, M4A or FLAC."),
    ] = None,
) -> dict[str, str]:
    if audio is None:
        raise Invalid(
            "`audio` is required: send the recording as the multipart form field `audio`."
        )
    try:
        transcript = c.transcription.transcribe(audio.file, size=audio.size)
    except Unavailable as e:
        # LlamaChat has one status for a speech backend that fails: 502.
        raise Upstream(e.message) from e
    finally:
        audio.file.close()  # the spooled upload's temporary file goes now
    return {"text": transcript.text}
