"""The GPU container's router (infra/inference/router.py), run as its own process against REAL
backends on loopback: a `python -m llama_cpp.server` with the packaged SmolLM2 (standing in for
llama.cpp's llama-server: same OpenAI API) and a whisper.cpp-shaped server transcribing with
the real faster-whisper tiny.en. Embeddings are the router's own (Pasture's OnnxEmbedder on
onnxruntime's CPU provider here; CUDA in the container).

Docker cannot run here (no engine), so the image itself is not built: the Dockerfile gets the
static checks at the end of this module instead.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pasture.domain.speech import SAMPLE_RATE
from tests.helpers.process import free_port
from tests.helpers.sagemaker_fake import (
    ROUTER,
    Router,
    SageMakerStack,
    sagemaker_stack,  # noqa: F401  (the fixture)
)
from tests.helpers.speech import WER_BOUND, Speech, speech_fixture, word_error_rate  # noqa: F401

INFERENCE = ROUTER.parent
REPO = INFERENCE.parents[1]
HELLO = [{"role": "user", "content": "Say hello to my friend Sam in one short sentence."}]
STORY = [
    {"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}
]
TEXTS = [
    "Cats sleep a lot.",
    "The mitochondria is the powerhouse of the cell, producing ATP through respiration.",
    "Hi",
    "Database indexes speed up reads at the cost of slower writes and more storage.",
    " ".join(["retrieval augmented generation with long documents"] * 80),
    "Ünïcødé, 日本語のテキスト, emoji 🙂",
]


@pytest.fixture
def stack(sagemaker_stack: SageMakerStack) -> Iterator[SageMakerStack]:  # noqa: F811
    sagemaker_stack.reset()
    yield sagemaker_stack
    sagemaker_stack.reset()


def invoke(stack: SageMakerStack, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(
        stack.router.url + "/invocations", content=content, headers=headers, timeout=60
    )


def chat(**extra: Any) -> dict[str, Any]:
    return {"task": "chat", "messages": HELLO, "max_tokens": 16, "temperature": 0.0, **extra}


def sse_text(raw: str) -> tuple[str, list[str]]:
    """(joined content, finish reasons) of an OpenAI SSE stream."""
    text, reasons = [], []
    for line in raw.splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        choice = json.loads(line[5:])["choices"][0]
        text.append(choice["delta"].get("content") or "")
        if choice.get("finish_reason"):
            reasons.append(choice["finish_reason"])
    return "".join(text), reasons


def wav(pcm: bytes, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


@pytest.fixture(scope="module")
def speech_wav(speech: Speech) -> bytes:
    from pasture.adapters.local.pyav_audio import decode_audio

    return wav(decode_audio(str(speech["wav"]), max_seconds=60).pcm)


# ---------------------------------------------------------------------- /ping


def test_ping_reports_every_backend(stack: SageMakerStack) -> None:
    r = httpx.get(stack.router.url + "/ping")
    assert r.status_code == 200
    backends = r.json()["backends"]
    assert set(backends) == {"chat", "embeddings", "transcription"}
    assert all(b["ok"] for b in backends.values())
    assert "CPUExecutionProvider" in backends["embeddings"]["detail"]


def test_ping_is_503_while_a_backend_is_down(stack: SageMakerStack) -> None:
    stack.whisper_state.down = True  # whisper.cpp's /health while its model loads
    r = httpx.get(stack.router.url + "/ping")
    assert r.status_code == 503
    assert r.json()["backends"]["transcription"] == {"ok": False, "detail": "HTTP 503"}
    stack.whisper_state.down = False
    assert httpx.get(stack.router.url + "/ping").status_code == 200


@pytest.fixture(scope="module")
def dead_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """A router whose llama.cpp and whisper.cpp servers are not there (nothing listens)."""
    router = Router(
        tmp_path_factory.mktemp("dead-router") / "router.log",
        llama_url=f"http://127.0.0.1:{free_port()}",
        whisper_url=f"http://127.0.0.1:{free_port()}",
        onnx_cache=tmp_path_factory.mktemp("unused"),
        ROUTER_EMBEDDINGS="off",
    ).start(healthy=False)
    yield router
    router.stop()


def test_backends_down_ping_and_invocations_answer_503(dead_router: Router) -> None:
    ping = httpx.get(dead_router.url + "/ping")
    assert ping.status_code == 503
    backends = ping.json()["backends"]
    assert set(backends) == {"chat", "transcription"}  # embeddings switched off: not waited for
    assert not backends["chat"]["ok"] and "unreachable" in backends["chat"]["detail"]
    r = httpx.post(dead_router.url + "/invocations", json=chat())
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "the chat backend (llama.cpp server) cannot be reached"
    r = httpx.post(
        dead_router.url + "/invocations",
        content=wav(b"\0\0" * SAMPLE_RATE),
        headers={"Content-Type": "audio/wav"},
    )
    assert r.status_code == 503 and "whisper.cpp" in r.json()["error"]["message"]
    r = httpx.post(dead_router.url + "/invocations", json={"task": "embed", "texts": ["x"]})
    assert r.status_code == 501 and r.json()["error"]["type"] == "not_served"


# ---------------------------------------------------------------------- chat


def test_chat_complete_is_the_servers_answer(stack: SageMakerStack) -> None:
    r = invoke(stack, chat())
    assert r.status_code == 200, r.text
    direct = httpx.post(
        stack.llama_url + "/v1/chat/completions",
        json={k: v for k, v in chat().items() if k != "task"},
        timeout=60,
    ).json()
    body = r.json()
    assert body["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    assert body["usage"] == direct["usage"]


def test_chat_stream_is_passed_through_as_it_arrives(stack: SageMakerStack) -> None:
    whole = invoke(stack, chat(max_tokens=24)).json()["choices"][0]
    arrivals: list[float] = []
    raw = bytearray()
    start = time.perf_counter()
    body = json.dumps(chat(max_tokens=24, stream=True))
    with httpx.stream(
        "POST",
        stack.router.url + "/invocations",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            arrivals.append(time.perf_counter() - start)
            raw += chunk
    text, reasons = sse_text(raw.decode())
    assert text == whole["message"]["content"]
    assert reasons == [whole["finish_reason"]]
    assert raw.decode().rstrip().endswith("data: [DONE]")
    # Relayed piece by piece, not collected: the first bytes came well before the last.
    assert len(arrivals) > 3 and arrivals[0] < arrivals[-1] / 2, arrivals


def test_closing_a_stream_stops_the_generation(stack: SageMakerStack) -> None:
    start = time.perf_counter()
    lone_answer = invoke(stack, chat()).json()
    lone = time.perf_counter() - start
    body = json.dumps({**chat(max_tokens=400, stream=True), "messages": STORY})
    with httpx.stream(
        "POST",
        stack.router.url + "/invocations",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    ) as r:
        next(r.iter_raw())  # generation is under way
    start = time.perf_counter()
    after = invoke(stack, chat()).json()
    elapsed = time.perf_counter() - start
    assert after["choices"][0]["message"] == lone_answer["choices"][0]["message"]
    # The server runs one generation at a time: had the 400-token story gone on, this call
    # would have waited ~25 lone calls.
    assert elapsed < 8 * lone, (lone, elapsed)


def test_prompt_past_the_context_is_a_400_with_the_servers_reason(stack: SageMakerStack) -> None:
    r = invoke(stack, chat(messages=[{"role": "user", "content": "word " * 3000}]))
    assert r.status_code == 400
    assert "context" in r.json()["error"]["message"]


# ---------------------------------------------------------------------- embeddings


def decode_vectors(body: dict[str, Any]) -> np.ndarray:
    assert body["dtype"] == "float32" and body["model"] == "all-MiniLM-L6-v2"
    raw = base64.b64decode(body["data"])
    return np.frombuffer(raw, dtype="<f4").reshape(body["shape"])


def test_embeddings_equal_the_local_embedder(
    stack: SageMakerStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    r = invoke(stack, {"task": "embed", "texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dimension"] == 384 and body["shape"] == [len(TEXTS), 384]
    got = decode_vectors(body)
    local = OnnxEmbedder(minilm_dir(), tmp_path_factory.mktemp("onnx"), batch_size=4).embed(TEXTS)
    np.testing.assert_allclose(got, local, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    empty = decode_vectors(invoke(stack, {"task": "embed", "texts": []}).json())
    assert empty.shape == (0, 384)


# ---------------------------------------------------------------------- transcription


def test_transcription(stack: SageMakerStack, speech_wav: bytes, speech: Speech) -> None:
    r = invoke(stack, speech_wav, **{"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert word_error_rate(speech.text, body["text"]) <= WER_BOUND, body["text"]
    assert body["language"] == "english"  # whisper.cpp's verbose_json names it
    assert body["duration"] == pytest.approx((len(speech_wav) - 44) / 32000, abs=0.01)
    assert body["segments"] and body["text"].startswith(body["segments"][0]["text"])
    # No language given: whisper.cpp is told to detect it.
    assert stack.whisper_state.requests[-1]["language"] == "auto"
    assert stack.whisper_state.requests[-1]["response_format"] == "verbose_json"


def test_transcription_options_travel_in_custom_attributes(
    stack: SageMakerStack, speech_wav: bytes
) -> None:
    from pasture.adapters.aws.sagemaker_runtime import encode_attributes

    prompt = "Bicycle; school=day, café 🙂"
    header = encode_attributes({"language": "en", "prompt": prompt})
    assert header.isascii() and ";" not in header.split(";", 1)[1].replace(";prompt", "")
    r = invoke(
        stack,
        speech_wav,
        **{"Content-Type": "audio/wav", "X-Amzn-SageMaker-Custom-Attributes": header},
    )
    assert r.status_code == 200, r.text
    seen = stack.whisper_state.requests[-1]
    assert seen["language"] == "en" and seen["prompt"] == prompt


# ---------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason"),
    [
        (b"{}", None, 415, "unsupported Content-Type"),
        (b"hello", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"messages": []}', "application/json", 400, "unknown task None"),
        (b'{"task": "translate"}', "application/json", 400, "unknown task 'translate'"),
        (b'{"task": "chat", "messages": []}', "application/json", 400, "non-empty list"),
        (b'{"task": "embed", "texts": "one"}', "application/json", 400, "list of strings"),
        (b'{"task": "embed", "texts": [1]}', "application/json", 400, "list of strings"),
        (b"ID3\x03 not a wav at all", "audio/wav", 400, "not a WAV file"),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    stack: SageMakerStack, content: bytes, content_type: str | None, status: int, reason: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = httpx.post(stack.router.url + "/invocations", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert reason in r.json()["error"]["message"]


def test_too_many_texts_is_413(stack: SageMakerStack) -> None:
    r = invoke(stack, {"task": "embed", "texts": ["x"] * 4097})
    assert r.status_code == 413 and "at most 4096 texts" in r.json()["error"]["message"]


def test_audio_whisper_cannot_read_is_400(stack: SageMakerStack) -> None:
    # A WAV, but 8 kHz stereo: whisper.cpp answers {"error": "failed to read WAV file"}.
    r = invoke(
        stack, wav(b"\0\0\0\0" * 8000, rate=8000, channels=2), **{"Content-Type": "audio/wav"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "whisper.cpp: failed to read WAV file",
        "type": "invalid_audio",
    }


def test_whisper_failure_is_502(stack: SageMakerStack) -> None:
    stack.whisper_state.fail_status = 500
    r = invoke(stack, wav(b"\0\0" * SAMPLE_RATE), **{"Content-Type": "audio/wav"})
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "backend_error"


# ---------------------------------------------------------------------- the image, statically


def dockerfile_lines() -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = (INFERENCE / "Dockerfile").read_text()
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    return lines


def test_dockerfile_copy_sources_exist_and_versions_are_pinned() -> None:
    lines = dockerfile_lines()
    stages = {m.group(1) for line in lines if (m := re.match(r"FROM \S+ AS (\S+)", line))}
    for line in lines:
        if line.startswith("COPY "):
            parts = line.split()[1:]
            from_stage = next((p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None)
            sources = [p for p in parts if not p.startswith("--")][:-1]
            assert sources, line
            if from_stage is not None:
                assert from_stage in stages, line
                continue
            for src in sources:  # relative to the build context: the repository root
                assert (REPO / src).exists(), f"COPY source {src} does not exist"
        if line.startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line
    args: dict[str, str] = {}
    for line in lines:
        if m := re.match(r"ARG (\w+)=\"?([^\"]*)\"?$", line):
            args[m.group(1)] = m.group(2)
    assert re.fullmatch(r"b\d+", args["LLAMA_CPP_TAG"])
    assert re.fullmatch(r"v\d+\.\d+\.\d+", args["WHISPER_CPP_TAG"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["CUDA_VERSION"])
    text = " ".join(lines)
    assert text.count("-DGGML_CUDA=ON") == 1 and "${CMAKE_COMMON}" in text  # both builds
    assert '--branch "${LLAMA_CPP_TAG}"' in text and '--branch "${WHISPER_CPP_TAG}"' in text
    assert "--target llama-server" in text and "--target whisper-server" in text
    assert lines[-1].startswith("ENTRYPOINT") and "/opt/router/entrypoint.sh" in lines[-1]


def test_router_requirements_are_pinned_and_complete() -> None:
    reqs = {}
    for line in (INFERENCE / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"\d+(\.\d+)+", version), line
            reqs[name.lower()] = version
    imported = set()
    for node in ast.walk(ast.parse(ROUTER.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(__import__("sys").stdlib_module_names) - {"pasture"}
    wheel = {"onnxruntime": "onnxruntime-gpu"}
    for module in third_party | {"onnxruntime", "tokenizers", "numpy", "onnx"}:
        assert wheel.get(module, module) in reqs, f"{module} is not pinned"
    # The versions the tests run with (the GPU wheel matches the CPU one used here).
    from importlib.metadata import version as installed_version

    for name, pinned in reqs.items():
        installed = installed_version("onnxruntime" if name == "onnxruntime-gpu" else name)
        assert installed == pinned, (name, installed, pinned)


def test_entrypoint_is_valid_posix_shell() -> None:
    script = INFERENCE / "entrypoint.sh"
    assert script.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell is not None
    subprocess.run([shell, "-n", str(script)], check=True)
    text = script.read_text()
    assert "exec python /opt/router/router.py" in text
    assert "/opt/ml/model" in text


def test_readme_documents_the_protocol() -> None:
    readme = (INFERENCE / "README.md").read_text()
    for needle in ('"task": "chat"', '"task": "embed"', "audio/wav", "CustomAttributes", "/ping"):
        assert needle in readme, needle
    assert Path(ROUTER).is_file()
