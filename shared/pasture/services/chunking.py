"""Cut parsed documents into chunks sized in the embedder's own tokens.

Each section is tokenised once; every piece is then a character range of the section, and
its token count is the number of section tokens that start inside it (a bisect, no tokenizer
call). Counts of adjacent ranges therefore add up exactly, which keeps packing linear even for
multi-megabyte documents. One more batched call at the end measures each chunk exactly.
"""

from __future__ import annotations

import copy
import itertools
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from pasture.domain.documents import ChunkingSpec, ParsedDocument, TextChunk
from pasture.domain.errors import Invalid
from pasture.ports import Tokenizer

MIN_CHUNK_SIZE = 16


def validate_spec(spec: ChunkingSpec) -> None:
    """Raise Invalid unless `spec` can be honoured."""
    if spec.chunk_size < MIN_CHUNK_SIZE:
        raise Invalid(f"chunk_size must be at least {MIN_CHUNK_SIZE} tokens")
    if not 0 <= spec.chunk_overlap < spec.chunk_size:
        raise Invalid("chunk_overlap must be at least 0 and smaller than chunk_size")
    if any(not d for d in spec.delimiters):
        raise Invalid("chunking delimiters must not be empty strings")


def chunk_document(
    doc: ParsedDocument, spec: ChunkingSpec, tokenizer: Tokenizer
) -> list[TextChunk]:
    """Chunks of at most `spec.chunk_size` tokens, never crossing a section boundary.

    Deterministic: the same document, spec and tokenizer always give the same chunks. The
    tokenizer must not truncate (a capped count would let oversized chunks through).
    """
    validate_spec(spec)
    sections = [s for s in doc.sections if s.text.strip()]
    if not sections:
        return []
    all_spans = tokenizer.spans([s.text for s in sections])

    texts: list[str] = []
    metadata: list[dict[str, Any]] = []
    for section, spans in zip(sections, all_spans, strict=True):
        starts = sorted(start for start, _ in spans)
        pieces = _split(section.text, starts, spec)
        for a, b in _pack(pieces, starts, spec):
            text = section.text[a:b].strip()
            if text:
                texts.append(text)
                metadata.append(section.metadata)

    counts = [len(s) for s in tokenizer.spans(texts)] if texts else []
    return [
        TextChunk(index=i, text=text, token_count=count, metadata=copy.deepcopy(meta))
        for i, (text, meta, count) in enumerate(zip(texts, metadata, counts, strict=True))
    ]


def _tokens(starts: Sequence[int], a: int, b: int) -> int:
    """Tokens of the section that start within [a, b)."""
    return bisect_left(starts, b) - bisect_left(starts, a)


def _split(text: str, starts: Sequence[int], spec: ChunkingSpec) -> list[tuple[int, int]]:
    """Contiguous ranges covering `text`, each of at most chunk_size tokens."""
    out: list[tuple[int, int]] = []
    # Depth-first over (start, end, delimiter level), so pieces come out in text order.
    stack: list[tuple[int, int, int]] = [(0, len(text), 0)]
    while stack:
        a, b, level = stack.pop()
        if _tokens(starts, a, b) <= spec.chunk_size:
            out.append((a, b))
        elif level < len(spec.delimiters):
            stack.extend(
                (pa, pb, level + 1) for pa, pb in reversed(_cut(text, a, b, spec.delimiters[level]))
            )
        else:
            out.extend(_hard_split(starts, a, b, spec.chunk_size))
    return out


def _cut(text: str, a: int, b: int, delimiter: str) -> list[tuple[int, int]]:
    """Split [a, b) after each occurrence of `delimiter`, which stays with the piece before."""
    pieces = []
    pos = a
    while True:
        hit = text.find(delimiter, pos, b)
        if hit < 0:
            break
        end = hit + len(delimiter)
        pieces.append((pos, end))
        pos = end
    if pos < b:
        pieces.append((pos, b))
    return pieces


def _hard_split(starts: Sequence[int], a: int, b: int, size: int) -> list[tuple[int, int]]:
    """Last resort for a run with no delimiter: cut at every `size`-th token start."""
    first, last = bisect_left(starts, a), bisect_left(starts, b)
    cuts = [a, *(starts[i] for i in range(first + size, last, size)), b]
    return [(x, y) for x, y in itertools.pairwise(cuts) if x < y]


def _pack(
    pieces: list[tuple[int, int]], starts: Sequence[int], spec: ChunkingSpec
) -> list[tuple[int, int]]:
    """Greedily join consecutive pieces into ranges of at most chunk_size tokens; each new
    range starts with the previous one's trailing pieces worth at most chunk_overlap tokens."""
    counts = [_tokens(starts, a, b) for a, b in pieces]
    chunks: list[tuple[int, int]] = []
    current: list[int] = []  # indices into `pieces`
    total = 0
    for i, count in enumerate(counts):
        if current and total + count > spec.chunk_size:
            chunks.append((pieces[current[0]][0], pieces[current[-1]][1]))
            current, total = _overlap(current, counts, spec.chunk_overlap, spec.chunk_size - count)
        current.append(i)
        total += count
    if current:
        chunks.append((pieces[current[0]][0], pieces[current[-1]][1]))
    return chunks


def _overlap(
    current: list[int], counts: list[int], overlap: int, room: int
) -> tuple[list[int], int]:
    """The longest tail of `current` worth at most min(overlap, room) tokens."""
    if overlap <= 0:
        return [], 0
    limit = min(overlap, room)
    tail: list[int] = []
    total = 0
    for j in reversed(current):
        if total + counts[j] > limit:
            break
        tail.append(j)
        total += counts[j]
    tail.reverse()
    # Whitespace-only pieces (0 tokens) alone are no overlap worth repeating.
    if total == 0:
        return [], 0
    return tail, total
