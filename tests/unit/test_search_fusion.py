"""The fusion in SearchIndex.query, against a fake whose primitives return fixed scores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pytest

from pasture.domain.search import IndexedChunk, RetrievalMode, SearchQuery, fuse
from pasture.ports import SearchIndex

# chunk id -> (raw bm25, cosine)
SCORES = {"a": (8.0, 0.2), "b": (4.0, 0.9), "c": (0.0, 0.5), "d": (2.0, -0.3)}


class FixedIndex(SearchIndex):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def upsert(self, chunks):  # type: ignore[no-untyped-def]
        raise AssertionError

    def delete_document(self, tenant: str, dataset_id: str, document_id: str) -> int:
        raise AssertionError

    def delete_dataset(self, tenant: str, dataset_id: str) -> int:
        raise AssertionError

    def count(self, tenant: str, dataset_id: str) -> int:
        return len(SCORES)

    def list_chunks(
        self,
        tenant: str,
        dataset_id: str,
        document_id: str,
        *,
        keywords: str | None,
        chunk_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[IndexedChunk]]:
        raise AssertionError

    def get_chunks(
        self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]
    ) -> dict[str, IndexedChunk]:
        raise AssertionError

    def delete_chunks(self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]) -> int:
        raise AssertionError

    def _keyword_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        self.calls.append("kw")
        return dict(
            sorted(((c, s[0]) for c, s in SCORES.items() if s[0] > 0), key=lambda t: -t[1])[:k]
        )

    def _vector_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        self.calls.append("vec")
        return dict(sorted(((c, s[1]) for c, s in SCORES.items()), key=lambda t: -t[1])[:k])

    def _keyword_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        return {c: SCORES[c][0] for c in chunk_ids}

    def _vector_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        return {c: SCORES[c][1] for c in chunk_ids}

    def _load(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, IndexedChunk]:
        empty = np.empty(0, dtype=np.float32)
        return {c: IndexedChunk(c, q.tenant, "ds", "doc", f"text {c}", empty) for c in chunk_ids}


def q(**kw) -> SearchQuery:  # type: ignore[no-untyped-def]
    base = dict(
        tenant="t", dataset_ids=("ds",), text="query words", vector=np.ones(2, np.float32), top_k=10
    )
    return SearchQuery(**{**base, **kw})  # type: ignore[arg-type]


def test_hybrid_scores_are_the_documented_fusion() -> None:
    hits = FixedIndex().query(q(vector_weight=0.5, candidates=2))
    by_id = {h.chunk_id: h for h in hits}
    # Candidates: a, b (bm25) and b, c (vector); every one gets both components exactly.
    assert set(by_id) == {"a", "b", "c"}
    assert by_id["a"].keyword_score == 1.0 and by_id["b"].keyword_score == 0.5
    assert by_id["c"].keyword_score == 0.0 and by_id["a"].vector_score == pytest.approx(0.2)
    for h in hits:
        assert h.score == pytest.approx(fuse(h.vector_score, h.keyword_score, 0.5))
    assert [h.chunk_id for h in hits] == ["b", "a", "c"]


def test_negative_cosine_is_clipped_and_weights_follow_the_mode() -> None:
    ix = FixedIndex()
    vec = {h.chunk_id: h for h in ix.query(q(mode=RetrievalMode.VECTOR))}
    assert vec["d"].vector_score == 0.0 and vec["b"].score == pytest.approx(0.9)
    kw = ix.query(q(mode=RetrievalMode.KEYWORD))
    assert [h.chunk_id for h in kw][:2] == ["a", "b"] and kw[0].score == 1.0


def test_min_score_top_k_and_empty_scope() -> None:
    ix = FixedIndex()
    assert [h.chunk_id for h in ix.query(q(top_k=1))] == ["b"]
    assert all(h.score >= 0.6 for h in ix.query(q(min_score=0.6)))
    assert ix.query(q(dataset_ids=())) == [] and ix.query(q(top_k=0)) == []


def test_text_without_words_is_vector_only() -> None:
    ix = FixedIndex()
    hits = ix.query(q(text="?! ..."))
    assert "kw" not in ix.calls
    assert hits[0].chunk_id == "b" and hits[0].score == pytest.approx(0.9)


def test_without_a_vector_it_is_keyword_only() -> None:
    ix = FixedIndex()
    hits = ix.query(q(vector=None))
    assert "vec" not in ix.calls and hits[0].chunk_id == "a" and hits[0].score == 1.0
