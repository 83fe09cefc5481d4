"""Chat values shared by the ChatModel port, the chat service and every dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings a request may set; None means the model's default."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class FinishReason(StrEnum):
    STOP = "stop"  # the model ended its answer or hit a stop string
    LENGTH = "length"  # max_tokens or the context ran out


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, in order; joined they are the whole answer."""

    text: str


@dataclass(frozen=True)
class Completion:
    """The end of a generation: the whole text, why it stopped and the real token counts."""

    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass(frozen=True)
class Reference:
    """A retrieved chunk that was put in front of the model, numbered as the prompt cites it."""

    number: int
    chunk_id: str
    dataset_id: str
    document_id: str
    document_name: str
    text: str
    score: float
    keyword_score: float
    vector_score: float


@dataclass(frozen=True)
class ChatResult:
    """The final record of one chat turn (what dialects put in their last frame or body)."""

    id: str
    created: int
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    session_id: str | None
    references: tuple[Reference, ...] = field(default_factory=tuple)
