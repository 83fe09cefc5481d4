"""Citation markers for an answer, placed the way RAGFlow places them: after each sentence that
a retrieved chunk supports, `##i$$` with i the chunk's position in the reference list.

A sentence is supported by a chunk when 0.9 * cosine(sentence, chunk) + 0.1 * (share of the
sentence's words in the chunk) passes a threshold; the threshold starts strict and is relaxed
step by step until some sentence is cited (or it reaches a floor), so a loosely worded answer
still gets its best citations and a made-up one gets none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pasture.services.dataset_search import term_similarities, terms

if TYPE_CHECKING:
    import numpy as np

_SENTENCE = re.compile(r"(?<=[.!?。！？；;])\s+|\n+")
_START, _FLOOR, _STEP = 0.63, 0.3, 0.8
_MAX_PER_SENTENCE = 4


def insert_citations(
    answer: str,
    chunks: Sequence[str],
    embed: Callable[[list[str]], np.ndarray],
) -> tuple[str, list[int]]:
    """The answer with markers, and the chunk indexes cited (in order of first citation)."""
    if not answer.strip() or not chunks:
        return answer, []
    pieces = [p for p in _SENTENCE.split(answer) if p]
    sentences = [p for p in pieces if len(p.strip()) >= 5]
    if not sentences:
        return answer, []
    import numpy as np  # loaded on first use: most Lambdas that import this never cite

    vectors = embed([*sentences, *chunks])
    sv, cv = vectors[: len(sentences)], vectors[len(sentences) :]
    cos = np.clip(sv @ cv.T, 0.0, 1.0)
    scores = np.zeros_like(cos)
    for i, s in enumerate(sentences):
        scores[i] = 0.9 * cos[i] + 0.1 * np.array(term_similarities(terms(s), chunks))
    threshold = _START
    cited: dict[int, list[int]] = {}
    while threshold >= _FLOOR:
        for i in range(len(sentences)):
            best = [int(j) for j in np.argsort(-scores[i]) if scores[i][j] >= threshold]
            if best:
                cited[i] = best[:_MAX_PER_SENTENCE]
        if cited:
            break
        threshold *= _STEP
    out: list[str] = []
    order: list[int] = []
    cursor = 0
    index = {id(s): n for n, s in enumerate(sentences)}
    for p in pieces:
        start = answer.index(p, cursor)
        out.append(answer[cursor:start])
        cursor = start + len(p)
        n = index.get(id(p))
        marks = cited.get(n, []) if n is not None else []
        if not marks:
            out.append(p)
            continue
        body = p.rstrip()
        tail = ""
        if body and body[-1] in ".!?。！？；;":
            body, tail = body[:-1], body[-1]
        out.append(body + "".join(f" ##{j}$$" for j in marks) + tail + p[len(p.rstrip()) :])
        order.extend(j for j in marks if j not in order)
    out.append(answer[cursor:])
    return "".join(out), order
