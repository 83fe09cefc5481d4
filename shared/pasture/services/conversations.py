"""LlamaChat conversations: a consumer's private chats with the default model.

A conversation is one item; each turn (the user's message and the model's reply) is one more
item, written with a conditional put on its sequence number, so two messages sent at once to
the same conversation never overwrite or interleave each other, and a turn is stored whole or
not at all (a failed model call stores nothing: the client can simply send again).

Record layout (services/keys.py): `T#<t>#LCCONV / <id>` and `T#<t>#LCTURN#<id> / <seq>`.
Ids look like LlamaChat's MongoDB ObjectIds: 24 hex, time-ordered.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from pasture.domain.chat import ChatMessage, GenerationParams
from pasture.domain.errors import Conflict, Invalid, NotFound, Unavailable, Upstream
from pasture.ports import ChatModel, Record, Records
from pasture.services import keys
from pasture.services.chat import fit_window

NEW_TITLE = "New Conversation"
TITLE_CHARS = 50
DEFAULT_SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
_ID = re.compile(r"^[0-9a-f]{24}$")
_SEQ_DIGITS = 8
_PUT_ATTEMPTS = 20


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str
    created_at: float


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    turns: int


def new_id() -> str:
    """24 hex like a MongoDB ObjectId: 4 bytes of seconds, then 8 random bytes."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(8).hex()}"


def title_from(content: str) -> str:
    """A short title from a first message: its first line, whitespace collapsed, cut at a word
    boundary to at most TITLE_CHARS characters (with an ellipsis when cut)."""
    line = next((ln for ln in content.splitlines() if ln.strip()), content)
    text = " ".join(line.split())
    if len(text) <= TITLE_CHARS:
        return text or NEW_TITLE
    cut = text[: TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


class ConversationService:
    def __init__(
        self,
        records: Records,
        model: Callable[[], ChatModel],
        *,
        max_content: int,
        max_tokens: int,
        system_prompt: str = DEFAULT_SYSTEM,
    ) -> None:
        self._records = records
        self._model = model
        self.max_content = max_content
        self._max_tokens = max_tokens
        self._system = system_prompt

    # ------------------------------------------------------------------ conversations

    def create(self, tenant: str) -> Conversation:
        now = time.time()
        conv = Conversation(new_id(), NEW_TITLE, now, now, 0)
        self._records.put(self._record(tenant, conv), if_absent=True)
        return conv

    def get(self, tenant: str, conv_id: str) -> Conversation:
        rec = (
            self._records.get(keys.llamachat_conversations(tenant), conv_id)
            if _ID.match(conv_id)
            else None
        )
        if rec is None:
            raise NotFound("Conversation not found.")
        return _conversation(rec)

    def recent(self, tenant: str) -> list[Conversation]:
        """Newest first."""
        rows = self._records.query(keys.llamachat_conversations(tenant), "", limit=None)
        return sorted(map(_conversation, rows), key=lambda c: (c.created_at, c.id), reverse=True)

    def delete(self, tenant: str, conv_id: str) -> None:
        self.get(tenant, conv_id)
        # The conversation goes first, so a half-finished delete leaves no visible
        # conversation, only turns that a repeated delete would also remove.
        self._records.delete(keys.llamachat_conversations(tenant), conv_id)
        pk = keys.llamachat_turns(tenant, conv_id)
        for r in self._records.query(pk, "", limit=None):
            self._records.delete(pk, r.sk)

    def messages(self, tenant: str, conv_id: str) -> list[Message]:
        return self.with_messages(tenant, conv_id)[1]

    def with_messages(self, tenant: str, conv_id: str) -> tuple[Conversation, list[Message]]:
        conv = self.get(tenant, conv_id)
        return conv, _messages(self._turns(tenant, conv_id))

    def _turns(self, tenant: str, conv_id: str) -> list[Record]:
        return self._records.query(keys.llamachat_turns(tenant, conv_id), "", limit=None)

    # ------------------------------------------------------------------ a turn

    def check_content(self, content: str) -> str:
        if not content.strip():
            raise Invalid("`content` must not be empty.")
        if len(content) > self.max_content:
            raise Invalid(
                f"`content` must be at most {self.max_content} characters (got {len(content)})."
            )
        return content

    async def send(self, tenant: str, conv_id: str, content: str) -> Message:
        """Answer `content` with the whole conversation so far as context; store the turn."""
        self.check_content(content)
        conv = self.get(tenant, conv_id)
        asked_at = time.time()
        turns = self._turns(tenant, conv_id)
        history = [ChatMessage(m.role, m.content) for m in _messages(turns)]
        try:
            model = self._model()
            head = [ChatMessage("system", self._system)] if self._system else []
            question = ChatMessage("user", content)

            def build(hist: list[ChatMessage], _: list[object]) -> list[ChatMessage]:
                return [*head, *hist, question]

            prompt, _, room = fit_window(model, build, history, [], self._max_tokens)
            done = await model.complete(
                prompt, GenerationParams(max_tokens=min(room, self._max_tokens))
            )
        except (Upstream, Unavailable) as exc:
            raise Upstream(f"The language model backend failed: {exc.message}") from exc
        answer = done.text.strip()
        answered_at = time.time()
        next_seq = int(turns[-1].sk) + 1 if turns else 0
        seq = self._store_turn(tenant, conv, next_seq, content, answer, asked_at, answered_at)
        if not self._touch(tenant, conv, content if seq == 0 else None, answered_at):
            # Deleted while the model was answering: leave no orphan turn behind.
            self._records.delete(keys.llamachat_turns(tenant, conv.id), f"{seq:0{_SEQ_DIGITS}d}")
            raise NotFound("Conversation not found.")
        return Message("assistant", answer, answered_at)

    def _store_turn(
        self,
        tenant: str,
        conv: Conversation,
        seq: int,
        user: str,
        answer: str,
        asked: float,
        answered: float,
    ) -> int:
        """Store the turn at `seq` (the next number when the history was read), or at the
        next free one after it; returns the number used."""
        pk = keys.llamachat_turns(tenant, conv.id)
        for _ in range(_PUT_ATTEMPTS):
            try:
                self._records.put(
                    Record(
                        pk,
                        f"{seq:0{_SEQ_DIGITS}d}",
                        {
                            "user": user,
                            "assistant": answer,
                            "created_at": asked,
                            "answered_at": answered,
                        },
                    ),
                    if_absent=True,
                )
                return seq
            except Conflict:  # another message of this conversation got there first
                seq += 1
        raise Unavailable("The conversation is too busy; send the message again.")

    def _touch(self, tenant: str, conv: Conversation, first: str | None, now: float) -> bool:
        # Re-read: a concurrent turn may have moved it on. Losing a race here only costs an
        # updated_at or turn count, never a turn (turns are their own items).
        try:
            current = self.get(tenant, conv.id)
        except NotFound:
            return False
        title = current.title
        if first is not None and title == NEW_TITLE:
            title = title_from(first)
        self._records.put(
            self._record(
                tenant,
                Conversation(current.id, title, current.created_at, now, current.turns + 1),
            ),
            if_absent=False,
        )
        return True

    @staticmethod
    def _record(tenant: str, c: Conversation) -> Record:
        return Record(
            keys.llamachat_conversations(tenant),
            c.id,
            {
                "title": c.title,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
                "turns": c.turns,
            },
        )


def _conversation(rec: Record) -> Conversation:
    d = rec.data
    return Conversation(rec.sk, str(d["title"]), d["created_at"], d["updated_at"], int(d["turns"]))


def _messages(turns: list[Record]) -> list[Message]:
    out: list[Message] = []
    for r in turns:
        d = r.data
        out.append(Message("user", str(d["user"]), d["created_at"]))
        out.append(Message("assistant", str(d["assistant"]), d["answered_at"]))
    return out
