"""Uploaded audio -> AudioClip (16 kHz mono s16le PCM), decoded in process with PyAV.

PyAV (FFmpeg's libraries; faster-whisper depends on it) reads the upload from its file,
packet by packet: the encoded file is never read into memory whole, only the decoded PCM is
kept (32 kB a second), and decoding stops as soon as it passes `max_seconds`.

The container is recognised from its bytes, never from a filename, and FFmpeg is only
allowed the demuxers of the formats we accept (`format_whitelist`): a demuxer such as HLS
opens the files and URLs a playlist names while it opens the input, so probing an upload
with every demuxer enabled would let a client make the server read local files or fetch
URLs.
"""

from __future__ import annotations

import logging
import os
from typing import IO, Any

from pasture.domain.errors import Invalid
from pasture.domain.speech import SAMPLE_RATE, AudioClip

log = logging.getLogger(__name__)

# FFmpeg demuxer name -> the format we report. A demuxer serves a family: "matroska,webm"
# (WEBM is Matroska), "mov,mp4,m4a,3gp,3g2,mj2" (M4A is MP4), "ogg" (Vorbis, Opus, ...).
DEMUXERS = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "matroska": "webm",
    "mov": "m4a",
    "flac": "flac",
}
ACCEPTED = "WAV, MP3, OGG, WEBM, M4A or FLAC"
# A few damaged packets in a long recording are skipped, as the ffmpeg command line does;
# more than one in this many means the file is broken, not the odd frame.
MAX_BAD_PACKET_SHARE = 100

Source = str | os.PathLike[str] | IO[bytes]


def decode_audio(source: Source, *, max_seconds: float) -> AudioClip:
    """Decode `source` (a path, or a readable, seekable binary file object, which is left
    open) into 16 kHz mono signed 16-bit PCM.

    Raises Invalid for a format we do not accept, a file that is not audio or is damaged,
    one without an audio stream or without any decodable sound, and audio longer than
    `max_seconds`.
    """
    import av  # heavy (FFmpeg's libraries): loaded on first use

    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    try:
        container = av.open(
            source,
            mode="r",
            options={"format_whitelist": ",".join(DEMUXERS)},
            metadata_errors="ignore",
        )
    except av.ArgumentError:
        # FFmpeg recognised the data, as a format that is not on the whitelist.
        raise Invalid(f"unsupported audio format; send {ACCEPTED}") from None
    except (av.FFmpegError, EOFError, ValueError) as e:
        log.info("unreadable audio: %s", e)
        raise Invalid(
            f"the file is not audio we can read (not {ACCEPTED}, or damaged or truncated)"
        ) from None
    try:
        return _decode(av, container, max_seconds)
    finally:
        container.close()


def _source_format(container: Any) -> str:
    for name in str(container.format.name).split(","):
        if name in DEMUXERS:
            return DEMUXERS[name]
    # The whitelist makes this unreachable; refuse rather than guess.
    raise Invalid(f"unsupported audio format; send {ACCEPTED}")


def _decode(av: Any, container: Any, max_seconds: float) -> AudioClip:
    fmt = _source_format(container)
    if not container.streams.audio:
        raise Invalid(f"the {fmt.upper()} file has no audio stream")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE) * 2  # bytes of PCM
    pcm = bytearray()
    packets = bad = 0

    def add(frames: list[Any]) -> None:
        for out in frames:
            # Packed s16 mono: one plane of `samples` native int16s; ask for little-endian.
            pcm.extend(out.to_ndarray().astype("<i2", copy=False).tobytes())
        if len(pcm) > limit:
            raise Invalid(f"the audio is longer than the {max_seconds:g} second limit")

    try:
        for packet in container.demux(stream):
            # The last packet is empty: decoding it flushes the frames the decoder holds.
            packets += packet.size > 0
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                bad += 1
                log.info("skipping a damaged %s packet: %s", fmt, e)
                continue
            for frame in frames:
                add(resampler.resample(frame))
        add(resampler.resample(None))
    except (av.FFmpegError, EOFError, ValueError) as e:
        # A demuxer error mid-file, or frames that change format mid-stream.
        log.info("audio decoding failed: %s", e)
        raise Invalid(f"the {fmt.upper()} audio is damaged and could not be decoded") from None
    if bad and bad * MAX_BAD_PACKET_SHARE > packets:
        raise Invalid(
            f"the {fmt.upper()} audio is damaged: {bad} of its {packets} packets could not be"
            " decoded"
        )
    if not pcm:
        raise Invalid(f"the {fmt.upper()} file contains no decodable audio")
    return AudioClip(bytes(pcm), fmt)
