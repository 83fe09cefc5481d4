"""The SageMaker adapters beyond their port contracts, through the whole stack: real boto3 ->
the FAKE sagemaker-runtime (tests/helpers/sagemaker_fake.py: AWS's event-stream framing and
error shapes; no network to AWS here) -> the real router -> real llama_cpp.server, MiniLM and
faster-whisper. Stream reassembly, early close, error translation, batching, long audio and
never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import numpy as np
import pytest

from pasture.adapters.aws.sagemaker_chat import SageMakerChatModel
from pasture.adapters.aws.sagemaker_embedder import SageMakerEmbedder
from pasture.adapters.aws.sagemaker_runtime import (
    MAX_ATTRIBUTES,
    LineAssembler,
    decode_attributes,
)
from pasture.adapters.aws.sagemaker_transcriber import SageMakerTranscriber, _attributes
from pasture.domain.chat import ChatMessage, Completion, GenerationParams, TextDelta
from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.speech import SAMPLE_RATE, AudioClip
from tests.helpers.process import free_port
from tests.helpers.sagemaker_fake import (
    ENDPOINT,
    FakeSageMakerState,
    Router,
    SageMakerStack,
    ThreadServer,
    fake_sagemaker_app,
    part_sizes,
    sagemaker_client,
    sagemaker_stack,  # noqa: F401  (the fixture)
)
from tests.helpers.speech import WER_BOUND, Speech, speech_fixture, word_error_rate  # noqa: F401

HELLO = [ChatMessage("user", "Say hello to my friend Sam in one short sentence.")]
STORY = [ChatMessage("user", "Write a very long story about a dragon who learns to bake bread.")]
GREEDY = GenerationParams(max_tokens=24, temperature=0.0)


@pytest.fixture
def stack(sagemaker_stack: SageMakerStack) -> Iterator[SageMakerStack]:  # noqa: F811
    sagemaker_stack.reset()
    yield sagemaker_stack
    sagemaker_stack.reset()


def chat_model(stack: SageMakerStack, **client: Any) -> SageMakerChatModel:
    return SageMakerChatModel(
        stack.client(**client), stack.endpoint, name="smollm2", context_length=2048
    )


async def collect(model: SageMakerChatModel, messages: list[ChatMessage]) -> tuple[str, Completion]:
    items = [item async for item in model.stream(messages, GREEDY)]
    assert isinstance(items[-1], Completion)
    deltas = "".join(d.text for d in items[:-1] if isinstance(d, TextDelta))
    return deltas, items[-1]


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# ---------------------------------------------------------------------- reassembly


def test_lines_reassemble_across_every_split() -> None:
    """Every way of cutting a stream into three pieces (inside CRLF, inside multi-byte UTF-8
    characters, inside JSON) gives the same lines; U+2028 inside JSON ends no line."""
    data = 'data: {"t": "é🙂\u2028日本"}\r\n\r\n: ping\ndata: [DONE]\n\ntail'.encode()
    want = ['data: {"t": "é🙂\u2028日本"}', "", ": ping", "data: [DONE]", "", "tail"]
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            lines = LineAssembler()
            got = [*lines.feed(data[:i]), *lines.feed(data[i:j]), *lines.feed(data[j:])]
            assert [*got, *lines.close()] == want, (i, j)


@pytest.mark.parametrize(
    "sizes",
    [[1], [2, 3, 5, 7, 11, 13], [random.Random(7).randint(1, 40) for _ in range(97)]],
    ids=["bytewise", "primes", "random"],
)
def test_stream_reassembles_across_payload_parts(stack: SageMakerStack, sizes: list[int]) -> None:
    model = chat_model(stack)
    want = asyncio.run(model.complete(HELLO, GREEDY))
    stack.state.part_sizes = part_sizes(sizes)
    text, done = asyncio.run(collect(model, HELLO))
    assert text == done.text == want.text
    assert done.finish_reason == want.finish_reason
    # Really cut small: far more events than the server's chunks (one per token).
    assert stack.state.parts_sent > 2 * done.usage.completion_tokens


def test_stream_and_complete_requests(stack: SageMakerStack) -> None:
    model = chat_model(stack)
    done = asyncio.run(model.complete(HELLO, GREEDY))
    asyncio.run(collect(model, HELLO))
    complete, stream = stack.state.requests
    assert complete["operation"] == "InvokeEndpoint"
    assert stream["operation"] == "InvokeEndpointWithResponseStream"
    assert all(r["signed"] and r["content_type"] == "application/json" for r in (complete, stream))
    # The server's real usage (llama_cpp.server reports it for whole answers).
    import httpx

    direct = httpx.post(
        stack.llama_url + "/v1/chat/completions",
        json={"messages": [m.as_dict() for m in HELLO], "max_tokens": 24, "temperature": 0.0},
        timeout=60,
    ).json()["usage"]
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (
        direct["prompt_tokens"],
        direct["completion_tokens"],
    )


# ---------------------------------------------------------------------- early close


def test_early_close_drops_the_connection_at_every_hop(stack: SageMakerStack) -> None:
    model = chat_model(stack)

    async def scenario() -> Completion:
        gen = model.stream(STORY, GenerationParams(max_tokens=400, temperature=0.0))
        assert isinstance(gen, AsyncGenerator)
        first = await anext(gen)
        assert isinstance(first, TextDelta)
        await gen.aclose()
        return await model.complete(HELLO, GREEDY)

    after = asyncio.run(scenario())
    assert after.text
    wait_for(lambda: stack.state.streams_abandoned == 1)
    assert stack.state.streams_finished == 0


def test_cancelled_while_opening_still_closes_the_stream(stack: SageMakerStack) -> None:
    model = chat_model(stack)
    stack.state.delay = 0.5  # the fake waits before reaching the router

    async def scenario() -> None:
        async def first() -> TextDelta | Completion:
            return await anext(model.stream(STORY, GenerationParams(max_tokens=400)))

        task = asyncio.create_task(first())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    # The stream that arrived after the cancellation was shut, not left generating.
    wait_for(lambda: stack.state.streams_abandoned == 1)


# ---------------------------------------------------------------------- the event loop


def test_calls_never_block_the_event_loop(stack: SageMakerStack) -> None:
    model = chat_model(stack)
    stack.state.delay = 0.4  # every request waits in the fake before going on

    async def scenario() -> float:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        await model.complete(HELLO, GREEDY)
        await collect(model, HELLO)
        stop.set()
        await beat
        return max(gaps)

    assert asyncio.run(scenario()) < 0.15


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "ThrottlingException", Unavailable),
        (503, "ServiceUnavailable", Unavailable),
        (429, "ModelNotReadyException", Unavailable),
        (500, "InternalFailure", Upstream),
        (530, "InternalDependencyException", Upstream),
    ],
)
def test_service_errors(stack: SageMakerStack, status: int, code: str, error: type) -> None:
    stack.state.fail = (status, code, "synthetic failure for endpoint x of account 123456789012")
    model = chat_model(stack)
    with pytest.raises(error) as e:
        asyncio.run(model.complete(HELLO, GREEDY))
    assert "123456789012" not in str(e.value)
    with pytest.raises(error):
        asyncio.run(collect(model, HELLO))
    embedder = SageMakerEmbedder(stack.client(), stack.endpoint)
    with pytest.raises(error):
        embedder.embed(["x"])


def test_throttling_is_retried_by_botocore(stack: SageMakerStack) -> None:
    stack.state.fail = (400, "ThrottlingException", "Rate exceeded")
    stack.state.fail_count = 1
    done = asyncio.run(chat_model(stack, attempts=3).complete(HELLO, GREEDY))
    assert done.text and len(stack.state.requests) == 2


def test_validation_error_names_no_endpoint_or_account(stack: SageMakerStack) -> None:
    model = SageMakerChatModel(stack.client(), "no-such-endpoint", name="x", context_length=2048)
    with pytest.raises(Upstream, match="ValidationError") as e:
        asyncio.run(model.complete(HELLO, GREEDY))
    assert "no-such-endpoint" not in e.value.message and "123456789012" not in e.value.message


def test_unreachable_sagemaker_is_unavailable(stack: SageMakerStack) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(Unavailable, match="cannot reach"):
        asyncio.run(
            SageMakerChatModel(client, "e", name="x", context_length=2048).complete(HELLO, GREEDY)
        )
    with pytest.raises(Unavailable):
        SageMakerEmbedder(client, "e").embed(["x"])
    with pytest.raises(Unavailable):
        SageMakerTranscriber(client, "e").transcribe(
            AudioClip(b"\0\0" * SAMPLE_RATE, "wav"), language=None, prompt=None
        )


def test_slow_endpoint_is_upstream(stack: SageMakerStack) -> None:
    stack.state.delay = 2.0
    with pytest.raises(Upstream, match="did not answer in time"):
        asyncio.run(chat_model(stack, read_timeout=0.5).complete(HELLO, GREEDY))


@pytest.mark.parametrize("failure", ["ModelStreamError", "InternalStreamFailure"])
def test_stream_failing_midway_is_upstream(stack: SageMakerStack, failure: str) -> None:
    stack.state.break_after = 2000  # a few chunks in (~250 bytes each)
    stack.state.stream_failure = failure
    seen: list[TextDelta | Completion] = []

    async def run() -> None:
        async for item in chat_model(stack).stream(STORY, GREEDY):
            seen.append(item)

    with pytest.raises(Upstream, match=failure):
        asyncio.run(run())
    assert seen and all(isinstance(i, TextDelta) for i in seen)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two more fakes: one before a router whose backends are down (it answers 503), one
    before no container at all (SageMaker reports status 0)."""
    router = Router(
        tmp_path_factory.mktemp("broken-router") / "router.log",
        llama_url=f"http://127.0.0.1:{free_port()}",
        whisper_url=f"http://127.0.0.1:{free_port()}",
        onnx_cache=tmp_path_factory.mktemp("unused"),
        ROUTER_EMBEDDINGS="off",
    ).start(healthy=False)
    down = ThreadServer(fake_sagemaker_app(router.url, FakeSageMakerState())).start()
    gone = ThreadServer(
        fake_sagemaker_app(f"http://127.0.0.1:{free_port()}", FakeSageMakerState())
    ).start()
    yield down.url, gone.url
    gone.stop()
    down.stop()
    router.stop()


def test_container_errors_without_a_backend(broken: tuple[str, str], clip: AudioClip) -> None:
    down, gone = broken
    # The router's 503 (llama.cpp / whisper.cpp unreachable) -> Unavailable.
    model = SageMakerChatModel(sagemaker_client(down), ENDPOINT, name="x", context_length=2048)
    with pytest.raises(Unavailable, match="cannot be reached"):
        asyncio.run(model.complete(HELLO, GREEDY))
    with pytest.raises(Unavailable, match="cannot be reached"):
        asyncio.run(collect(model, HELLO))
    with pytest.raises(Unavailable, match="cannot be reached"):
        SageMakerTranscriber(sagemaker_client(down), ENDPOINT).transcribe(
            clip, language=None, prompt=None
        )
    # Embeddings switched off in that container: 501 -> Upstream.
    with pytest.raises(Upstream, match="HTTP 501"):
        SageMakerEmbedder(sagemaker_client(down), ENDPOINT).embed(["x"])
    # No container answering at all: SageMaker's ModelError with status 0 -> Upstream.
    model = SageMakerChatModel(sagemaker_client(gone), ENDPOINT, name="x", context_length=2048)
    with pytest.raises(Upstream, match="HTTP 0"):
        asyncio.run(model.complete(HELLO, GREEDY))


def test_model_error_statuses_map_per_adapter(stack: SageMakerStack, clip: AudioClip) -> None:
    # Whisper failing: the router answers 502 -> ModelError(502) -> Upstream.
    stack.whisper_state.fail_status = 500
    with pytest.raises(Upstream, match="HTTP 502"):
        SageMakerTranscriber(stack.client(), stack.endpoint).transcribe(
            clip, language=None, prompt=None
        )
    # A prompt past the context: the server's 400 -> ModelError(400) -> Invalid, both ways.
    huge = [ChatMessage("user", "word " * 3000)]
    model = chat_model(stack)
    with pytest.raises(Invalid, match="context"):
        asyncio.run(model.complete(huge, GREEDY))
    with pytest.raises(Invalid, match="context"):
        asyncio.run(collect(model, huge))


# ---------------------------------------------------------------------- embeddings


def test_embedder_batches_and_matches_the_local_embedder(
    stack: SageMakerStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder

    texts = [f"sentence number {i} about {'cats' if i % 2 else 'databases'}" for i in range(21)]
    embedder = SageMakerEmbedder(stack.client(), stack.endpoint, batch_size=8)
    got = embedder.embed(texts)
    assert [r["operation"] for r in stack.state.requests] == ["InvokeEndpoint"] * 3
    local = OnnxEmbedder(minilm_dir(), tmp_path_factory.mktemp("onnx"), batch_size=32)
    np.testing.assert_allclose(got, local.embed(texts), rtol=0, atol=1e-5)
    # A byte budget splits too, and a text bigger than the budget goes alone.
    stack.reset()
    small = SageMakerEmbedder(stack.client(), stack.endpoint, max_request_bytes=200)
    out = small.embed(["a" * 500, "b" * 120, "c" * 120, "d"])
    assert out.shape == (4, 384)
    assert len(stack.state.requests) == 3
    assert SageMakerEmbedder(stack.client(), stack.endpoint).embed([]).shape == (0, 384)


# ---------------------------------------------------------------------- transcription


@pytest.fixture(scope="module")
def clip(speech: Speech) -> AudioClip:
    from pasture.adapters.local.pyav_audio import decode_audio

    return decode_audio(str(speech["wav"]), max_seconds=60)


def test_long_audio_is_sent_in_pieces_cut_at_a_pause(
    stack: SageMakerStack, clip: AudioClip, speech: Speech
) -> None:
    limit = 44 + 2 * int(2.5 * SAMPLE_RATE)  # 2.5 s per request: the ~5 s clip takes two+
    t = SageMakerTranscriber(stack.client(), stack.endpoint, max_request_bytes=limit)
    result = t.transcribe(clip, language=None, prompt="Bicycle.")
    requests = stack.state.requests
    assert len(requests) >= 2 and all(r["size"] <= limit for r in requests)
    assert word_error_rate(speech.text, result.text) <= WER_BOUND, result.text
    assert result.language == "en" and result.duration == pytest.approx(clip.seconds)
    ends = [s.end for s in result.segments]
    assert ends == sorted(ends) and ends[-1] <= clip.seconds + 0.5
    first, second = (decode_attributes(r["attributes"]) for r in requests[:2])
    assert first == {"prompt": "Bicycle."}
    # Later pieces: the language found first and the text so far as the prompt.
    assert second["language"] == "en" and second["prompt"] and second["prompt"] in result.text


def test_custom_attributes_fit_1024_characters() -> None:
    header = _attributes("en", "é" * 2000 + " the end")
    assert header is not None and len(header) <= MAX_ATTRIBUTES and header.isascii()
    assert decode_attributes(header)["prompt"].endswith(" the end")  # the end is what counts
    assert _attributes(None, None) is None
    assert decode_attributes(_attributes("fr", "a;b=c")) == {"language": "fr", "prompt": "a;b=c"}


def test_empty_clip_needs_no_request(stack: SageMakerStack) -> None:
    t = SageMakerTranscriber(stack.client(), stack.endpoint)
    assert t.transcribe(AudioClip(b"", "wav"), language="en", prompt=None).text == ""
    assert stack.state.requests == []


# ---------------------------------------------------------------------- imports


def test_adapters_import_no_http_or_web_framework() -> None:
    code = (
        "import sys\n"
        "import pasture.adapters.aws.sagemaker_chat, pasture.adapters.aws.sagemaker_embedder\n"
        "import pasture.adapters.aws.sagemaker_transcriber\n"
        "heavy = {'httpx', 'fastapi', 'starlette', 'onnxruntime', 'tokenizers', 'boto3'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []
