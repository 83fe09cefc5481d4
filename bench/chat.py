"""Chat generation: the default model raw vs the adapter vs the HTTP API, side by side.

    .venv/bin/python bench/chat.py [--runs 7] [--max-tokens 128] [--threads N]

One run, same model file (SmolLM2-135M-Instruct Q4_1), same rendered prompt, same sampling
(temperature 0, the adapter's top_k/top_p/min_p/repeat penalty), same threads, n_ctx 4096:

  raw generate       `Llama.generate` on the prompt tokens (the floor: no detokenizing even)
  raw completion     `Llama.create_completion(prompt_tokens, stream=True)`
  adapter stream     `LlamaCppChatModel.stream` in this process (worker thread + asyncio queue)
  API non-stream     POST /v1/projects/bench/chat/chat/completions to a `pasture serve`
                     subprocess (PASTURE_CHAT_PRELOAD=true), tokens from `usage`
  API stream         the same with stream=true + include_usage; TTFT = first content frame
                     (httpx iter_lines + json.loads per frame, as a Python client does)
  API stream lite    the same stream read as raw bytes, parsed after the end: the least
                     client CPU, to tell the client's share of the cost from the server's

The prompt is one system + one user message sent explicitly (the request's system message
replaces the project's), stateless (X-No-Session) so no history grows. Each round gives the
system message a new leading number: llama-cpp-python reuses the KV cache for a repeated
prompt prefix, so without it every call after the first would skip prompt evaluation. Every
path sees each round's prompt cold (the server gets an untimed 1-token request with another
prompt before each timed one). Paths are interleaved round by round, rotating the order, so
machine drift hits all alike. Medians are printed; tokens/s is completion tokens / wall time
from request to last token, decode tokens/s excludes the first token.

The server's VmRSS / VmHWM (/proc/<pid>/status) are read once the model is loaded (after
startup and one warm-up request) and after the runs. Aims: API throughput >= 0.95 of raw,
API TTFT - raw TTFT <= 15 ms, server RSS <= 600 MB. A CPU table shows where the time goes:
per request, the CPU of the model's threads, of the main thread (the server's event loop)
and of this client. Always exits 0.
"""

# onnxruntime before anything that may load usearch (see bench/memory.py); kept for uniformity.
import onnxruntime  # noqa: F401  # isort: skip

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from benchlib import machine, start_server, stop_server
from pasture.adapters.local.llamacpp_chat import (
    DEFAULT_MIN_P,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    REPEAT_PENALTY,
    LlamaCppChatModel,
    default_threads,
)
from pasture.adapters.local.model_files import smollm2_gguf
from pasture.domain.chat import ChatMessage, Completion, GenerationParams

MB = 1024 * 1024
CTX = 4096
NS, PROJECT = "bench", "chat"
USER = (
    "Write a long story about a llama who travels around the world, with many chapters and"
    " a lot of detail."
)
AIM_RATIO, AIM_TTFT_MS, AIM_RSS_MB = 0.95, 15.0, 600

PATHS = (
    "raw generate",
    "raw completion",
    "adapter stream",
    "API non-stream",
    "API stream",
    "API stream lite",
)


@dataclass
class Sample:
    total: float  # seconds, request to last token
    tokens: int  # completion tokens
    ttft: float | None = None  # seconds to the first token / content frame
    prompt_tokens: int | None = None
    # CPU seconds during the call: the model's threads, the main thread, this client
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def tps(self) -> float:
        return self.tokens / self.total

    @property
    def decode_tps(self) -> float | None:
        if self.ttft is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / (self.total - self.ttft)


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {p: [] for p in PATHS})
    # (round, path) -> completion tokens, to check every path generated the same count
    counts: dict[int, dict[str, int]] = field(default_factory=dict)


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds so far of a process: (every other thread, its main thread), from the
    per-thread schedstat (ns). Threads that ended in between are lost, none do here."""
    main = other = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(task.name) == pid:
            main = ns
        else:
            other += ns
    return other / 1e9, main / 1e9


def messages(round_no: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"{round_no:03d}. You are a helpful assistant."},
        {"role": "user", "content": USER},
    ]


# ---------------------------------------------------------------------- in-process paths


def sampling() -> dict[str, Any]:
    return {
        "top_k": DEFAULT_TOP_K,
        "top_p": DEFAULT_TOP_P,
        "min_p": DEFAULT_MIN_P,
        "repeat_penalty": REPEAT_PENALTY,
    }


def run_raw_generate(llm: Any, is_eog: Callable[[int], bool], prompt: list[int], n: int) -> Sample:
    t0 = time.perf_counter()
    first = None
    count = 0
    gen = llm.generate(prompt, temp=0.0, **sampling())
    try:
        for token in gen:
            if first is None:
                first = time.perf_counter() - t0
            if is_eog(token):
                break
            count += 1
            if count >= n:
                break
    finally:
        gen.close()
    return Sample(time.perf_counter() - t0, count, first, len(prompt))


def run_raw_completion(llm: Any, prompt: list[int], n: int) -> Sample:
    t0 = time.perf_counter()
    first = None
    usage: dict[str, int] = {}
    chunks = 0
    for chunk in llm.create_completion(
        prompt, max_tokens=n, temperature=0.0, stream=True, **sampling()
    ):
        if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
            first = time.perf_counter() - t0
        chunks += 1
        usage = chunk.get("usage") or usage
    total = time.perf_counter() - t0
    # Streamed create_completion yields one chunk per token plus a final one; it only
    # reports usage when not streaming, so count the token chunks.
    tokens = usage.get("completion_tokens") or chunks - 1
    return Sample(total, tokens, first, len(prompt))


async def run_adapter(model: LlamaCppChatModel, msgs: list[dict[str, str]], n: int) -> Sample:
    domain = [ChatMessage(m["role"], m["content"]) for m in msgs]
    t0 = time.perf_counter()
    first = None
    done: Completion | None = None
    async for item in model.stream(domain, GenerationParams(max_tokens=n, temperature=0.0)):
        if isinstance(item, Completion):
            done = item  # the last item: the stream ends after it
        elif first is None and item.text:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    assert done is not None
    return Sample(total, done.usage.completion_tokens, first, done.usage.prompt_tokens)


# ---------------------------------------------------------------------- the server


def proc_status(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


def start(data_dir: Path, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_server(
        data_dir,
        log,
        {
            "PASTURE_CHAT_PRELOAD": "true",
            "PASTURE_CHAT_THREADS": str(threads),
            "PASTURE_CHAT_CONTEXT_LENGTH": str(CTX),
            "PASTURE_LOG_LEVEL": "warning",
        },
    )


CHAT_PATH = f"/v1/projects/{NS}/{PROJECT}/chat/completions"
STATELESS = {"X-No-Session": "true"}


def flush(http: httpx.Client) -> None:
    """One untimed token with an unrelated prompt: the next timed prompt is evaluated cold."""
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
        "temperature": 0,
    }
    http.post(CHAT_PATH, json=body, headers=STATELESS).raise_for_status()


def run_api(http: httpx.Client, msgs: list[dict[str, str]], n: int) -> Sample:
    body = {"model": "default", "messages": msgs, "max_tokens": n, "temperature": 0}
    t0 = time.perf_counter()
    r = http.post(CHAT_PATH, json=body, headers=STATELESS)
    total = time.perf_counter() - t0
    r.raise_for_status()
    u = r.json()["usage"]
    return Sample(total, u["completion_tokens"], None, u["prompt_tokens"])


def stream_body(msgs: list[dict[str, str]], n: int) -> dict[str, Any]:
    return {
        "model": "default",
        "messages": msgs,
        "max_tokens": n,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def run_api_stream(http: httpx.Client, msgs: list[dict[str, str]], n: int) -> Sample:
    body = stream_body(msgs, n)
    t0 = time.perf_counter()
    first = None
    usage: dict[str, int] = {}
    with http.stream("POST", CHAT_PATH, json=body, headers=STATELESS) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            frame = json.loads(line[6:])
            if "error" in frame:
                raise RuntimeError(frame["error"])
            if frame.get("usage"):
                usage = frame["usage"]
            choices = frame.get("choices") or []
            if first is None and choices and choices[0]["delta"].get("content"):
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return Sample(total, usage["completion_tokens"], first, usage["prompt_tokens"])


def run_api_stream_lite(http: httpx.Client, msgs: list[dict[str, str]], n: int) -> Sample:
    """The stream with as little client work as can be: raw bytes, JSON parsed only after
    the end. TTFT is when the first bytes holding a non-empty content delta arrive."""
    body = stream_body(msgs, n)
    t0 = time.perf_counter()
    first = None
    parts: list[bytes] = []
    with http.stream("POST", CHAT_PATH, json=body, headers=STATELESS) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            parts.append(chunk)
            if first is None and b'"content":"' in chunk:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    usage: dict[str, int] = {}
    for frame in b"".join(parts).split(b"\n\n"):
        if frame.startswith(b"data: {") and b'"usage"' in frame:
            usage = json.loads(frame[6:])["usage"]
    return Sample(total, usage["completion_tokens"], first, usage["prompt_tokens"])


# ---------------------------------------------------------------------- report


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(res: Results, args: argparse.Namespace, rss: dict[str, int]) -> None:
    print()
    print(
        f"{'path':<16} {'TTFT ms':>8} {'total ms':>9} {'tok/s':>7} {'decode tok/s':>13}"
        f" {'tokens':>7} {'prompt':>7}"
    )
    for p in PATHS:
        ss = res.samples[p]
        ttft = [s.ttft * 1000 for s in ss if s.ttft is not None]
        dec = [d for s in ss if (d := s.decode_tps) is not None]
        toks = sorted({s.tokens for s in ss})
        prompts = sorted({s.prompt_tokens for s in ss if s.prompt_tokens is not None})
        print(
            f"{p:<16} {med(ttft) if ttft else float('nan'):>8.1f}"
            f" {med([s.total * 1000 for s in ss]):>9.1f} {med([s.tps for s in ss]):>7.1f}"
            f" {med(dec) if dec else float('nan'):>13.1f}"
            f" {'/'.join(map(str, toks)):>7} {'/'.join(map(str, prompts)):>7}"
        )

    raw = res.samples["raw generate"]
    raw_tps = med([s.tps for s in raw])
    raw_ttft = med([s.ttft * 1000 for s in raw if s.ttft is not None])
    print()
    for p in PATHS[1:]:
        ss = res.samples[p]
        ratio = med([s.tps for s in ss]) / raw_tps
        # Per round too (paired), which is what machine drift does not bias.
        paired = med(
            [s.tps / r.tps for s, r in zip(ss, raw, strict=True)]
        )  # same round, same prompt
        line = f"{p:<16} throughput / raw generate: {ratio:.3f} (paired per round {paired:.3f})"
        ttft = [s.ttft * 1000 for s in ss if s.ttft is not None]
        if ttft:
            diff = med([s.ttft - r.ttft for s, r in zip(ss, raw, strict=True) if s.ttft and r.ttft])
            line += f"; TTFT - raw: {med(ttft) - raw_ttft:+.1f} ms (paired {diff * 1000:+.1f} ms)"
        print(line)
    api_ratio = med([s.tps for s in res.samples["API stream"]]) / raw_tps
    api_nonstream = med([s.tps for s in res.samples["API non-stream"]]) / raw_tps
    api_ttft = med([s.ttft * 1000 for s in res.samples["API stream"] if s.ttft]) - raw_ttft
    print(
        f"aims: API throughput / raw >= {AIM_RATIO}: stream {api_ratio:.3f}"
        f" {'ok' if api_ratio >= AIM_RATIO else 'MISSED'}, non-stream {api_nonstream:.3f}"
        f" {'ok' if api_nonstream >= AIM_RATIO else 'MISSED'};"
        f" API TTFT - raw <= {AIM_TTFT_MS:.0f} ms: {api_ttft:+.1f} ms"
        f" {'ok' if api_ttft <= AIM_TTFT_MS else 'MISSED'}"
    )

    print()
    print("where the CPU goes, ms per request (medians over the runs):")
    print(
        f"{'path':<16} {'model threads':>13} {'main thread':>12} {'client':>7} {'wall':>7}"
        f" {'CPU/wall':>9}"
    )
    for p in PATHS:
        ss = res.samples[p]
        model_s, main_s, client_s = (med([s.cpu[i] for s in ss]) for i in range(3))
        wall = med([s.total for s in ss])
        load = med([sum(s.cpu) / s.total for s in ss])
        client = f"{client_s * 1000:>7.1f}" if p.startswith("API") else f"{'-':>7}"
        print(
            f"{p:<16} {model_s * 1000:>13.1f} {main_s * 1000:>12.1f} {client}"
            f" {wall * 1000:>7.1f} {load:>9.2f}"
        )
    print(
        "  (model threads: the llama worker and its OpenMP threads, plus any other non-main"
        " thread; main thread: the server's event loop for API paths, this process's event"
        " loop for the adapter; client: this process's HTTP client)"
    )

    mismatched = {r: c for r, c in res.counts.items() if len(set(c.values())) > 1}
    if mismatched:
        print(f"completion token counts DIFFER between paths in {len(mismatched)} round(s):")
        for r, c in sorted(mismatched.items()):
            print(f"  round {r}: {c}")
    else:
        print(f"completion token counts equal across paths in every round ({len(res.counts)})")

    print()
    loaded, after, hwm = rss["loaded"] / MB, rss["after"] / MB, rss["hwm"] / MB
    print(
        f"server RSS: model loaded {loaded:.1f} MB, after the runs {after:.1f} MB,"
        f" peak (VmHWM) {hwm:.1f} MB; aim <= {AIM_RSS_MB} MB:"
        f" {'ok' if hwm <= AIM_RSS_MB else 'MISSED'}"
    )


# ---------------------------------------------------------------------- main


def bench(args: argparse.Namespace, tmp: Path) -> None:
    from llama_cpp import Llama

    threads = args.threads
    path = smollm2_gguf()
    print(machine())
    print(
        f"llama_cpp_python {version('llama_cpp_python')}, model {path.name}, threads {threads},"
        f" n_ctx {CTX}, max_tokens {args.max_tokens}, runs {args.runs}"
    )

    log = tmp / "server.log"
    proc, url = start(tmp / "data", threads, log)
    try:
        http = httpx.Client(base_url=url, timeout=httpx.Timeout(300.0, connect=5.0))
        r = http.post(f"/v1/projects/{NS}", json={"name": PROJECT, "config_template": "server"})
        r.raise_for_status()
        run_api(http, messages(999), 8)  # warm-up: first request through every layer
        time.sleep(1.0)
        rss = {"loaded": proc_status(proc.pid, "VmRSS")}

        # The raw model and the adapter, loaded the way the server loads them.
        llm = Llama(
            model_path=str(path),
            n_ctx=CTX,
            n_batch=512,
            n_threads=threads,
            n_threads_batch=max(threads, os.cpu_count() or 1),  # as the adapter does
            verbose=False,
        )
        import llama_cpp

        vocab = llm._model.vocab

        def is_eog(tok: int) -> bool:
            return bool(llama_cpp.llama_vocab_is_eog(vocab, tok))

        adapter = LlamaCppChatModel(path, name="default", context_length=CTX, threads=threads)
        loop = asyncio.new_event_loop()

        def prompt_tokens(msgs: list[dict[str, str]]) -> list[int]:
            # The exact tokens the adapter (and so the server) feeds the model.
            return adapter._prompt_tokens([ChatMessage(m["role"], m["content"]) for m in msgs])

        # All in-process llama.cpp work runs on the adapter's own worker thread. libgomp gives
        # every thread that runs a model its own OpenMP team, and once a process has more
        # OpenMP threads than CPUs it throttles their spin-waits: generation then runs at
        # about half speed on every thread, raw or not (135 -> 70 tokens/s here with 2 CPUs).
        def on_worker(fn: Callable[..., Sample], *a: Any) -> Sample:
            return adapter._worker.submit(fn, *a).result()

        hi = prompt_tokens([{"role": "user", "content": "Hi"}])

        def flush_raw() -> None:
            # Same cache state as the server path: an untimed token of another prompt first.
            on_worker(run_raw_generate, llm, is_eog, hi, 1)

        # Warm-up for the in-process paths.
        warm = messages(998)
        on_worker(run_raw_generate, llm, is_eog, prompt_tokens(warm), 8)
        on_worker(run_raw_completion, llm, prompt_tokens(warm), 8)
        loop.run_until_complete(run_adapter(adapter, warm, 8))
        me = os.getpid()

        res = Results()
        n = args.max_tokens
        for rnd in range(args.runs):
            msgs = messages(rnd)
            toks = prompt_tokens(msgs)
            order = PATHS[rnd % len(PATHS) :] + PATHS[: rnd % len(PATHS)]
            counts: dict[str, int] = {}
            for p in order:
                api = p.startswith("API")
                if api:
                    flush(http)
                elif p.startswith("raw"):
                    flush_raw()
                # CPU: the model's process (server or this one) by thread, and this client.
                pid = proc.pid if api else me
                c0, m0, k0 = *thread_cpu(pid), time.thread_time()
                if p == "raw generate":
                    s = on_worker(run_raw_generate, llm, is_eog, toks, n)
                elif p == "raw completion":
                    s = on_worker(run_raw_completion, llm, toks, n)
                elif p == "adapter stream":
                    s = loop.run_until_complete(run_adapter(adapter, msgs, n))
                elif p == "API non-stream":
                    s = run_api(http, msgs, n)
                elif p == "API stream":
                    s = run_api_stream(http, msgs, n)
                else:
                    s = run_api_stream_lite(http, msgs, n)
                c1, m1, k1 = *thread_cpu(pid), time.thread_time()
                s.cpu = (c1 - c0, m1 - m0, k1 - k0 if api else 0.0)
                res.samples[p].append(s)
                counts[p] = s.tokens
            res.counts[rnd] = counts
            print(
                f"round {rnd + 1}/{args.runs}: "
                + ", ".join(
                    f"{p} {res.samples[p][-1].tps:.0f} tok/s"
                    + (f" {t * 1000:.0f} ms" if (t := res.samples[p][-1].ttft) else "")
                    for p in PATHS
                ),
                flush=True,
            )
        rss["after"] = proc_status(proc.pid, "VmRSS")
        rss["hwm"] = proc_status(proc.pid, "VmHWM")
        report(res, args, rss)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        adapter.close()
        llm.close()
        http.close()
    finally:
        stop_server(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pasture-bench-chat-") as tmp:
        try:
            bench(args, Path(tmp))
        except Exception as exc:  # a benchmark reports, it does not fail the caller
            print(f"chat bench failed: {type(exc).__name__}: {exc}")
            log = Path(tmp) / "server.log"
            if log.exists():
                print(log.read_text()[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
