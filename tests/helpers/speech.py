"""Real spoken audio for the speech tests, and word error rate.

espeak-ng speaks a sentence into a WAV; ffmpeg turns it into MP3, OGG (Vorbis), WEBM (Opus)
and M4A (AAC), and sox into FLAC (resampled to 44.1 kHz stereo on the way, so one of the
inputs is not already at the rate we decode to). The voice is synthetic but the audio is
real speech: the local whisper model transcribes it well, so tests can hold transcripts to a
word error rate bound. Files are made once per test session (the `speech` fixture; every
module that imports it shares the same directory) and skipped when a tool is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# 13 plain words at a slowish speaking rate (~4.8 s): whisper tiny.en gets all or all but one
# of them ("rides" -> "ride") in every format here. See WER_BOUND.
SENTENCE = "My sister bought a new bicycle and rides it to school every day."
# The word error rate a transcript of SENTENCE must stay within: three wrong words of 13
# (0.23) pass, four (0.31) fail. Measured 0.00-0.08 per format with tiny.en (int8, beam 5)
# on a 2-core x86 machine; broken audio (wrong rate, noise, a truncated clip) scores far
# above it.
WER_BOUND = 0.3
SPEED = 140  # espeak-ng words per minute (default 175)
FORMATS = ("wav", "mp3", "ogg", "webm", "m4a", "flac")
TOOLS = ("espeak-ng", "ffmpeg", "sox")
MISSING_TOOLS = [t for t in TOOLS if shutil.which(t) is None]
# For modules that also run the tools themselves: `pytestmark = needs_tools`.
needs_tools = pytest.mark.skipif(
    bool(MISSING_TOOLS),
    reason=f"speech tests need {', '.join(MISSING_TOOLS)} (Debian: apt-get install"
    f" {' '.join(MISSING_TOOLS)})",
)

# Output options per format (ffmpeg), chosen to be what real recorders produce.
_FFMPEG = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
}


@dataclass(frozen=True)
class Speech:
    text: str  # what was said
    files: dict[str, Path]  # format -> file
    directory: Path

    def __getitem__(self, fmt: str) -> Path:
        return self.files[fmt]


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def speak(text: str, wav: Path, *, speed: int = SPEED) -> Path:
    """espeak-ng's default English voice saying `text`, as a 22.05 kHz mono WAV."""
    _run(["espeak-ng", "-s", str(speed), "-w", str(wav), text])
    return wav


def make_speech(
    directory: Path, text: str = SENTENCE, *, name: str = "speech", speed: int = SPEED
) -> Speech:
    """`text` spoken, in every accepted format, under `directory` (made once: files already
    there are reused)."""
    missing = MISSING_TOOLS
    if missing:
        pytest.skip(
            f"speech tests need {', '.join(missing)} (Debian: apt-get install {' '.join(missing)})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    files = {fmt: directory / f"{name}.{fmt}" for fmt in FORMATS}
    if not all(p.is_file() for p in files.values()):
        wav = speak(text, files["wav"], speed=speed)
        for fmt, opts in _FFMPEG.items():
            _run(
                [
                    "ffmpeg",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-i",
                    str(wav),
                    *opts,
                    str(files[fmt]),
                ]
            )
        # sox: FLAC at 44.1 kHz stereo (resampled, channel duplicated).
        _run(["sox", str(wav), "-r", "44100", "-c", "2", str(files["flac"])])
    return Speech(text, files, directory)


@pytest.fixture(scope="session", name="speech")
def speech_fixture(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """The fixture `speech`: the test sentence spoken, in every format. Import
    `speech_fixture` into a test module to use it."""
    return make_speech(tmp_path_factory.getbasetemp() / "speech")


def silence_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A WAV of digital silence (sox)."""
    _run(
        ["sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(path), "trim", "0", str(seconds)]
    )
    return path


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lowercase words, punctuation dropped ("Friday's," -> "friday's")."""
    return [w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in the reference: the Levenshtein
    distance over normalised words. An empty reference scores 0 for an empty hypothesis
    and 1 otherwise."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (r != h),  # substitution or match
                )
            )
        previous = current
    return previous[-1] / len(ref)
