"""llama_internet_chatbot: chats, their message rows, and answers generated from the transcript,
optionally with what a web search found for the last question.

Records (services/keys.py): chats in `T#<t>#ICHAT` (sort key = chat id), every message row of
the tenant in `T#<t>#IROW` (sort key `<chat id>#<row id>`), so one chat's rows are one prefix
query in time order and the tenant's list is one query. Ids are UUIDv7 (RFC 9562): real UUIDs
like the original's, time-ordered, and generated monotonically within a process, so key order
is creation order.

An answer is prepared before anything streams (chat lookup, rows, model, web research, prompt
window, first model item), so an unknown chat or a model that cannot start is an ordinary
error response. Then text pieces stream; once the model has finished, the answer is stored as
an "Assistant" row. A stream that does not finish (client gone, model failed) stores nothing:
a cut-off answer would become part of every later prompt, and asking again regenerates it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pasture.domain.chat import ChatMessage, Completion, GenerationParams, TextDelta
from pasture.domain.errors import Invalid, NotFound, PastureError
from pasture.domain.web import WebPage, WebResult
from pasture.ports import ChatModel, Embedder, PageFetcher, Record, Records, WebSearch
from pasture.services import keys
from pasture.services.chat import fit_window

log = logging.getLogger(__name__)

ROLES = ("Human", "Assistant")
MAX_NAME_CHARS = 200
MAX_MESSAGE_CHARS = 32_000
LIST_CHATS_LIMIT = 20  # as the original
LIST_ROWS_LIMIT = 100  # as the original
MAX_TRANSCRIPT_ROWS = 500  # read at most this many recent rows before fitting the window
NO_MESSAGES = "No messages found in database"  # the original's frame for an empty chat
# The original's "Human:", ours for the transcript's labels, and a new transcript line.
STOP = ("[[Human]]:", "Human:", "\n[[")
# Short: SmolLM2-135M repeats a long system prompt back instead of answering.
SYSTEM_PROMPT = (
    "You are [[Assistant]], a helpful assistant chatting with [[Human]]. Below is the chat so"
    " far; write your next reply only."
)
# A transcript label the model may start its answer with ("[[Assistant]]: ..."), and what
# can still turn into one while the first tokens arrive.
_LABEL = re.compile(r"\[\[[^\[\]\n]{1,40}\]\]:[ \t]*")
_PARTIAL_LABEL = re.compile(r"\[(\[[^\[\]\n]{0,40}(\](\]:?)?)?)?")
WEB_INSTRUCTION = (
    "[[Human]]: Please understand the [[Fetched Information]] and give an answer to me"
    " [[Assistant]]. Cite the sources you use like [1]."
)
NO_WEB_INSTRUCTION = (
    "[[Human]]: Nothing could be fetched from the internet, so answer me from what you know"
    " [[Assistant]], and say that you could not check the web."
)
# Passages: paragraphs and sentences packed into pieces of about this many words.
PASSAGE_MIN_WORDS = 80
PASSAGE_MAX_WORDS = 150
PASSAGE_DROP_WORDS = 8  # shorter pieces (menus, bylines) are dropped when a page has more
PASSAGES_PER_PAGE = 40  # bounds the embedding work for a long page
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class Chat:
    id: str
    name: str
    created_at: str  # naive ISO 8601, UTC, microseconds (chrono's NaiveDateTime)
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Row:
    id: str
    role: str
    chat_id: str
    message: str
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Passage:
    url: str
    title: str
    text: str
    score: float


@dataclass(frozen=True)
class Research:
    """What the web gave for a question: ranked passages (best first), or why there are none."""

    passages: tuple[Passage, ...]
    failure: str | None = None  # a short reason, shown to the model and the reader


# ---------------------------------------------------------------------- ids and times


class _Uuid7:
    """Monotonic UUIDv7: 48-bit milliseconds, a 12-bit counter within one millisecond, 62
    random bits. Ids made by one process sort in the order they were made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._seq = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._ms:
                ms, self._seq = self._ms, self._seq + 1
                if self._seq > 0xFFF:
                    ms, self._seq = ms + 1, 0
            else:
                self._seq = 0
            self._ms = ms
            value = (
                (ms & 0xFFFF_FFFF_FFFF) << 80
                | 0x7 << 76
                | self._seq << 64
                | 0b10 << 62
                | secrets.randbits(62)
            )
        return str(uuid.UUID(int=value))


new_id = _Uuid7()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time; one with an offset (or Z) is converted to naive UTC."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"`updated_at` must be an ISO 8601 date and time like 2023-08-05T14:48:00,"
            f" not {value[:60]!r}"
        ) from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def canonical_id(value: str) -> str | None:
    """The lowercase hyphenated form of a UUID (any form `uuid` parses), else None."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------------- the service


class ChatbotService:
    def __init__(
        self,
        records: Records,
        model: Callable[[], ChatModel],
        *,
        search: WebSearch | None = None,
        fetcher: PageFetcher | None = None,
        embedder: Embedder | None = None,
        max_tokens: int = 512,
        fetch_pages: int = 3,
        passages: int = 4,
        fetch_timeout: float = 8.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._records = records
        self._model = model
        self._search = search
        self._fetcher = fetcher
        self._embedder = embedder
        self._max_tokens = max_tokens
        self._fetch_pages = fetch_pages
        self._passages = passages
        self._fetch_timeout = fetch_timeout
        self._clock = clock

    # ------------------------------------------------------------------ chats

    def list_chats(self, tenant: str) -> list[Chat]:
        """The first 20 chats in creation order (the original's `LIMIT 20`)."""
        recs = self._records.query(keys.chatbot_chats(tenant), "", limit=LIST_CHATS_LIMIT)
        return [Chat(**r.data) for r in recs]

    def get_chat(self, tenant: str, chat_id: str) -> Chat:
        cid = canonical_id(chat_id)
        rec = self._records.get(keys.chatbot_chats(tenant), cid) if cid else None
        if rec is None:
            raise NotFound(f"chat {chat_id} not found")
        return Chat(**rec.data)

    def create_chat(self, tenant: str, name: str) -> Chat:
        name = _check_name(name)
        now = iso(self._clock())
        chat = Chat(id=new_id(), name=name, created_at=now, updated_at=now)
        self._records.put(
            Record(keys.chatbot_chats(tenant), chat.id, chat.as_dict()), if_absent=True
        )
        return chat

    def update_chat(self, tenant: str, chat_id: str, name: str, updated_at: str | None) -> Chat:
        """Rename; `updated_at` as the client gives it (the original's body has it), else now."""
        chat = self.get_chat(tenant, chat_id)
        name = _check_name(name)
        stamp = parse_time(updated_at) if updated_at is not None else self._clock()
        new = Chat(id=chat.id, name=name, created_at=chat.created_at, updated_at=iso(stamp))
        self._records.put(
            Record(keys.chatbot_chats(tenant), chat.id, new.as_dict()), if_absent=False
        )
        return new

    def delete_chat(self, tenant: str, chat_id: str) -> Chat:
        """Removes the chat's rows, then the chat (a crash in between leaves the chat, so a
        retry finds it and finishes). Returns the chat as it was."""
        chat = self.get_chat(tenant, chat_id)
        pk = keys.chatbot_rows(tenant)
        for r in self._records.query(pk, f"{chat.id}#", limit=None):
            self._records.delete(pk, r.sk)
        self._records.delete(keys.chatbot_chats(tenant), chat.id)
        return chat

    # ------------------------------------------------------------------ rows

    def add_row(self, tenant: str, chat_id: str, role: str, message: str) -> Row:
        cid = canonical_id(chat_id)
        if cid is None:
            raise Invalid(f"`chat_id` must be a UUID, not {chat_id[:60]!r}")
        role = _check_role(role)
        message = _check_message(message)
        chat = self.get_chat(tenant, cid)
        return self._store_row(tenant, chat.id, role, message)

    def _store_row(self, tenant: str, chat_id: str, role: str, message: str) -> Row:
        now = iso(self._clock())
        row = Row(
            id=new_id(),
            role=role,
            chat_id=chat_id,
            message=message,
            created_at=now,
            updated_at=now,
        )
        self._records.put(
            Record(keys.chatbot_rows(tenant), f"{chat_id}#{row.id}", row.as_dict()),
            if_absent=True,
        )
        return row

    def rows(self, tenant: str, chat_id: str | None = None) -> list[Row]:
        """At most 100 rows, oldest first: the tenant's (chats in creation order, each chat's
        rows in time order), or one chat's (`chat_id`, an extension)."""
        prefix = ""
        if chat_id is not None:
            prefix = f"{self.get_chat(tenant, chat_id).id}#"
        recs = self._records.query(keys.chatbot_rows(tenant), prefix, limit=LIST_ROWS_LIMIT)
        return [Row(**r.data) for r in recs]

    def _transcript(self, tenant: str, chat_id: str) -> list[Row]:
        recs = self._records.query(keys.chatbot_rows(tenant), f"{chat_id}#", limit=None)
        return [Row(**r.data) for r in recs[-MAX_TRANSCRIPT_ROWS:]]

    # ------------------------------------------------------------------ answers

    async def answer(self, tenant: str, chat_id: str, *, web: bool) -> AsyncIterator[str]:
        """The answer to the chat's transcript as text pieces. Raises before anything
        streams for an unknown chat, a model that cannot start or a prompt that cannot fit.
        `web`: search the web for the last question first (never fails for the web's sake:
        without results the model is told so, and the reader too)."""
        chat = await asyncio.to_thread(self.get_chat, tenant, chat_id)
        rows = await asyncio.to_thread(self._transcript, tenant, chat.id)
        if not rows:
            return _once(NO_MESSAGES)
        model = await asyncio.to_thread(self._model)
        research = await asyncio.to_thread(self.research, _question(rows)) if web else None
        prompt, kept, room = _fit(model, rows, research, self._max_tokens)
        tail = _sources_tail(research, kept) if research is not None else ""
        params = GenerationParams(max_tokens=max(1, min(self._max_tokens, room)), stop=STOP)
        stream = model.stream(prompt, params)
        try:
            first = await anext(stream)
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        return self._relay(tenant, chat.id, stream, first, tail)

    async def _relay(
        self,
        tenant: str,
        chat_id: str,
        stream: AsyncIterator[TextDelta | Completion],
        first: TextDelta | Completion,
        tail: str,
    ) -> AsyncIterator[str]:
        parts: list[str] = []
        head = ""  # the start of the answer, held while it may still be a label
        try:
            item: TextDelta | Completion | None = first
            while isinstance(item, TextDelta):
                text = item.text
                if not parts:  # nothing released yet: no leading blank, no role label
                    head, text = _strip_head(head + text)
                if text:
                    parts.append(text)
                    yield text
                item = await anext(stream, None)
        finally:
            # Stops the model when our consumer goes away (client disconnect).
            await stream.aclose()  # type: ignore[attr-defined]
        if head and not parts:  # the answer ended while it looked like a label
            parts.append(head)
            yield head
        answer = "".join(parts).rstrip() + tail
        if answer:
            # Stored before the tail is sent: the answer is complete once the model is done.
            await asyncio.to_thread(self._store_row, tenant, chat_id, "Assistant", answer)
        if tail:
            yield tail

    # ------------------------------------------------------------------ the web

    def research(self, question: str) -> Research:
        """Search, fetch the top pages concurrently, split them into passages and keep the
        passages closest to the question (cosine of MiniLM embeddings)."""
        if self._search is None or self._fetcher is None or self._embedder is None:
            return Research((), "web search is not configured")
        try:
            results = self._search.search(question, self._fetch_pages)
        except PastureError as exc:
            log.warning("web search failed: %s", exc.message)
            return Research((), "the web search failed")
        except Exception:
            log.exception("web search failed")
            return Research((), "the web search failed")
        if not results:
            return Research((), "the web search found nothing")
        pages = self._fetch_all(results[: self._fetch_pages])
        if not pages:
            return Research((), "no result page could be fetched")
        candidates = [(p, t) for p in pages for t in split_passages(p.text)[:PASSAGES_PER_PAGE]]
        if not candidates:
            return Research((), "the fetched pages had no readable text")
        import numpy as np  # loaded on first use, not by every Lambda that wires this service

        try:
            vectors = self._embedder.embed([question] + [t for _, t in candidates])
            scores = [float(s) for s in np.asarray(vectors[1:]) @ np.asarray(vectors[0])]
        except Exception:
            log.exception("ranking web passages failed; keeping them in page order")
            scores = [0.0] * len(candidates)
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])[: self._passages]
        return Research(
            tuple(
                Passage(candidates[i][0].url, candidates[i][0].title, candidates[i][1], scores[i])
                for i in order
            )
        )

    def _fetch_all(self, results: Sequence[WebResult]) -> list[WebPage]:
        """Pages in search order; those that fail, are refused or are late are skipped."""
        fetcher = self._fetcher
        assert fetcher is not None
        pool = ThreadPoolExecutor(max_workers=len(results), thread_name_prefix="web-fetch")
        futures: list[Future[WebPage]] = [pool.submit(fetcher.fetch, r.url) for r in results]
        try:
            # The fetcher keeps its own deadline; this bounds the wait even if it does not.
            done, _ = wait(futures, timeout=self._fetch_timeout + 1.0)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        pages: list[WebPage] = []
        for r, f in zip(results, futures, strict=True):
            if f not in done:
                log.info("web page skipped (too slow): %s", r.url)
                continue
            exc = f.exception()
            if exc is not None:
                reason = exc.message if isinstance(exc, PastureError) else type(exc).__name__
                log.info("web page skipped: %s: %s", r.url, reason)
                continue
            page = f.result()
            # Two results may end at one page after redirects: keep it once.
            if page.text.strip() and all(p.url != page.url for p in pages):
                pages.append(page)
        return pages


# ---------------------------------------------------------------------- helpers


async def _once(text: str) -> AsyncIterator[str]:
    yield text


def _strip_head(text: str) -> tuple[str, str]:
    """(still held, releasable) for the start of an answer: leading blanks and transcript
    labels such as `[[Assistant]]:` are dropped; a start that may still become a label is
    held back."""
    text = text.lstrip()
    while m := _LABEL.match(text):
        text = text[m.end() :].lstrip()
    if not text or _PARTIAL_LABEL.fullmatch(text):
        return text, ""
    return "", text


def _check_name(name: str) -> str:
    if not name.strip():
        raise Invalid("`name` must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise Invalid(f"`name` takes at most {MAX_NAME_CHARS} characters")
    return name


def _check_role(role: str) -> str:
    for r in ROLES:
        if role.strip().lower() == r.lower():
            return r
    raise Invalid(f"`role` must be Human or Assistant, not {role[:40]!r}")


def _check_message(message: str) -> str:
    if not message.strip():
        raise Invalid("`message` must not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        raise Invalid(f"`message` takes at most {MAX_MESSAGE_CHARS} characters")
    return message


def _line(role: str, message: str) -> str:
    return f"[[{role}]]: {message}"


def _question(rows: Sequence[Row]) -> str:
    """The web query: the last Human message (the last message when there is none)."""
    for r in reversed(rows):
        if r.role == "Human":
            return r.message
    return rows[-1].message


def _numbered(kept: Sequence[Passage]) -> tuple[list[tuple[int, Passage]], list[str]]:
    """Passages with their source numbers (one number per page, in rank order) and the
    numbered URLs."""
    urls: list[str] = []
    out = []
    for p in kept:
        if p.url not in urls:
            urls.append(p.url)
        out.append((urls.index(p.url) + 1, p))
    return out, urls


def _fit(
    model: ChatModel, rows: Sequence[Row], research: Research | None, max_tokens: int
) -> tuple[list[ChatMessage], list[Passage], int]:
    """The prompt: a short system message, then the transcript as one user message, oldest
    rows dropped first (then the weakest passages) until it fits the model's context."""
    history = [ChatMessage("user", _line(r.role, r.message)) for r in rows[:-1]]
    last = _line(rows[-1].role, rows[-1].message)
    items = list(research.passages) if research is not None else []

    def build(hist: list[ChatMessage], kept: list[Passage]) -> list[ChatMessage]:
        lines = [m.content for m in hist] + [last]
        if research is not None:
            if kept:
                numbered, _ = _numbered(kept)
                lines += [
                    f"[[Fetched Information]]: [{n}] {p.url}: {' '.join(p.text.split())}"
                    for n, p in numbered
                ]
                lines.append(WEB_INSTRUCTION)
            else:
                why = research.failure or "the fetched pages did not fit in the model's context"
                lines.append(f"[[Fetched Information]]: (none: {why})")
                lines.append(NO_WEB_INSTRUCTION)
        lines.append("[[Assistant]]:")
        return [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", "\n".join(lines))]

    return fit_window(model, build, history, items, max_tokens)


def _sources_tail(research: Research, kept: Sequence[Passage]) -> str:
    """The last piece of a web answer: the URLs it was given, numbered as in the prompt (so
    sources are cited even when the model does not), or why there are none."""
    if not kept:
        why = research.failure or "the fetched pages did not fit in the model's context"
        return f"\n\nSources: none ({why})"
    _, urls = _numbered(kept)
    return "\n\nSources:\n" + "\n".join(f"[{i}] {u}" for i, u in enumerate(urls, 1))


def split_passages(
    text: str, min_words: int = PASSAGE_MIN_WORDS, max_words: int = PASSAGE_MAX_WORDS
) -> list[str]:
    """Pieces of about `min_words`..`max_words` words that keep paragraphs together where
    they can: paragraphs are packed until a piece has at least `min_words`; a paragraph too
    long for one piece is split at sentence ends (and a sentence too long, at words)."""
    units: list[tuple[str, bool]] = []  # (text, ends a paragraph)
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if not words:
            continue
        if len(words) <= max_words:
            units.append((" ".join(words), True))
            continue
        pieces: list[str] = []
        for sentence in _SENTENCE_END.split(" ".join(words)):
            sw = sentence.split()
            while len(sw) > max_words:
                pieces.append(" ".join(sw[:max_words]))
                sw = sw[max_words:]
            if sw:
                pieces.append(" ".join(sw))
        units += [(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]

    out: list[str] = []
    cur: list[str] = []
    count = 0
    for unit, ends_paragraph in units:
        n = len(unit.split())
        if cur and count + n > max_words:
            out.append(" ".join(cur))
            cur, count = [], 0
        cur.append(unit)
        count += n
        if ends_paragraph and count >= min_words:
            out.append(" ".join(cur))
            cur, count = [], 0
    if cur:
        out.append(" ".join(cur))
    if len(out) > 1:
        out = [p for p in out if len(p.split()) >= PASSAGE_DROP_WORDS] or out
    return out
