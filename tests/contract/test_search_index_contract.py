"""Contract of the SearchIndex port: every adapter must pass all of it.

Add an adapter by adding one entry to ADAPTERS (a factory taking a fresh temporary folder and
the vector dimension); every test then runs against it through the `make_index` and
`index` fixtures.
The corpus is tiny and hand-made: 8-dim vectors along a few axes, one topic per axis, so the
right answer of each query is obvious.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex
from pasture.domain.search import IndexedChunk, RetrievalMode, Scalar, SearchQuery, fuse
from pasture.ports import SearchIndex
from tests.helpers.opensearch_fake import fake_search_index

DIM = 8
TENANT = "acme"
DS = "handbook"

ADAPTERS: dict[str, Callable[[Path, int], SearchIndex]] = {
    "sqlite": lambda tmp, dim: SqliteSearchIndex(tmp / "index.db", tmp / "vectors", dimension=dim),
    # OpenSearch on the in-process fake cluster (tests/helpers/opensearch_fake.py).
    "opensearch": lambda tmp, dim: fake_search_index(dim)[0],
}


@pytest.fixture(params=sorted(ADAPTERS))
def make_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], SearchIndex]]:
    """Factory of fresh, empty indexes of the parametrised adapter (closed afterwards)."""
    made: list[SearchIndex] = []

    def make() -> SearchIndex:
        folder = tmp_path / f"i{len(made)}"
        folder.mkdir()
        made.append(ADAPTERS[request.param](folder, DIM))
        return made[-1]

    yield make
    for ix in made:
        close = getattr(ix, "close", None)
        if close is not None:
            close()


@pytest.fixture
def index(make_index: Callable[[], SearchIndex]) -> SearchIndex:
    """An index loaded with the corpus below."""
    ix = make_index()
    ix.upsert(corpus())
    return ix


def vec(*weights: float, axis: int = 0) -> np.ndarray:
    """Unit vector; `vec(1, 0.2)` = mostly axis 0, a little axis 1. `axis` shifts the start."""
    v = np.zeros(DIM, dtype=np.float32)
    for i, w in enumerate(weights):
        v[(axis + i) % DIM] = w
    return v / np.linalg.norm(v)


def chunk(
    cid: str,
    text: str,
    vector: np.ndarray,
    *,
    doc: str = "doc",
    tenant: str = TENANT,
    dataset: str = DS,
    **metadata: Scalar,
) -> IndexedChunk:
    return IndexedChunk(cid, tenant, dataset, doc, text, vector, metadata)


def corpus(tenant: str = TENANT, dataset: str = DS, prefix: str = "") -> list[IndexedChunk]:
    c = {"tenant": tenant, "dataset": dataset}
    return [
        chunk(
            f"{prefix}cats",
            "Cats are small domesticated felines that purr and chase mice.",
            vec(1, 0.1, axis=0),
            doc="animals",
            topic="animals",
            year=2020,
            public=True,
            **c,
        ),
        chunk(
            f"{prefix}dogs",
            "Dogs are loyal canines, trained for herding and guarding sheep.",
            vec(1, 0.1, axis=1),
            doc="animals",
            topic="animals",
            year=2021,
            public=False,
            **c,
        ),
        chunk(
            f"{prefix}rockets",
            "Rockets burn liquid oxygen and kerosene to reach orbit.",
            vec(1, 0.1, axis=2),
            doc="space",
            topic="space",
            year=2021,
            public=True,
            **c,
        ),
        chunk(
            f"{prefix}bread",
            "Sourdough bread rises slowly with wild yeast and flour.",
            vec(1, 0.1, axis=3),
            doc="food",
            topic="food",
            year=2019,
            public=True,
            **c,
        ),
        chunk(
            f"{prefix}volcano",
            "Volcanoes erupt molten lava and ash from the mantle.",
            vec(1, 0.1, axis=4),
            doc="earth",
            topic="earth",
            year=2022,
            public=False,
            **c,
        ),
        chunk(
            f"{prefix}tides",
            "Ocean tides follow the gravitational pull of the moon.",
            vec(1, 0.1, axis=5),
            doc="earth",
            topic="earth",
            year=2022,
            public=True,
            **c,
        ),
    ]


VECTORS = {c.chunk_id: c.vector for c in corpus()}


def q(
    text: str = "",
    vector: np.ndarray | None = None,
    *,
    mode: RetrievalMode = RetrievalMode.HYBRID,
    tenant: str = TENANT,
    datasets: tuple[str, ...] = (DS,),
    **kw: Any,
) -> SearchQuery:
    return SearchQuery(
        tenant=tenant, dataset_ids=datasets, text=text, vector=vector, mode=mode, **kw
    )


def ids(hits: list) -> list[str]:
    return [h.chunk_id for h in hits]


ALL_MODES = [RetrievalMode.KEYWORD, RetrievalMode.VECTOR, RetrievalMode.HYBRID]


def any_mode_query(mode: RetrievalMode, **kw: Any) -> SearchQuery:
    """A query that, unfiltered, would return every chunk in any mode: the text names a term
    of each chunk and the vector is equally close to all of them."""
    text = "cats dogs rockets bread volcanoes tides"
    vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    return q(text, vector, mode=mode, **{"top_k": 50, **kw})


# --------------------------------------------------------------------------- writes


def test_upsert_and_count(index: SearchIndex) -> None:
    assert index.count(TENANT, DS) == 6
    assert index.count(TENANT, "other") == 0
    assert index.count("someone-else", DS) == 0


def test_upsert_is_idempotent(index: SearchIndex) -> None:
    index.upsert(corpus())
    index.upsert(corpus())
    assert index.count(TENANT, DS) == 6
    assert ids(index.query(q("purr", mode=RetrievalMode.KEYWORD))) == ["cats"]


def test_upsert_same_chunk_id_replaces(index: SearchIndex) -> None:
    index.upsert([chunk("cats", "Parrots mimic human speech.", vec(1, axis=6), doc="animals")])
    assert index.count(TENANT, DS) == 6
    hits = index.query(q("parrots", mode=RetrievalMode.KEYWORD))
    assert ids(hits) == ["cats"]
    assert hits[0].text == "Parrots mimic human speech."
    assert hits[0].metadata == {}
    assert index.query(q("purr felines", mode=RetrievalMode.KEYWORD)) == []
    # The old vector is gone too: the new one is what the vector side finds.
    hits = index.query(q(vector=vec(1, axis=6), mode=RetrievalMode.VECTOR, top_k=1))
    assert ids(hits) == ["cats"]
    assert hits[0].vector_score == pytest.approx(1.0, abs=1e-5)
    hits = index.query(q(vector=VECTORS["cats"], mode=RetrievalMode.VECTOR, top_k=6))
    assert next(h for h in hits if h.chunk_id == "cats").vector_score < 0.2


def test_new_terms_are_searchable_at_once(index: SearchIndex) -> None:
    """No cache of the index (term statistics, ...) may hide what the last upsert added."""
    # Enough rows that one more is a small change (a cache might then not refresh).
    index.upsert([chunk(f"filler-{i}", f"filler line {i}", vec(1, i % 3)) for i in range(60)])
    text_query = q("zyxel quokka", mode=RetrievalMode.KEYWORD)
    assert index.query(text_query) == []
    index.upsert([chunk("new", "A quokka met a zyxel router.", vec(1, axis=7), doc="new")])
    assert ids(index.query(text_query)) == ["new"]
    assert ids(index.query(q("zyxel quokka", vec(1, axis=7))))[0] == "new"
    assert index.delete_document(TENANT, DS, "new") == 1
    assert index.query(text_query) == []


def test_upsert_batch_with_duplicate_ids_keeps_last(make_index: Callable[[], SearchIndex]) -> None:
    ix = make_index()
    ix.upsert([chunk("x", "first version", vec(1)), chunk("x", "second version", vec(1))])
    assert ix.count(TENANT, DS) == 1
    assert [h.text for h in ix.query(q("version", mode=RetrievalMode.KEYWORD))] == [
        "second version"
    ]


def test_delete_document(index: SearchIndex) -> None:
    assert index.delete_document(TENANT, DS, "animals") == 2
    assert index.count(TENANT, DS) == 4
    assert index.delete_document(TENANT, DS, "animals") == 0
    assert index.delete_document(TENANT, DS, "no-such-doc") == 0
    assert index.delete_document("someone-else", DS, "space") == 0
    for mode in ALL_MODES:
        found = ids(index.query(any_mode_query(mode)))
        assert set(found) == {"rockets", "bread", "volcano", "tides"}, mode


def test_delete_dataset(index: SearchIndex) -> None:
    index.upsert(corpus(dataset="other", prefix="o-"))
    assert index.delete_dataset("someone-else", DS) == 0
    assert index.delete_dataset(TENANT, DS) == 6
    assert index.count(TENANT, DS) == 0
    assert index.delete_dataset(TENANT, DS) == 0
    assert index.count(TENANT, "other") == 6
    for mode in ALL_MODES:
        assert index.query(any_mode_query(mode)) == [], mode
        assert len(index.query(any_mode_query(mode, datasets=(DS, "other")))) == 6, mode
    # The dataset can be filled again after deletion.
    index.upsert(corpus())
    assert ids(index.query(q("kerosene", mode=RetrievalMode.KEYWORD))) == ["rockets"]


# --------------------------------------------------------------------------- ranking


def test_keyword_mode_ranks_the_matching_chunk_first(index: SearchIndex) -> None:
    hits = index.query(q("molten lava", mode=RetrievalMode.KEYWORD))
    assert ids(hits) == ["volcano"]
    # Stemming: "erupts"/"eruption" style variants match "erupt".
    assert ids(index.query(q("erupting volcano", mode=RetrievalMode.KEYWORD)))[0] == "volcano"
    # More matching terms rank higher.
    hits = index.query(q("sheep herding cats", mode=RetrievalMode.KEYWORD))
    assert ids(hits) == ["dogs", "cats"]


def test_vector_mode_ranks_the_nearest_chunk_first(index: SearchIndex) -> None:
    hits = index.query(q(vector=vec(1, 0.3, axis=2), mode=RetrievalMode.VECTOR, top_k=3))
    assert ids(hits)[0] == "rockets"
    assert len(hits) == 3
    # Text is ignored for ranking in vector mode.
    hits = index.query(q("molten lava", vec(1, axis=3), mode=RetrievalMode.VECTOR, top_k=1))
    assert ids(hits) == ["bread"]


def test_hybrid_mode_combines_both(index: SearchIndex) -> None:
    hits = index.query(q("loyal canines", vec(1, 0.1, axis=1)))
    assert ids(hits)[0] == "dogs"
    # Keyword and vector disagree: the weight decides.
    text, vector = "sourdough bread", vec(1, axis=4)  # text says bread, vector says volcano
    assert ids(index.query(q(text, vector, vector_weight=0.2)))[0] == "bread"
    assert ids(index.query(q(text, vector, vector_weight=0.8)))[0] == "volcano"


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_hits_report_component_scores_and_their_fusion(
    index: SearchIndex, mode: RetrievalMode, weight: float
) -> None:
    vector = vec(1, 0.5, 0.2, axis=0)
    hits = index.query(q("cats chase mice sheep", vector, mode=mode, vector_weight=weight, top_k=6))
    assert hits
    expected_weight = {RetrievalMode.KEYWORD: 0.0, RetrievalMode.VECTOR: 1.0}.get(mode, weight)
    for h in hits:
        assert 0.0 <= h.keyword_score <= 1.0
        assert 0.0 <= h.vector_score <= 1.0
        assert h.score == pytest.approx(fuse(h.vector_score, h.keyword_score, expected_weight))
        # The vector component is the real (exact) cosine, whichever side found the chunk.
        cosine = float(np.dot(VECTORS[h.chunk_id], vector))
        assert h.vector_score == pytest.approx(max(0.0, cosine), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Keyword scores are normalised by the best BM25 among the candidates.
    assert max(h.keyword_score for h in hits) == pytest.approx(1.0)
    by_id = {h.chunk_id: h for h in hits}
    if "bread" in by_id:  # no query term occurs in it
        assert by_id["bread"].keyword_score == 0.0


def test_min_score_drops_weak_hits(index: SearchIndex) -> None:
    base = q("cats", vec(1, 0.5, axis=0), top_k=10)
    everything = index.query(base)
    kept = index.query(q("cats", vec(1, 0.5, axis=0), top_k=10, min_score=0.5))
    assert 0 < len(kept) < len(everything)
    assert all(h.score >= 0.5 for h in kept)
    assert ids(kept) == [h.chunk_id for h in everything if h.score >= 0.5]


def test_top_k_bounds_hits(index: SearchIndex) -> None:
    for k in (1, 2, 5):
        assert len(index.query(any_mode_query(RetrievalMode.HYBRID, top_k=k))) == k
    assert index.query(any_mode_query(RetrievalMode.HYBRID, top_k=0)) == []
    assert len(index.query(any_mode_query(RetrievalMode.HYBRID, top_k=100))) == 6


def test_candidates_bound_each_side(index: SearchIndex) -> None:
    hits = index.query(any_mode_query(RetrievalMode.VECTOR, candidates=2))
    assert len(hits) == 2
    hits = index.query(any_mode_query(RetrievalMode.KEYWORD, candidates=3))
    assert len(hits) == 3


def test_empty_text_with_vector_is_a_vector_query(index: SearchIndex) -> None:
    for mode in (RetrievalMode.HYBRID, RetrievalMode.VECTOR):
        hits = index.query(q("   ", vec(1, 0.2, axis=5), mode=mode, top_k=2))
        assert ids(hits)[0] == "tides"
        for h in hits:
            assert h.keyword_score == 0.0
            assert h.score == pytest.approx(h.vector_score)


def test_text_without_vector_is_a_keyword_query(index: SearchIndex) -> None:
    hits = index.query(q("gravitational moon"))
    assert ids(hits) == ["tides"]
    assert hits[0].vector_score == 0.0
    assert hits[0].score == pytest.approx(hits[0].keyword_score) == pytest.approx(1.0)


def test_unmatched_keyword_query_returns_nothing(index: SearchIndex) -> None:
    assert index.query(q("xylophone quartz", mode=RetrievalMode.KEYWORD)) == []


def test_query_on_unknown_or_empty_dataset(make_index: Callable[[], SearchIndex]) -> None:
    ix = make_index()
    for mode in ALL_MODES:
        assert ix.query(any_mode_query(mode)) == []
    ix.upsert(corpus())
    for mode in ALL_MODES:
        assert ix.query(any_mode_query(mode, datasets=("nope",))) == []
        assert ix.query(any_mode_query(mode, datasets=())) == []
        assert ix.query(any_mode_query(mode, tenant="nobody")) == []


HOSTILE = [
    '"AND OR (',
    "AND",
    "OR NOT",
    "NEAR(cats dogs, 2)",
    "text:cats",
    "cats*",
    "*",
    "^cats",
    '"unbalanced',
    "it's",
    "-cats +dogs",
    "(((",
    ")))",
    "C++ && || !",
    "{text}: cats",
    "a\x00b",
    "'; DROP TABLE chunks; --",
    "naïve café – “quotes” …",
    "中文 テキスト",
    "🙂🙂",
    ".",
    "the of and",
]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("mode", [RetrievalMode.KEYWORD, RetrievalMode.HYBRID])
def test_fts_syntax_in_user_text_never_raises(
    index: SearchIndex, text: str, mode: RetrievalMode
) -> None:
    hits = index.query(q(text, vec(1, axis=0), mode=mode))
    assert isinstance(hits, list)
    assert index.count(TENANT, DS) == 6


def test_hostile_text_still_finds_its_terms(index: SearchIndex) -> None:
    for text in ('cats" OR (', "NEAR(cats", "text:cats", "cats*", "-cats", "^cats"):
        assert ids(index.query(q(text, mode=RetrievalMode.KEYWORD)))[:1] == ["cats"], text


# --------------------------------------------------------------------------- scoping


@pytest.mark.parametrize("mode", ALL_MODES)
def test_tenant_isolation(index: SearchIndex, mode: RetrievalMode) -> None:
    # Same dataset id, same texts and vectors, under another tenant.
    index.upsert(corpus(tenant="globex", prefix="g-"))
    assert index.count("globex", DS) == 6
    assert index.count(TENANT, DS) == 6
    mine = ids(index.query(any_mode_query(mode)))
    theirs = ids(index.query(any_mode_query(mode, tenant="globex")))
    assert sorted(mine) == sorted(c.chunk_id for c in corpus())
    assert sorted(theirs) == sorted(f"g-{c.chunk_id}" for c in corpus())
    # Filters and deletions stay within the tenant too.
    filtered = ids(index.query(any_mode_query(mode, document_ids=("animals",))))
    assert sorted(filtered) == ["cats", "dogs"]
    assert index.delete_document("globex", DS, "animals") == 2
    assert index.count(TENANT, DS) == 6
    assert index.delete_dataset("globex", DS) == 4
    assert sorted(ids(index.query(any_mode_query(mode)))) == sorted(mine)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_dataset_scoping(index: SearchIndex, mode: RetrievalMode) -> None:
    index.upsert(corpus(dataset="second", prefix="s-"))
    only_first = ids(index.query(any_mode_query(mode)))
    only_second = ids(index.query(any_mode_query(mode, datasets=("second",))))
    both = ids(index.query(any_mode_query(mode, datasets=(DS, "second"))))
    assert all(not c.startswith("s-") for c in only_first) and len(only_first) == 6
    assert all(c.startswith("s-") for c in only_second) and len(only_second) == 6
    assert len(both) == 12
    hits = index.query(any_mode_query(mode, datasets=("second", "missing")))
    assert {h.dataset_id for h in hits} == {"second"}


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"document_ids": ("earth",)}, {"volcano", "tides"}),
        ({"document_ids": ("earth", "space", "missing")}, {"volcano", "tides", "rockets"}),
        ({"metadata_filters": {"topic": "food"}}, {"bread"}),
        ({"metadata_filters": {"topic": ["food", "space"]}}, {"bread", "rockets"}),
        ({"metadata_filters": {"year": 2021}}, {"dogs", "rockets"}),
        ({"metadata_filters": {"year": [2019, 2022]}}, {"bread", "volcano", "tides"}),
        ({"metadata_filters": {"public": False}}, {"dogs", "volcano"}),
        ({"metadata_filters": {"public": True, "topic": "animals"}}, {"cats"}),
        ({"metadata_filters": {"topic": "animals"}, "document_ids": ("earth",)}, set()),
        ({"metadata_filters": {"missing-key": "x"}}, set()),
        ({"metadata_filters": {"year": "2021"}}, set()),  # a string is not the int 2021
    ],
)
def test_filters_apply_in_every_mode(
    index: SearchIndex, mode: RetrievalMode, kw: dict, expected: set[str]
) -> None:
    hits = index.query(any_mode_query(mode, **kw))
    assert set(ids(hits)) == expected
    for h in hits:  # hits carry their stored metadata
        assert h.metadata["topic"] in {"animals", "space", "food", "earth"}


@pytest.mark.parametrize("mode", ALL_MODES)
def test_filter_matching_only_chunks_far_from_the_query(
    make_index: Callable[[], SearchIndex], mode: RetrievalMode
) -> None:
    """The filter admits only chunks far from the query vector, behind hundreds of closer
    ones: an ANN search that filters afterwards would find none of them."""
    ix = make_index()
    rng = np.random.default_rng(7)
    near = []
    for i in range(400):
        v = vec(1, axis=0) + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        near.append(chunk(f"near-{i}", f"common filler sentence number {i}", v / np.linalg.norm(v)))
    far = [
        chunk("far-1", "common but rare flagged sentence", vec(1, 0.2, axis=4), flag=True, n=1),
        chunk("far-2", "common flagged text", vec(0.2, 1, axis=4), flag=True, n=2, doc="d2"),
    ]
    ix.upsert(near + far)
    query_vector = vec(1, axis=0)
    for kw in (
        {"metadata_filters": {"flag": True}},
        {"metadata_filters": {"n": [1, 2]}},
        {"document_ids": ("d2",)},
    ):
        hits = ix.query(q("common", query_vector, mode=mode, top_k=5, candidates=10, **kw))
        expected = {"far-2"} if "document_ids" in kw else {"far-1", "far-2"}
        assert set(ids(hits)) == expected, kw
        for h in hits:
            v = next(c.vector for c in far if c.chunk_id == h.chunk_id)
            assert h.vector_score == pytest.approx(max(0.0, float(v @ query_vector)), abs=1e-5)
    # Vector-only with a filter still returns the filtered chunks in exact cosine order.
    hits = ix.query(
        q(vector=vec(1, axis=5), mode=RetrievalMode.VECTOR, metadata_filters={"flag": True})
    )
    assert ids(hits) == ["far-2", "far-1"]


# --------------------------------------------------------------------------- chunk reads and edits


def listed(
    ix: SearchIndex,
    doc: str,
    *,
    tenant: str = TENANT,
    dataset: str = DS,
    keywords: str | None = None,
    chunk_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[int, list[str]]:
    """(total, chunk ids of the page) of `list_chunks`."""
    total, page = ix.list_chunks(
        tenant, dataset, doc, keywords=keywords, chunk_id=chunk_id, offset=offset, limit=limit
    )
    for c in page:  # every listed chunk is really of the scope asked for
        assert (c.tenant, c.dataset_id, c.document_id) == (tenant, dataset, doc)
    return total, [c.chunk_id for c in page]


# (chunk id, chunk_index or None), in upsert order. Reading order: by chunk_index (numeric,
# so 10 after 2; ties by chunk id), then the ones without it in the order they came in.
BOOK = [
    ("n-zeta", None),
    ("p2", 2),
    ("n-alpha", None),
    ("p10", 10),
    ("p0", 0),
    ("p1-b", 1),
    ("n-mu", None),
    ("p1-a", 1),
]
BOOK_ORDER = ["p0", "p1-a", "p1-b", "p2", "p10", "n-zeta", "n-alpha", "n-mu"]


def book_chunk(cid: str, chunk_index: int | None, text: str | None = None) -> IndexedChunk:
    meta: dict[str, Scalar] = {} if chunk_index is None else {"chunk_index": chunk_index}
    return chunk(
        cid, text or f"Book passage {cid}.", vec(1, 0.3, axis=len(cid)), doc="book", **meta
    )


@pytest.fixture
def book(index: SearchIndex) -> SearchIndex:
    """The corpus plus document "book" (BOOK), upserted one chunk at a time."""
    for cid, chunk_index in BOOK:
        index.upsert([book_chunk(cid, chunk_index)])
    return index


def test_list_chunks_in_reading_order(book: SearchIndex) -> None:
    assert listed(book, "book") == (8, BOOK_ORDER)
    # One batch keeps its order too; other documents list only their own chunks.
    assert listed(book, "earth") == (2, ["volcano", "tides"])
    assert listed(book, "no-such-doc") == (0, [])


def test_list_chunks_pages_with_totals(book: SearchIndex) -> None:
    pages = [listed(book, "book", offset=o, limit=3) for o in (0, 3, 6)]
    assert [total for total, _ in pages] == [8, 8, 8]
    assert [p for _, p in pages] == [BOOK_ORDER[0:3], BOOK_ORDER[3:6], BOOK_ORDER[6:]]
    assert listed(book, "book", offset=2, limit=1) == (8, ["p1-b"])
    assert listed(book, "book", offset=8, limit=3) == (8, [])
    assert listed(book, "book", offset=100, limit=3) == (8, [])
    assert listed(book, "book", limit=0) == (8, [])
    # Filters count before paging.
    assert listed(book, "book", keywords="passage n-", offset=1, limit=1) == (3, ["n-alpha"])
    for offset, limit in ((-1, 3), (0, -1)):
        with pytest.raises(ValueError):
            listed(book, "book", offset=offset, limit=limit)


KEYWORD_TEXTS = {
    "pct": "Growth was 100% now.",
    "pct-word": "Growth was 100 percent now.",
    "under": "Call snake_case here.",
    "under-x": "Call snakeXcase here.",
    "backslash": "Path dir\\sub end.",
    "no-backslash": "Path dirsub end.",
    "quotes": 'She said "QUOTED" or not; NEAR(x) * ^y',
    "umlaut": "ÄRGER im Büro.",
    "plain": "Nothing special here.",
}


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        ("growth WAS", {"pct", "pct-word"}),  # case-insensitive
        ("100% now", {"pct"}),  # `%` is a literal: as a wildcard it would match pct-word too
        ("%", {"pct"}),
        ("snake_case", {"under"}),  # `_` likewise
        ("_", {"under"}),
        ("dir\\sub", {"backslash"}),  # an escape character is a literal too
        ('"quoted" OR not; near(x) * ^', {"quotes"}),  # FTS syntax is plain text
        ("ärger IM bÜro", {"umlaut"}),  # non-ASCII case folding
        ("here.", {"under", "under-x", "plain"}),
        ("xylophone", set()),
        ("", set(KEYWORD_TEXTS)),
    ],
)
def test_list_chunks_keyword_filter_is_a_literal_substring(
    make_index: Callable[[], SearchIndex], keywords: str, expected: set[str]
) -> None:
    ix = make_index()
    ix.upsert([chunk(cid, text, vec(1), doc="kw") for cid, text in KEYWORD_TEXTS.items()])
    ix.upsert([chunk("elsewhere", "Growth was 100% now.", vec(1), doc="other-doc")])
    total, page = listed(ix, "kw", keywords=keywords)
    assert set(page) == expected
    assert total == len(expected)


def test_list_chunks_by_chunk_id(book: SearchIndex) -> None:
    assert listed(book, "animals", chunk_id="dogs") == (1, ["dogs"])
    assert listed(book, "book", chunk_id="p10") == (1, ["p10"])
    assert listed(book, "space", chunk_id="dogs") == (0, [])  # not of that document
    assert listed(book, "animals", chunk_id="no-such-chunk") == (0, [])
    # With keywords both must hold.
    assert listed(book, "animals", chunk_id="dogs", keywords="LOYAL") == (1, ["dogs"])
    assert listed(book, "animals", chunk_id="dogs", keywords="purr") == (0, [])
    total, (found,) = book.list_chunks(
        TENANT, DS, "animals", keywords=None, chunk_id="cats", offset=0, limit=10
    )
    assert total == 1
    assert found.text == "Cats are small domesticated felines that purr and chase mice."
    assert dict(found.metadata) == {"topic": "animals", "year": 2020, "public": True}


def test_get_chunks_returns_the_stored_vectors(index: SearchIndex) -> None:
    wanted = ["tides", "cats", "missing", "cats"]
    got = index.get_chunks(TENANT, DS, wanted)
    assert set(got) == {"tides", "cats"}
    for original in corpus():
        if original.chunk_id not in got:
            continue
        c = got[original.chunk_id]
        assert (c.chunk_id, c.tenant, c.dataset_id, c.document_id, c.text) == (
            original.chunk_id,
            TENANT,
            DS,
            original.document_id,
            original.text,
        )
        assert dict(c.metadata) == dict(original.metadata)
        assert np.asarray(c.vector).dtype == np.float32
        np.testing.assert_allclose(c.vector, original.vector, rtol=0, atol=1e-6)
    assert index.get_chunks(TENANT, DS, []) == {}
    assert set(index.get_chunks(TENANT, DS, [c.chunk_id for c in corpus()])) == set(VECTORS)


def test_chunk_reads_and_deletes_are_scoped(index: SearchIndex) -> None:
    index.upsert(corpus(tenant="globex", prefix="g-"))
    index.upsert(corpus(dataset="other", prefix="o-"))
    # list
    assert listed(index, "animals") == (2, ["cats", "dogs"])
    assert listed(index, "animals", tenant="globex") == (2, ["g-cats", "g-dogs"])
    assert listed(index, "animals", dataset="other") == (2, ["o-cats", "o-dogs"])
    assert listed(index, "animals", tenant="nobody") == (0, [])
    assert listed(index, "animals", dataset="nowhere") == (0, [])
    assert listed(index, "animals", tenant="globex", chunk_id="cats") == (0, [])
    # get
    everyone = ["cats", "g-cats", "o-cats"]
    assert set(index.get_chunks(TENANT, DS, everyone)) == {"cats"}
    assert set(index.get_chunks("globex", DS, everyone)) == {"g-cats"}
    assert set(index.get_chunks(TENANT, "other", everyone)) == {"o-cats"}
    assert index.get_chunks("nobody", DS, everyone) == {}
    # delete
    assert index.delete_chunks("globex", DS, ["cats", "o-cats"]) == 0
    assert index.delete_chunks(TENANT, "other", ["cats", "g-cats"]) == 0
    assert index.delete_chunks("nobody", DS, everyone) == 0
    assert (index.count(TENANT, DS), index.count("globex", DS), index.count(TENANT, "other")) == (
        6,
        6,
        6,
    )
    assert index.delete_chunks(TENANT, DS, everyone) == 1
    assert set(index.get_chunks(TENANT, DS, everyone)) == set()
    assert set(index.get_chunks("globex", DS, everyone)) == {"g-cats"}
    assert set(index.get_chunks(TENANT, "other", everyone)) == {"o-cats"}
    assert (index.count(TENANT, DS), index.count("globex", DS), index.count(TENANT, "other")) == (
        5,
        6,
        6,
    )


def test_delete_chunks_removes_them_from_every_read(index: SearchIndex) -> None:
    survivors = {"dogs", "rockets", "bread", "tides"}
    assert index.delete_chunks(TENANT, DS, ["cats", "volcano", "missing", "cats"]) == 2
    assert index.count(TENANT, DS) == 4
    assert listed(index, "animals") == (1, ["dogs"])
    assert listed(index, "earth", keywords="lava") == (0, [])
    assert index.get_chunks(TENANT, DS, ["cats", "volcano"]) == {}
    for text in ("purr felines", "molten lava"):
        assert index.query(q(text, mode=RetrievalMode.KEYWORD)) == [], text
    for deleted in ("cats", "volcano"):
        # The deleted chunk's own vector no longer finds it, however few candidates.
        for candidates in (1, 100):
            hits = index.query(
                q(
                    vector=VECTORS[deleted],
                    mode=RetrievalMode.VECTOR,
                    top_k=6,
                    candidates=candidates,
                )
            )
            assert deleted not in ids(hits)
            assert len(hits) == min(candidates, 4)
    for mode in ALL_MODES:
        assert set(ids(index.query(any_mode_query(mode)))) == survivors, mode
    assert index.delete_chunks(TENANT, DS, ["cats", "volcano"]) == 0
    assert index.delete_chunks(TENANT, DS, []) == 0
    # Deleting every chunk empties the dataset, which can be filled again.
    assert index.delete_chunks(TENANT, DS, sorted(survivors)) == 4
    assert index.count(TENANT, DS) == 0
    for mode in ALL_MODES:
        assert index.query(any_mode_query(mode)) == [], mode
    index.upsert(corpus())
    assert ids(index.query(q(vector=VECTORS["cats"], mode=RetrievalMode.VECTOR, top_k=1))) == [
        "cats"
    ]


def test_upsert_edits_a_chunk_everywhere(book: SearchIndex) -> None:
    """An edit (upsert of the same id) replaces text, metadata and vector in every read."""
    new_vector = vec(1, axis=7)
    book.upsert([book_chunk("p1-a", 1, text="Quokkas edited this passage.")])
    book.upsert([replace_vector(book_chunk("p2", 2), new_vector)])
    # The position follows chunk_index, so an edit keeps it.
    assert listed(book, "book") == (8, BOOK_ORDER)
    assert book.count(TENANT, DS) == 14
    assert listed(book, "book", keywords="QUOKKAS") == (1, ["p1-a"])
    assert listed(book, "book", keywords="passage p1-a") == (0, [])
    assert ids(book.query(q("quokkas", mode=RetrievalMode.KEYWORD))) == ["p1-a"]
    # The old text ("Book passage p1-a.") is gone from the keyword side.
    assert ids(book.query(q("p1", mode=RetrievalMode.KEYWORD, top_k=10))) == ["p1-b"]
    got = book.get_chunks(TENANT, DS, ["p1-a", "p2"])
    assert got["p1-a"].text == "Quokkas edited this passage."
    np.testing.assert_allclose(got["p2"].vector, new_vector, rtol=0, atol=1e-6)
    hits = book.query(q(vector=new_vector, mode=RetrievalMode.VECTOR, top_k=1, candidates=1))
    assert ids(hits) == ["p2"]
    assert hits[0].vector_score == pytest.approx(1.0, abs=1e-5)
    # Metadata is replaced as a whole: without chunk_index the chunk moves behind the others.
    book.upsert([book_chunk("p0", None)])
    assert listed(book, "book")[1] == [*BOOK_ORDER[1:], "p0"]
    assert dict(book.get_chunks(TENANT, DS, ["p0"])["p0"].metadata) == {}
    # Moving a chunk to another document moves it between the lists.
    book.upsert([chunk("p10", "Now in the appendix.", vec(1, axis=2), doc="appendix")])
    assert "p10" not in listed(book, "book")[1]
    assert listed(book, "appendix") == (1, ["p10"])


def replace_vector(c: IndexedChunk, vector: np.ndarray) -> IndexedChunk:
    return IndexedChunk(
        c.chunk_id, c.tenant, c.dataset_id, c.document_id, c.text, vector, c.metadata
    )
