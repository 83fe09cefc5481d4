"""Decoding uploads with PyAV: accepted formats, refusals, the duration limit, the output.

Real files throughout: espeak-ng speech converted by ffmpeg and sox (tests/helpers/speech.py),
tones from sox, and files broken on purpose.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pasture.adapters.local.pyav_audio import decode_audio
from pasture.domain.errors import Invalid
from pasture.domain.speech import SAMPLE_RATE
from tests.helpers.speech import (
    FORMATS,
    Speech,
    needs_tools,
    speech_fixture,  # noqa: F401  (the `speech` fixture)
)

pytestmark = needs_tools

SPEC_REFUSAL = "send WAV, MP3, OGG, WEBM, M4A or FLAC"


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def dominant_hz(pcm: bytes) -> float:
    x = samples(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


class CountingReader(io.RawIOBase):
    """A file that records how much was read from it, and in what sizes."""

    def __init__(self, path: Path) -> None:
        self.f = path.open("rb")
        self.total = 0
        self.largest = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)
        self.total += n or 0
        self.largest = max(self.largest, n or 0)
        return n or 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()
        super().close()


# ---------------------------------------------------------------------- accepted


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_accepted_format_decodes_to_16khz_mono_s16(speech: Speech, fmt: str) -> None:
    with speech[fmt].open("rb") as f:
        clip = decode_audio(f, max_seconds=60)
    assert clip.source_format == fmt
    # espeak's WAV is the reference length; encoders add a little padding (AAC, Opus).
    with speech["wav"].open("rb") as f:
        reference = decode_audio(f, max_seconds=60).seconds
    assert 4.0 < reference < 6.0
    assert clip.seconds == pytest.approx(reference, abs=0.06)
    assert len(clip.pcm) % 2 == 0
    x = samples(clip.pcm)
    # Real sound, not silence or clipping noise: speech peaks well inside the s16 range.
    assert 2000 < np.abs(x).max() < 32767


def test_output_matches_ffmpegs_own_resampling(speech: Speech, tmp_path: Path) -> None:
    """Same samples as `ffmpeg -ac 1 -ar 16000 -f s16le` (the conversion LlamaChat runs
    before whisper), up to resampler rounding."""
    out = tmp_path / "ref.pcm"
    run("ffmpeg", "-loglevel", "error", "-i", str(speech["wav"]), "-ac", "1", "-ar", "16000",
        "-f", "s16le", str(out))  # fmt: skip
    ours = samples(decode_audio(str(speech["wav"]), max_seconds=60).pcm).astype(np.float64)
    ref = samples(out.read_bytes()).astype(np.float64)
    n = min(len(ours), len(ref))
    assert abs(len(ours) - len(ref)) < 0.01 * SAMPLE_RATE
    corr = np.corrcoef(ours[:n], ref[:n])[0, 1]
    assert corr > 0.99


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (8000, 1), (48000, 6)])
def test_rate_and_channels_are_converted(tmp_path: Path, rate: int, channels: int) -> None:
    """A 440 Hz tone at any rate and channel count is still 440 Hz, mono, at 16 kHz."""
    path = tmp_path / f"tone-{rate}-{channels}.flac"
    run("sox", "-n", "-r", str(rate), "-c", str(channels), str(path), "synth", "1.5", "sine", "440")
    clip = decode_audio(str(path), max_seconds=60)
    assert clip.seconds == pytest.approx(1.5, abs=0.01)
    assert dominant_hz(clip.pcm) == pytest.approx(440, abs=2)


def test_format_comes_from_the_bytes_not_the_name(speech: Speech, tmp_path: Path) -> None:
    misnamed = tmp_path / "recording.wav"
    misnamed.write_bytes(speech["mp3"].read_bytes())
    assert decode_audio(str(misnamed), max_seconds=60).source_format == "mp3"


def test_opus_in_ogg_and_pcm_in_matroska_are_accepted(speech: Speech, tmp_path: Path) -> None:
    opus = tmp_path / "a.opus"
    mkv = tmp_path / "a.mkv"
    run("ffmpeg", "-loglevel", "error", "-i", str(speech["wav"]), "-c:a", "libopus", str(opus))
    run("ffmpeg", "-loglevel", "error", "-i", str(speech["wav"]), "-c:a", "pcm_s16le", str(mkv))
    assert decode_audio(str(opus), max_seconds=60).source_format == "ogg"
    assert decode_audio(str(mkv), max_seconds=60).source_format == "webm"


# ---------------------------------------------------------------------- refused


def test_unsupported_containers_are_refused(speech: Speech, tmp_path: Path) -> None:
    aiff = tmp_path / "a.aiff"
    adts = tmp_path / "a.aac"
    run("sox", str(speech["wav"]), str(aiff))
    run("ffmpeg", "-loglevel", "error", "-i", str(speech["wav"]), "-f", "adts", str(adts))
    png = tmp_path / "a.png"
    png.write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
        )
    )
    for path in (aiff, adts, png):
        with pytest.raises(Invalid) as e:
            decode_audio(str(path), max_seconds=60)
        assert e.value.message.startswith("unsupported audio format"), path
        assert SPEC_REFUSAL in e.value.message


def test_a_playlist_is_refused_without_opening_what_it_names(
    speech: Speech, tmp_path: Path
) -> None:
    """FFmpeg's HLS demuxer would open the files (or URLs) an m3u8 names; only the accepted
    demuxers may run, so the playlist is refused before anything it names is read. (Without
    the `.m3u8` name FFmpeg does not even take it for HLS: then it is simply not audio.)"""
    playlist = tmp_path / "evil.m3u8"
    target = speech["mp3"]
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nfile://{target}\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(Invalid, match="unsupported audio format"):
        decode_audio(str(playlist), max_seconds=60)
    with playlist.open("rb") as f, pytest.raises(Invalid, match="unsupported audio format"):
        decode_audio(f, max_seconds=60)
    with pytest.raises(Invalid):
        decode_audio(io.BytesIO(playlist.read_bytes()), max_seconds=60)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is a text file and not audio at all\n", os.urandom(50_000)],
    ids=["empty", "text", "random"],
)
def test_non_audio_is_refused(content: bytes) -> None:
    with pytest.raises(Invalid, match="not audio we can read"):
        decode_audio(io.BytesIO(content), max_seconds=60)


def test_truncated_m4a_is_refused(speech: Speech) -> None:
    """ffmpeg writes the M4A index at the end: a cut file cannot be opened at all."""
    data = speech["m4a"].read_bytes()
    with pytest.raises(Invalid, match="damaged or truncated"):
        decode_audio(io.BytesIO(data[: len(data) // 2]), max_seconds=60)


def test_damaged_mp3_is_refused(speech: Speech) -> None:
    data = speech["mp3"].read_bytes()
    broken = data[:400] + os.urandom(len(data) - 400)
    with pytest.raises(Invalid, match="damaged"):
        decode_audio(io.BytesIO(broken), max_seconds=60)


def test_wav_header_without_samples_is_refused(speech: Speech) -> None:
    with pytest.raises(Invalid, match="no decodable audio"):
        decode_audio(io.BytesIO(speech["wav"].read_bytes()[:44]), max_seconds=60)


def test_a_file_without_an_audio_stream_is_refused(tmp_path: Path) -> None:
    video = tmp_path / "video.webm"
    run("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=5",
        "-c:v", "libvpx", str(video))  # fmt: skip
    with pytest.raises(Invalid, match="no audio stream"):
        decode_audio(str(video), max_seconds=60)


# ---------------------------------------------------------------------- limits


def test_duration_limit(speech: Speech) -> None:
    assert decode_audio(str(speech["ogg"]), max_seconds=6).seconds < 6
    with pytest.raises(Invalid, match="longer than the 2 second limit"):
        decode_audio(str(speech["ogg"]), max_seconds=2)


def test_decoding_stops_at_the_limit_and_reads_in_small_pieces(tmp_path: Path) -> None:
    """A 60 s WAV (1.9 MB) with a 1 s limit: decoding stops after a small part of the file
    (FFmpeg probes ~200 kB first), and reads are FFmpeg's 32 kB buffer, never the file."""
    wav = tmp_path / "minute.wav"
    run("sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(wav), "synth", "60", "sine", "300")
    size = wav.stat().st_size
    reader = CountingReader(wav)
    with pytest.raises(Invalid, match="1 second limit"):
        decode_audio(reader, max_seconds=1)  # type: ignore[arg-type]
    assert reader.total < size / 4
    assert reader.largest <= 64 * 1024
    # And without the limit the whole file is read, piece by piece.
    reader = CountingReader(wav)
    assert decode_audio(reader, max_seconds=120).seconds == pytest.approx(60, abs=0.01)  # type: ignore[arg-type]
    assert reader.total >= size and reader.largest <= 64 * 1024


def test_a_file_object_is_left_open_and_a_path_works(speech: Speech) -> None:
    with speech["flac"].open("rb") as f:
        decode_audio(f, max_seconds=60)
        assert not f.closed
    assert decode_audio(speech["flac"], max_seconds=60).source_format == "flac"
