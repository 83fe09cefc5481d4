"""TranscriptionService rules and how bootstrap wires the transcriber from settings.

The decoder and transcriber here are small fakes (named so) where the test is about the
service's own rules; the real ones are tested in test_pyav_audio.py and the contract suite.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from pasture.bootstrap import _build_transcription
from pasture.config import Settings
from pasture.domain.errors import Invalid, PayloadTooLarge, Unavailable
from pasture.domain.speech import AudioClip, Transcript
from pasture.ports import Transcriber
from pasture.services.transcription import TranscriptionService, normalise_language


class EchoTranscriber(Transcriber):
    """FAKE: reports what it was asked."""

    name = "echo"

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        return Transcript(f"{language}|{prompt}|{len(audio.pcm)}", language, audio.seconds)


def fake_decode(f: IO[bytes]) -> AudioClip:
    """FAKE decoder: the bytes are the PCM."""
    return AudioClip(f.read(), "wav")


def service(factory: object = EchoTranscriber, max_bytes: int = 1000) -> TranscriptionService:
    return TranscriptionService(fake_decode, factory, max_audio_bytes=max_bytes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("en", "en"),
        (" EN ", "en"),
        ("English", "en"),
        ("haitian creole", "ht"),
        ("yue", "yue"),
        ("xx", "xx"),
    ],
)
def test_language_normalisation(value: str | None, code: str | None) -> None:
    assert normalise_language(value) == code


@pytest.mark.parametrize("value", ["en-US", "e", "klingonese", "12"])
def test_bad_languages_are_invalid(value: str) -> None:
    with pytest.raises(Invalid, match="ISO 639-1"):
        normalise_language(value)


def test_options_reach_the_transcriber() -> None:
    t = service().transcribe(io.BytesIO(b"\0" * 64), language="English", prompt="Names.")
    assert t.text == "en|Names.|64"
    assert service().transcribe(io.BytesIO(b"\0\0"), prompt="").text == "None|None|2"


def test_size_and_prompt_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="1000 byte limit"):
        service().transcribe(io.BytesIO(b""), size=1001)
    assert service().transcribe(io.BytesIO(b"\0\0"), size=1000).text
    with pytest.raises(Invalid, match="prompt is longer"):
        service().transcribe(io.BytesIO(b"\0\0"), prompt="x" * 5000)


def test_transcriber_is_built_once_lazily_and_a_failed_build_is_retried() -> None:
    built: list[int] = []
    fail = [True]

    def factory() -> Transcriber:
        time.sleep(0.05)  # widen the race window
        if fail[0]:
            fail[0] = False
            raise Unavailable("model missing")
        built.append(1)
        return EchoTranscriber()

    s = service(factory)
    assert built == []  # nothing built by constructing the service
    with pytest.raises(Unavailable):
        s.transcriber()
    threads = [threading.Thread(target=s.transcriber) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [1] and s.model_name == "echo"


# ---------------------------------------------------------------------- bootstrap


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["whispercpp", "openai"])
def test_remote_transcriber_needs_a_url(tmp_path: Path, kind: str) -> None:
    with pytest.raises(Invalid, match="needs PASTURE_TRANSCRIBER_URL"):
        _build_transcription(settings(tmp_path, transcriber=kind))


def test_remote_transcribers_are_built_from_settings(tmp_path: Path) -> None:
    from pasture.adapters.remote.whisper_transcriber import (
        OpenAITranscriber,
        WhisperCppTranscriber,
    )

    s = _build_transcription(
        settings(tmp_path, transcriber="whispercpp", transcriber_url="http://127.0.0.1:9/")
    )
    t = s.transcriber()
    assert isinstance(t, WhisperCppTranscriber) and t.url == "http://127.0.0.1:9/inference"
    s = _build_transcription(
        settings(
            tmp_path,
            transcriber="openai",
            transcriber_url="http://127.0.0.1:9/v1",
            transcriber_model="whisper-large-v3",
            transcriber_api_key="sk-1",
            remote_read_timeout=7,
        )
    )
    o = s.transcriber()
    assert isinstance(o, OpenAITranscriber)
    assert o.url == "http://127.0.0.1:9/v1/audio/transcriptions"
    assert (o.model, o.api_key, o.name, o.read_timeout) == (
        "whisper-large-v3",
        "sk-1",
        "whisper-large-v3",
        7,
    )


def test_a_wrong_model_dir_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="PASTURE_WHISPER_MODEL_DIR"):
        _build_transcription(settings(tmp_path, whisper_model_dir=tmp_path))


def test_local_default_is_lazy_and_uses_the_packaged_model(tmp_path: Path) -> None:
    from pasture.adapters.local.faster_whisper_transcriber import FasterWhisperTranscriber

    s = _build_transcription(settings(tmp_path, whisper_threads=1, whisper_beam_size=2))
    assert s._transcriber is None
    t = s.transcriber()
    assert isinstance(t, FasterWhisperTranscriber)
    assert t.name == "whisper-tiny.en" and (t.threads, t.beam_size) == (1, 2)
    assert t._model is None  # the model itself loads on the first transcription


def test_building_the_app_loads_no_speech_library(tmp_path: Path) -> None:
    """Lambda handlers import only what their group needs, heavy libraries lazily: the
    transcription group's app is built without importing PyAV, faster-whisper or
    CTranslate2."""
    code = (
        "import sys\n"
        "from pasture.api.app import create_app\n"
        "from pasture.api.groups import group\n"
        "from pasture.bootstrap import _build_transcription\n"
        "from pasture.config import Settings\n"
        "create_app([group('transcription')]).openapi()\n"
        f"_build_transcription(Settings(data_dir={str(tmp_path)!r}))\n"
        "print(sorted(m for m in ('av', 'faster_whisper', 'ctranslate2') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
