"""Documents and the per-file processing state machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DocStatus(StrEnum):
    """Processing state of one document (RAGFlow's vocabulary, used by every dialect)."""

    UNSTART = "UNSTART"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAIL = "FAIL"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class ParsedSection:
    """A run of text from one place in a file (a page, a sheet, ...), with where it came from."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedDocument:
    parser: str
    sections: tuple[ParsedSection, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass(frozen=True)
class ChunkingSpec:
    """How a data-processing strategy cuts text: sizes in embedder tokens."""

    chunk_size: int = 200
    chunk_overlap: int = 20
    # Tried in order: split on the first delimiter, recurse with the next on pieces still too big.
    delimiters: tuple[str, ...] = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


@dataclass(frozen=True)
class TextChunk:
    index: int
    text: str
    token_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
