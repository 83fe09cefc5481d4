"""In-memory fakes of ports, for unit tests (and run through the same contract suites)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence

from pasture.domain.chat import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    TextDelta,
    Usage,
)
from pasture.domain.errors import Conflict, Invalid, Upstream
from pasture.ports import ChatModel, Record, Records


class InMemoryRecords(Records):
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Record] = {}
        self._lock = threading.Lock()

    def _live(self, r: Record | None) -> Record | None:
        if r is None or (r.expires_at is not None and r.expires_at <= time.time()):
            return None
        return r

    def get(self, pk: str, sk: str) -> Record | None:
        return self._live(self._items.get((pk, sk)))

    def put(self, record: Record, *, if_absent: bool) -> None:
        with self._lock:
            if if_absent and self._live(self._items.get((record.pk, record.sk))) is not None:
                raise Conflict(f"record {record.pk}/{record.sk} already exists")
            self._items[(record.pk, record.sk)] = Record(
                record.pk, record.sk, dict(record.data), record.expires_at
            )

    def query(self, pk: str, sk_prefix: str, *, limit: int | None) -> list[Record]:
        rows = sorted(
            (r for (p, s), r in list(self._items.items()) if p == pk and s.startswith(sk_prefix)),
            key=lambda r: r.sk,
        )
        live = [r for r in rows if self._live(r)]
        return live if limit is None else live[:limit]

    def delete(self, pk: str, sk: str) -> bool:
        with self._lock:
            return self._items.pop((pk, sk), None) is not None


class FakeChatModel(ChatModel):
    """A deterministic chat model: answers `reply` word by word, one token per word.

    Prompt tokens are words plus 4 per message (a template's overhead), so windowing tests can
    reason about exact numbers. It records every prompt and parameter set it was given and
    how many generations were abandoned before the end.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        context_length: int = 4096,
        reply: str = "Pasture fake answer: grass is green.",
        delay: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.name = name
        self.context_length = context_length
        self.reply = reply
        self.delay = delay
        self.fail_after = fail_after
        self.prompts: list[list[ChatMessage]] = []
        self.params: list[GenerationParams] = []
        self.abandoned = 0

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(4 + len(m.content.split()) for m in messages)

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Completion:
        last: Completion | None = None
        async for item in self.stream(messages, params):
            if isinstance(item, Completion):
                last = item
        assert last is not None
        return last

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[TextDelta | Completion]:
        prompt_tokens = self.count_tokens(messages)
        if prompt_tokens >= self.context_length:
            raise Invalid(f"prompt of {prompt_tokens} tokens exceeds {self.context_length}")
        self.prompts.append(list(messages))
        self.params.append(params)
        words = self.reply.split()
        finish = FinishReason.STOP
        if len(words) > params.max_tokens:
            words, finish = words[: params.max_tokens], FinishReason.LENGTH
        parts: list[str] = []
        done = False
        try:
            for i, w in enumerate(words):
                if self.fail_after is not None and i == self.fail_after:
                    raise Upstream("fake model backend failed")
                if self.delay:
                    await asyncio.sleep(self.delay)
                piece = w if i == 0 else " " + w
                parts.append(piece)
                yield TextDelta(piece)
            done = True
            yield Completion("".join(parts), finish, Usage(prompt_tokens, len(parts)))
        finally:
            if not done:
                self.abandoned += 1
