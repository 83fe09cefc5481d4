"""Speech to text: the bare local transcriber vs the HTTP API, side by side.

    .venv/bin/python bench/transcribe.py [--runs 5] [--sentences 6] [--format wav] [--threads N]

One run, one recording: espeak-ng reads `--sentences` sentences (~5 s each) into a WAV,
converted with ffmpeg to `--format` (wav, mp3, ogg, webm, m4a or flac). Measured, interleaved
round by round (rotating order, so machine drift hits all alike):

  bare               `FasterWhisperTranscriber.transcribe` on the already decoded clip
                     (tiny.en, int8, beam 5, the server's defaults): the floor
  decode + bare      PyAV decoding of the file (`decode_audio`) + the same transcription
  API llamachat      POST /api/transcription (multipart `audio`) to a `pasture serve`
                     subprocess on 127.0.0.1 (PASTURE_WHISPER_PRELOAD=true, open mode)
  API openai         POST /v1/audio/transcriptions (`file`, model, response_format=json)

Real-time factor = processing seconds / audio seconds (lower is faster; 0.1 = ten times
faster than real time). Prints medians, the API / bare ratios (of medians, and paired per
round), the transcripts' word error rate against the script, and whether every path wrote
the same words. Traffic goes to 127.0.0.1 only; the run is bounded by --runs and a 120 s
timeout per request. Always exits 0.
"""

# onnxruntime before anything that may load usearch (the server's index); kept for uniformity.
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import httpx

from benchlib import machine, start_server, stop_server
from pasture.adapters.local.faster_whisper_transcriber import FasterWhisperTranscriber
from pasture.adapters.local.model_files import whisper_tiny_en_dir
from pasture.adapters.local.pyav_audio import decode_audio

SCRIPT = (
    "My sister bought a new bicycle and rides it to school every day.",
    "Please send the quarterly report to the finance team before Friday afternoon.",
    "Our train leaves the central station at nine o'clock tomorrow morning.",
    "The library on the corner opens early on weekdays and closes late on Sundays.",
    "We planted tomatoes, beans and carrots in the garden behind the old house.",
    "The meeting was moved to Thursday because the manager is travelling this week.",
    "A cup of hot tea and a good book make a rainy evening feel much shorter.",
    "The children counted the stars until their grandmother called them inside.",
)
FFMPEG = {
    "wav": [],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libvorbis"],
    "webm": ["-c:a", "libopus", "-b:a", "32k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "flac": ["-c:a", "flac"],
}
PATHS = ("bare", "decode + bare", "API llamachat", "API openai")


def make_audio(tmp: Path, sentences: int, fmt: str) -> tuple[Path, str]:
    text = " ".join(SCRIPT[:sentences])
    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), text], check=True, timeout=60)
    if fmt == "wav":
        return wav, text
    out = tmp / f"speech.{fmt}"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), *FFMPEG[fmt], str(out)],
        check=True,
        timeout=60,
    )
    return out, text


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference words, lowercase, punctuation dropped
    (the same measure as tests/helpers/speech.py)."""
    ref, hyp = (re.findall(r"[a-z0-9']+", t.lower()) for t in (reference, hypothesis))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i]
        for j, h in enumerate(hyp, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h)))
    return row[-1] / max(1, len(ref))


def start(data_dir: Path, log: Path, threads: int | None) -> tuple[subprocess.Popen[bytes], str]:
    settings = {
        "PASTURE_WHISPER_PRELOAD": "true",
        "PASTURE_CHAT_PRELOAD": "false",
        "PASTURE_LOG_LEVEL": "warning",
    }
    if threads:
        settings["PASTURE_WHISPER_THREADS"] = str(threads)
    return start_server(data_dir, log, settings)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench(args: argparse.Namespace, tmp: Path) -> None:
    audio, script = make_audio(tmp, args.sentences, args.format)
    clip = decode_audio(str(audio), max_seconds=3600)
    seconds = clip.seconds
    print(machine())
    print(
        f"faster_whisper {version('faster-whisper')}, ctranslate2 {version('ctranslate2')},"
        f" av {version('av')}; model whisper tiny.en (int8, beam 5, cpu_threads"
        f" {args.threads or 'default = all cores'}); audio {seconds:.1f} s"
        f" {args.format.upper()} ({audio.stat().st_size / 1024:.0f} kB), runs {args.runs}"
    )

    bare = FasterWhisperTranscriber(whisper_tiny_en_dir(), threads=args.threads, preload=True)
    proc, url = start(tmp / "data", tmp / "server.log", args.threads)
    try:
        http = httpx.Client(base_url=url, timeout=httpx.Timeout(120.0, connect=5.0))
        data = audio.read_bytes()

        def run_bare() -> str:
            return bare.transcribe(clip, language=None, prompt=None).text

        def run_decode_bare() -> str:
            c = decode_audio(str(audio), max_seconds=3600)
            return bare.transcribe(c, language=None, prompt=None).text

        def run_llamachat() -> str:
            r = http.post("/api/transcription", files={"audio": (audio.name, data)})
            r.raise_for_status()
            return str(r.json()["text"])

        def run_openai() -> str:
            r = http.post(
                "/v1/audio/transcriptions",
                files={"file": (audio.name, data)},
                data={"model": "whisper-1"},
            )
            r.raise_for_status()
            return str(r.json()["text"])

        fns: dict[str, Callable[[], str]] = dict(
            zip(PATHS, (run_bare, run_decode_bare, run_llamachat, run_openai), strict=True)
        )
        for fn in fns.values():  # warm-up: first call through every layer
            fn()
        times: dict[str, list[float]] = {p: [] for p in PATHS}
        texts: dict[str, set[str]] = {p: set() for p in PATHS}
        for rnd in range(args.runs):
            order = PATHS[rnd % len(PATHS) :] + PATHS[: rnd % len(PATHS)]
            for p in order:
                t0 = time.perf_counter()
                texts[p].add(fns[p]())
                times[p].append(time.perf_counter() - t0)
    finally:
        stop_server(proc)

    print()
    print(f"{'path':<15} {'median s':>9} {'RTF':>7} {'x real time':>12} {'WER':>6}")
    for p in PATHS:
        m = med(times[p])
        wer = max(word_error_rate(script, t) for t in texts[p])
        print(f"{p:<15} {m:>9.3f} {m / seconds:>7.4f} {seconds / m:>12.1f} {wer:>6.3f}")
    print()
    base = times["bare"]
    for p in PATHS[1:]:
        ratio = med(times[p]) / med(base)
        paired = med([t / b for t, b in zip(times[p], base, strict=True)])
        extra = med([t - b for t, b in zip(times[p], base, strict=True)])
        print(
            f"{p:<15} RTF / bare: {ratio:.3f} (paired per round {paired:.3f});"
            f" + {extra * 1000:.0f} ms a request"
        )
    same = len(set().union(*texts.values())) == 1
    print(f"transcripts identical across paths and rounds: {'yes' if same else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=6, choices=range(1, len(SCRIPT) + 1))
    ap.add_argument("--format", default="wav", choices=sorted(FFMPEG))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    args.runs = max(1, min(args.runs, 50))
    missing = [t for t in ("espeak-ng", "ffmpeg") if shutil.which(t) is None]
    if missing:
        print(f"skipped: bench/transcribe.py needs {', '.join(missing)}")
        return
    with tempfile.TemporaryDirectory(prefix="pasture-bench-stt-") as tmp:
        bench(args, Path(tmp))


if __name__ == "__main__":
    main()
