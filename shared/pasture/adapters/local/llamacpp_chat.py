"""LlamaCppChatModel: a GGUF model run in process by llama.cpp (llama-cpp-python).

One llama.cpp context is not thread-safe, so each model owns one worker thread: requests
queue in arrival order and generate one at a time, off the event loop. Tokens travel to the
caller's event loop one by one; closing the stream sets a flag the worker checks between
tokens, so a client that goes away stops the generation within one token.

We drive `Llama.generate` token by token instead of `create_chat_completion`, because only
then are the usage counts exact (every sampled token is counted) and cancellation immediate.
The prompt is rendered with the model's own chat template from the GGUF metadata.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import random
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pasture.domain.chat import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    TextDelta,
    Usage,
)
from pasture.domain.errors import Invalid, Unavailable
from pasture.ports import ChatModel

# Sampling defaults when a request leaves them out: SmolLM2's authors suggest a low
# temperature; a mild repeat penalty keeps very small models out of loops.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.9
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05
REPEAT_PENALTY = 1.1

# Used only for GGUF files without a chat template of their own.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_Emit = Callable[[TextDelta | Completion | BaseException], None]


class LlamaCppChatModel(ChatModel):
    def __init__(
        self,
        model_path: Path,
        *,
        name: str,
        context_length: int = 4096,
        threads: int | None = None,
        batch_size: int = 512,
    ) -> None:
        if not Path(model_path).is_file():
            raise Unavailable(f"chat model file {model_path} does not exist")
        # Imported here: the native library is heavy and only this adapter needs it.
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.name = name
        self.path = Path(model_path)
        # Decoding on half the cores, like llama.cpp's own server: its threads spin-wait for
        # each other, so when anything else (the event loop, the embedder) wants a core, all
        # of them stall. The short prompt evaluation uses every core (time to first token).
        threads = threads or default_threads()
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=context_length,
                n_batch=min(batch_size, context_length),
                n_threads=threads,
                n_threads_batch=max(threads, os.cpu_count() or 1),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise Unavailable(f"could not load chat model {model_path}: {exc}") from None
        self.context_length = int(self._llm.n_ctx())
        llm = self._llm
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )
        self._is_eog: Callable[[int], bool] = self._eog_check()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")

    def _eog_check(self) -> Callable[[int], bool]:
        import llama_cpp

        vocab = self._llm._model.vocab
        return lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    # ------------------------------------------------------------------ prompt

    def _prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        try:
            msgs: list[Any] = [m.as_dict() for m in messages]
            rendered = self._formatter(messages=msgs)
        except Exception as exc:  # the template's own raise_exception, e.g. bad role order
            raise Invalid(f"the model's chat template rejected the messages: {exc}") from None
        # The template writes the special tokens itself (BOS included where the model has one).
        return self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_tokens(messages))

    # ------------------------------------------------------------------ generation

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Completion:
        stream = self.stream(messages, params)
        try:
            async for item in stream:
                if isinstance(item, Completion):
                    return item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        raise AssertionError("stream ended without a Completion")  # pragma: no cover

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[TextDelta | Completion]:
        tokens = self._prompt_tokens(messages)
        if len(tokens) >= self.context_length:
            raise Invalid(
                f"the prompt takes {len(tokens)} tokens but model {self.name!r} holds"
                f" {self.context_length}; shorten the messages"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TextDelta | Completion | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: TextDelta | Completion | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the caller's event loop is gone: nobody is listening
                cancelled.set()

        loop.run_in_executor(self._worker, self._generate, tokens, params, cancelled, emit)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Completion):
                    return
        finally:
            # Reached on completion, on error, and when the consumer closes us early or is
            # cancelled (client disconnect): the worker stops at its next token.
            cancelled.set()

    def _generate(
        self,
        prompt: list[int],
        params: GenerationParams,
        cancelled: threading.Event,
        emit: _Emit,
    ) -> None:
        """Runs on the model's worker thread: one generation at a time."""
        if cancelled.is_set():  # the caller left while this request waited in the queue
            return
        try:
            self._run(prompt, params, cancelled, emit)
        except Exception as exc:  # hand every failure to the caller's loop
            emit(Unavailable(f"llama.cpp generation failed: {exc}"))

    def _run(
        self,
        prompt: list[int],
        params: GenerationParams,
        cancelled: threading.Event,
        emit: _Emit,
    ) -> None:
        llm = self._llm
        llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        budget = min(params.max_tokens, self.context_length - len(prompt))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopMatcher(params.stop)
        parts: list[str] = []
        generated = 0
        finish = FinishReason.LENGTH
        temp = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
        gen = llm.generate(
            prompt,
            top_k=DEFAULT_TOP_K if params.top_k is None else params.top_k,
            top_p=DEFAULT_TOP_P if params.top_p is None else params.top_p,
            min_p=DEFAULT_MIN_P,
            temp=temp,
            repeat_penalty=REPEAT_PENALTY,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
        )
        try:
            for token in gen:
                if cancelled.is_set():
                    return
                if self._is_eog(token):
                    finish = FinishReason.STOP
                    break
                generated += 1
                text, hit = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    parts.append(text)
                    emit(TextDelta(text))
                if hit:
                    finish = FinishReason.STOP
                    break
                if generated >= budget:
                    break
        finally:
            gen.close()
        tail, _ = stops.feed(decoder.decode(b"", final=True))
        tail += stops.flush()
        if tail:
            parts.append(tail)
            emit(TextDelta(tail))
        emit(Completion("".join(parts), finish, Usage(len(prompt), generated)))

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._llm.close()


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


class _StopMatcher:
    """Finds stop strings across token boundaries: text that could be the start of a stop
    string is held back until the next token tells whether it is one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """What can be released now, and whether a stop string was hit."""
        if not self._stops:
            return text, False
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            out, self._pending = self._pending[: min(hits)], ""
            return out, True
        hold = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(self._pending)), hold, -1):
                if self._pending.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
