"""OpenSearchSearchIndex beyond the SearchIndex contract: the exact requests it sends (whole
bodies, compared for equality), read-after-write, paging limits, error translation, tenant
isolation, the client it builds, and the fake cluster's own semantics (BM25, analysis, refusal
of what it does not implement).

No OpenSearch server can run here: requests go through the real opensearch-py client into the
in-process fake of tests/helpers/opensearch_fake.py.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import opensearchpy
import pytest

from pasture.adapters.aws import opensearch_search_index as osi
from pasture.adapters.aws.opensearch_search_index import (
    OpenSearchSearchIndex,
    create_index,
    filter_token,
    opensearch_client,
    query_text,
    score_to_cosine,
)
from pasture.domain.errors import Invalid, Unavailable, Upstream
from pasture.domain.search import IndexedChunk, RetrievalMode, Scalar, SearchQuery
from tests.helpers.aws import _isolated_env
from tests.helpers.opensearch_fake import (
    FakeOpenSearch,
    Recorded,
    fake_opensearch_client,
    knn_score,
    norm_length,
    porter_stem,
    standard_tokenize,
)

DIM = 4
INDEX = "pasture-chunks"
TENANT = "acme"
DS = "handbook"
HOST = "opensearch.fake.invalid"


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(weights)] = weights
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


def the_id(tenant: str, chunk_id: str) -> str:
    """The `_id` format pinned independently of the adapter's helper."""
    return hashlib.sha256(f"{len(tenant)}:{tenant}{chunk_id}".encode()).hexdigest()


CORPUS = [
    chunk("cats", "Cats purr and chase mice.", unit(1, 0, 0, 0), doc="animals", topic="animals"),
    chunk("dogs", "Dogs guard the sheep.", unit(0, 1, 0, 0), doc="animals", topic="animals"),
    chunk("rockets", "Rockets burn kerosene.", unit(0, 0, 1, 0), doc="space", topic="space"),
]


@pytest.fixture
def cluster() -> tuple[OpenSearchSearchIndex, FakeOpenSearch]:
    client, fake = fake_opensearch_client()
    return OpenSearchSearchIndex(client, INDEX, dimension=DIM), fake


@pytest.fixture
def index(cluster: tuple[OpenSearchSearchIndex, FakeOpenSearch]) -> OpenSearchSearchIndex:
    return cluster[0]


@pytest.fixture
def fake(cluster: tuple[OpenSearchSearchIndex, FakeOpenSearch]) -> FakeOpenSearch:
    return cluster[1]


@pytest.fixture
def loaded(index: OpenSearchSearchIndex, fake: FakeOpenSearch) -> OpenSearchSearchIndex:
    index.upsert(CORPUS)
    fake.requests.clear()
    return index


def sent(fake: FakeOpenSearch) -> list[tuple[str, str, dict[str, str], Any]]:
    return [(r.method, r.path, r.params, r.body) for r in fake.requests]


def searches(fake: FakeOpenSearch) -> list[Any]:
    return [r.body for r in fake.calls("/_search")]


def query(text: str = "", vector: np.ndarray | None = None, **kw: Any) -> SearchQuery:
    return SearchQuery(tenant=TENANT, dataset_ids=(DS,), text=text, vector=vector, **kw)


SCOPE = [{"term": {"tenant": TENANT}}, {"terms": {"dataset_id": [DS]}}]

# --------------------------------------------------------------------------- the index

EXPECTED_INDEX_BODY = {
    "settings": {
        "index": {
            "number_of_shards": 1,
            "number_of_replicas": 1,
            "knn": True,
            "knn.algo_param.ef_search": 128,
            "max_result_window": 100_000,
        },
        "analysis": {
            "filter": {
                "pasture_possessive": {"type": "stemmer", "language": "possessive_english"},
                "pasture_stop": {"type": "stop", "stopwords": "_english_"},
            },
            "analyzer": {
                "pasture_text": {
                    "type": "custom",
                    "tokenizer": "standard",
                    "filter": [
                        "pasture_possessive",
                        "lowercase",
                        "asciifolding",
                        "pasture_stop",
                        "porter_stem",
                    ],
                }
            },
        },
    },
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "tenant": {"type": "keyword"},
            "dataset_id": {"type": "keyword"},
            "document_id": {"type": "keyword"},
            "chunk_id": {"type": "keyword"},
            "text": {
                "type": "text",
                "analyzer": "pasture_text",
                "fields": {"wildcard": {"type": "wildcard", "normalizer": "lowercase"}},
            },
            "vector": {
                "type": "knn_vector",
                "dimension": DIM,
                "method": {
                    "name": "hnsw",
                    "engine": "faiss",
                    "space_type": "innerproduct",
                    "parameters": {"m": 16, "ef_construction": 128},
                },
            },
            "metadata": {"type": "object", "enabled": False},
            "meta": {"type": "keyword"},
            "chunk_index": {"type": "double"},
            "seq": {"type": "long"},
        },
    },
}


def test_create_index_sends_the_mapping_once() -> None:
    client, fake = fake_opensearch_client()
    assert create_index(client, INDEX, DIM) is True
    assert sent(fake) == [
        ("HEAD", f"/{INDEX}", {}, None),
        ("PUT", f"/{INDEX}", {}, EXPECTED_INDEX_BODY),
    ]
    fake.requests.clear()
    assert create_index(client, INDEX, DIM) is False  # idempotent: only the existence check
    assert sent(fake) == [("HEAD", f"/{INDEX}", {}, None)]


def test_create_index_treats_a_concurrent_creation_as_done() -> None:
    client, fake = fake_opensearch_client()
    fake.fail(400, error_type="resource_already_exists_exception", method="PUT")
    assert create_index(client, INDEX, DIM) is False
    fake.fail(403, error_type="security_exception", method="PUT")
    with pytest.raises(Upstream):
        create_index(client, INDEX, DIM)


def test_first_write_creates_the_index_and_reads_before_it_are_empty(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    assert index.count(TENANT, DS) == 0
    assert index.query(query("cats", unit(1, 0, 0, 0))) == []
    assert index.list_chunks(
        TENANT, DS, "animals", keywords=None, chunk_id=None, offset=0, limit=10
    ) == (0, [])
    assert index.get_chunks(TENANT, DS, ["cats"]) == {}
    assert index.delete_dataset(TENANT, DS) == 0
    assert not fake.indices  # reads never create anything
    index.upsert(CORPUS[:1])
    index.upsert(CORPUS[1:])
    methods = [(r.method, r.path) for r in fake.requests if r.method in ("HEAD", "PUT")]
    assert methods == [("HEAD", f"/{INDEX}"), ("PUT", f"/{INDEX}")]  # once per process
    assert index.count(TENANT, DS) == 3


# --------------------------------------------------------------------------- writes


def test_bulk_upsert_body(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osi, "_SEQ", osi._Seq())
    monkeypatch.setattr(osi, "_now_ns", lambda: 1_000)
    index.upsert(
        [
            chunk("a", "First text.", unit(1, 0, 0, 0), doc="d", chunk_index=3, year=2021.0),
            chunk("b", "Second text.", unit(1, 1, 1, 1), doc="d", topic="x", ok=True),
            chunk("a", "First text, edited.", unit(1, 0, 0, 0), doc="d", chunk_index=3),
        ]
    )
    (bulk,) = fake.calls("/_bulk")
    assert (bulk.method, bulk.path, bulk.params) == (
        "POST",
        f"/{INDEX}/_bulk",
        {"refresh": "wait_for"},
    )
    assert bulk.body == [
        {"index": {"_id": the_id(TENANT, "a")}},
        {
            "tenant": TENANT,
            "dataset_id": DS,
            "document_id": "d",
            "chunk_id": "a",
            "text": "First text, edited.",
            "vector": [1.0, 0.0, 0.0, 0.0],
            "metadata": {"chunk_index": 3},
            "meta": ['["chunk_index",3]'],
            "chunk_index": 3,
        },
        {"index": {"_id": the_id(TENANT, "b")}},
        {
            "tenant": TENANT,
            "dataset_id": DS,
            "document_id": "d",
            "chunk_id": "b",
            "text": "Second text.",
            "vector": [0.5, 0.5, 0.5, 0.5],
            "metadata": {"topic": "x", "ok": True},
            "meta": ['["topic","x"]', '["ok",true]'],
            "seq": 1_001,  # stamps follow the batch's order; a numeric chunk_index needs none
        },
    ]


def test_bulk_is_chunked_by_count_and_bytes(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osi, "BULK_MAX_DOCS", 2)
    index.upsert([chunk(f"c{i}", f"text {i}", unit(1, i)) for i in range(5)])
    bulks = fake.calls("/_bulk")
    assert [len(b.body) // 2 for b in bulks] == [2, 2, 1]
    assert all(b.params == {"refresh": "wait_for"} for b in bulks)  # every request waits
    fake.requests.clear()
    monkeypatch.setattr(osi, "BULK_MAX_DOCS", 500)
    monkeypatch.setattr(osi, "BULK_MAX_BYTES", 1)  # one chunk per request, never zero
    index.upsert([chunk(f"c{i}", f"text {i}", unit(1, i)) for i in range(3)])
    assert [len(b.body) // 2 for b in fake.calls("/_bulk")] == [1, 1, 1]
    assert index.count(TENANT, DS) == 5


def test_upsert_checks_vectors(index: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    with pytest.raises(Invalid, match="3-dim vector"):
        index.upsert([chunk("x", "t", np.ones(3, dtype=np.float32))])
    with pytest.raises(Invalid, match="non-finite"):
        index.upsert([chunk("x", "t", np.array([np.nan, 0, 0, 1], dtype=np.float32))])
    assert not fake.calls("/_bulk")
    # A vector that is not unit length is stored normalised: the inner product stays a cosine.
    index.upsert([chunk("x", "t", np.array([3, 4, 0, 0], dtype=np.float32))])
    vector = index.get_chunks(TENANT, DS, ["x"])["x"].vector
    np.testing.assert_allclose(vector, [0.6, 0.8, 0, 0], atol=1e-7)


def test_vectors_round_trip_bit_exactly(index: OpenSearchSearchIndex) -> None:
    rng = np.random.default_rng(3)
    vectors = [unit(*rng.standard_normal(DIM)) for _ in range(20)]
    index.upsert([chunk(f"v{i}", "t", v) for i, v in enumerate(vectors)])
    got = index.get_chunks(TENANT, DS, [f"v{i}" for i in range(20)])
    for i, v in enumerate(vectors):
        assert got[f"v{i}"].vector.dtype == np.float32
        assert got[f"v{i}"].vector.tobytes() == v.tobytes()


def test_writes_are_searchable_only_because_they_ask_for_a_refresh(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    """The fake hides unrefreshed writes, as OpenSearch does: a bulk without `refresh` is
    invisible to search (but not to `_mget`), so the contract suite passing on the fake shows
    the adapter's writes ask for read-after-write."""
    index.upsert(CORPUS[:1])
    client = index._client
    client.bulk(
        index=INDEX,
        body=[
            {"index": {"_id": "raw"}},
            {**fake.documents(INDEX)[the_id(TENANT, "cats")], "chunk_id": "raw"},
        ],
    )
    assert index.count(TENANT, DS) == 1
    assert client.mget(index=INDEX, body={"ids": ["raw"]})["docs"][0]["found"] is True
    fake.refresh()
    assert index.count(TENANT, DS) == 2


# --------------------------------------------------------------------------- queries


def test_keyword_candidate_and_load_bodies(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    hits = loaded.query(query("Chase, MICE; chase!", mode=RetrievalMode.KEYWORD))
    assert [h.chunk_id for h in hits] == ["cats"]
    candidates, load = searches(fake)
    assert candidates == {
        "size": 100,
        "track_total_hits": False,
        "_source": False,
        "docvalue_fields": ["chunk_id"],
        "query": {
            "bool": {
                "must": [{"match": {"text": {"query": "Chase MICE"}}}],
                "filter": SCOPE,
            }
        },
    }
    assert load == {
        "size": 1,
        "track_total_hits": False,
        "_source": ["chunk_id", "dataset_id", "document_id", "text", "metadata"],
        "query": {"bool": {"filter": [*SCOPE, {"ids": {"values": [the_id(TENANT, "cats")]}}]}},
    }


def test_knn_candidate_body_filters_inside_the_knn_clause(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    q = query(
        vector=np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32),
        mode=RetrievalMode.VECTOR,
        candidates=7,
        document_ids=("animals", "space", "animals"),
        metadata_filters={"topic": ["animals", "space"], "year": 2021.0},
    )
    assert loaded.query(q) == []  # no chunk has a year
    (knn, *rest) = searches(fake)
    assert rest == []  # no candidates: nothing to load
    assert knn == {
        "size": 7,
        "track_total_hits": False,
        "_source": False,
        "docvalue_fields": ["chunk_id"],
        "query": {
            "knn": {
                "vector": {
                    "vector": [0.5, 0.5, 0.5, 0.5],
                    "k": 7,
                    "filter": {
                        "bool": {
                            "filter": [
                                *SCOPE,
                                {"terms": {"document_id": ["animals", "space"]}},
                                {"terms": {"meta": ['["topic","animals"]', '["topic","space"]']}},
                                {"terms": {"meta": ['["year",2021]']}},
                            ]
                        }
                    },
                }
            }
        },
    }


def test_score_for_ids_bodies(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    """One candidate from each side; each side then scores the other side's candidate."""
    q = query("purr", unit(0, 0, 1, 0), candidates=1, top_k=5)
    hits = {h.chunk_id: h for h in loaded.query(q)}
    assert set(hits) == {"cats", "rockets"}
    assert hits["rockets"].keyword_score == 0.0
    assert hits["cats"].vector_score == 0.0  # orthogonal
    assert hits["rockets"].vector_score == pytest.approx(1.0, abs=1e-6)
    kw, knn, kw_scores, vec_scores, load = searches(fake)
    assert kw["query"]["bool"]["must"] == [{"match": {"text": {"query": "purr"}}}]
    assert knn["query"]["knn"]["vector"]["k"] == 1
    assert kw_scores == {
        "size": 1,
        "track_total_hits": False,
        "_source": False,
        "docvalue_fields": ["chunk_id"],
        "query": {
            "bool": {
                "must": [{"match": {"text": {"query": "purr"}}}],
                "filter": [*SCOPE, {"ids": {"values": [the_id(TENANT, "rockets")]}}],
            }
        },
    }
    assert vec_scores == {
        "size": 1,
        "track_total_hits": False,
        "_source": False,
        "docvalue_fields": ["chunk_id"],
        "query": {
            "knn": {
                "vector": {
                    "vector": [0.0, 0.0, 1.0, 0.0],
                    "k": 1,
                    "filter": {
                        "bool": {"filter": [*SCOPE, {"ids": {"values": [the_id(TENANT, "cats")]}}]}
                    },
                }
            }
        },
    }
    assert load["_source"] == ["chunk_id", "dataset_id", "document_id", "text", "metadata"]


def test_negative_cosines_survive_the_score_conversion(
    loaded: OpenSearchSearchIndex,
) -> None:
    for p in (-1.0, -0.5, -1e-3, 0.0, 1e-3, 0.25, 1.0):
        assert score_to_cosine(knn_score(p)) == pytest.approx(p, abs=1e-12)
    scores = loaded._vector_scores(query(vector=unit(-1, 1, 0, 0)), ["cats", "dogs", "rockets"])
    assert scores == pytest.approx(
        {"cats": -math.sqrt(0.5), "dogs": math.sqrt(0.5), "rockets": 0.0}, abs=1e-6
    )


def test_query_text_is_bounded_and_plain() -> None:
    assert query_text("text:cats NEAR(dogs) it's C++ ___ !!") == "text cats NEAR dogs it's C"
    assert query_text("?!") is None
    words = " ".join(f"w{i}" for i in range(200))
    assert query_text(words) == " ".join(f"w{i}" for i in range(osi.MAX_QUERY_TERMS))
    assert query_text("Cats cats CATS dogs") == "Cats dogs"


def test_empty_filter_value_list_asks_nothing(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    q = query("cats", unit(1, 0, 0, 0), metadata_filters={"topic": []})
    assert loaded.query(q) == []
    assert fake.requests == []


def test_filter_tokens_keep_types_apart() -> None:
    assert filter_token("year", 2021) == filter_token("year", 2021.0) == '["year",2021]'
    assert filter_token("year", "2021") == '["year","2021"]'
    assert filter_token("flag", True) == '["flag",true]' != filter_token("flag", 1)
    assert filter_token("ratio", 0.5) == '["ratio",0.5]'
    long = filter_token("k", "x" * 1000)
    assert long.startswith("#") and len(long) == 65


# --------------------------------------------------------------------------- list_chunks

LIST_SORT = [
    {"chunk_index": {"order": "asc", "missing": "_last"}},
    {"seq": {"order": "asc", "missing": "_first"}},
    {"chunk_id": {"order": "asc"}},
]


def test_list_chunks_body(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    total, page = loaded.list_chunks(
        TENANT, DS, "animals", keywords=None, chunk_id=None, offset=1, limit=1
    )
    assert (total, [c.chunk_id for c in page]) == (2, ["dogs"])
    assert page[0].vector.shape == (0,)
    (body,) = searches(fake)
    assert body == {
        "from": 1,
        "size": 1,
        "track_total_hits": True,
        "_source": ["chunk_id", "text", "metadata"],
        "query": {
            "bool": {
                "filter": [
                    {"term": {"tenant": TENANT}},
                    {"term": {"dataset_id": DS}},
                    {"term": {"document_id": "animals"}},
                ]
            }
        },
        "sort": LIST_SORT,
    }


def test_list_chunks_keywords_are_an_escaped_lowercase_wildcard(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    index.upsert(
        [
            chunk("hit", "Weird: 100%_*?\\Xy end", unit(1), doc="d"),
            chunk("miss", "Weird: 100%_ab\\Xy end", unit(1), doc="d"),
        ]
    )
    fake.requests.clear()
    total, page = index.list_chunks(
        TENANT, DS, "d", keywords="100%_*?\\XY", chunk_id="hit", offset=0, limit=5
    )
    assert (total, [c.chunk_id for c in page]) == (1, ["hit"])
    (body,) = searches(fake)
    assert body["query"] == {
        "bool": {
            "filter": [
                {"term": {"tenant": TENANT}},
                {"term": {"dataset_id": DS}},
                {"term": {"document_id": "d"}},
                {"term": {"chunk_id": "hit"}},
                {"wildcard": {"text.wildcard": {"value": "*100%_\\*\\?\\\\xy*"}}},
            ]
        }
    }
    # Unescaped, `*` and `?` would have matched "ab" in the other chunk.
    assert (
        index.list_chunks(TENANT, DS, "d", keywords="_*?\\x", chunk_id=None, offset=0, limit=5)[0]
        == 1
    )


def test_list_chunks_paging_stops_at_the_result_window(
    index: OpenSearchSearchIndex, fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osi, "MAX_RESULT_WINDOW", 5)  # before the index exists: its setting too
    index.upsert([chunk(f"p{i}", "t", unit(1), doc="d", chunk_index=i) for i in range(8)])
    assert fake.indices[INDEX].settings["index.max_result_window"] == 5

    def page(offset: int, limit: int) -> tuple[int, list[str]]:
        total, chunks = index.list_chunks(
            TENANT, DS, "d", keywords=None, chunk_id=None, offset=offset, limit=limit
        )
        return total, [c.chunk_id for c in chunks]

    assert page(0, 5) == (8, [f"p{i}" for i in range(5)])
    assert page(2, 3) == (8, ["p2", "p3", "p4"])
    assert page(8, 3) == (8, [])
    assert page(100, 3) == (8, [])  # past the end: no error, however far
    assert page(0, 0) == (8, [])
    for offset, limit in ((3, 3), (5, 1), (6, 2)):
        with pytest.raises(Invalid, match="first 5 chunks"):
            page(offset, limit)
    # Never asks the server for more than the window.
    assert all(b["from"] + b["size"] <= 5 for b in searches(fake))


# --------------------------------------------------------------------------- deletes and reads


def test_delete_bodies(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    assert loaded.delete_chunks(TENANT, DS, ["cats", "nope", "cats"]) == 1
    assert loaded.delete_document(TENANT, DS, "animals") == 1
    assert loaded.delete_dataset(TENANT, DS) == 1
    params = {"refresh": "true", "conflicts": "proceed"}
    path = f"/{INDEX}/_delete_by_query"
    assert sent(fake) == [
        (
            "POST",
            path,
            params,
            {
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"tenant": TENANT}},
                            {"term": {"dataset_id": DS}},
                            {"ids": {"values": [the_id(TENANT, "cats"), the_id(TENANT, "nope")]}},
                        ]
                    }
                }
            },
        ),
        (
            "POST",
            path,
            params,
            {
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"tenant": TENANT}},
                            {"term": {"dataset_id": DS}},
                            {"term": {"document_id": "animals"}},
                        ]
                    }
                }
            },
        ),
        (
            "POST",
            path,
            params,
            {
                "query": {
                    "bool": {"filter": [{"term": {"tenant": TENANT}}, {"term": {"dataset_id": DS}}]}
                }
            },
        ),
    ]
    assert loaded.count(TENANT, DS) == 0


def test_count_and_get_bodies(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    assert loaded.count(TENANT, DS) == 3
    got = loaded.get_chunks(TENANT, DS, ["dogs", "cats", "dogs"])
    assert set(got) == {"dogs", "cats"}
    assert dict(got["dogs"].metadata) == {"topic": "animals"}
    assert sent(fake) == [
        (
            "POST",
            f"/{INDEX}/_count",
            {},
            {
                "query": {
                    "bool": {"filter": [{"term": {"tenant": TENANT}}, {"term": {"dataset_id": DS}}]}
                }
            },
        ),
        ("POST", f"/{INDEX}/_mget", {}, {"ids": [the_id(TENANT, "dogs"), the_id(TENANT, "cats")]}),
    ]


def test_conflicting_rewrites_during_a_delete_are_kept(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    # A write not yet refreshed is a newer version than the one delete_by_query saw.
    loaded._client.bulk(
        index=INDEX,
        body=[
            {"index": {"_id": the_id(TENANT, "cats")}},
            fake.documents(INDEX)[the_id(TENANT, "cats")],
        ],
    )
    assert loaded.delete_document(TENANT, DS, "animals") == 1
    assert set(loaded.get_chunks(TENANT, DS, ["cats", "dogs"])) == {"cats"}


# --------------------------------------------------------------------------- tenants


def test_tenant_isolation_in_every_method(index: OpenSearchSearchIndex) -> None:
    index.upsert(CORPUS)
    # The other tenant uses the same dataset name and the same chunk ids.
    other = [
        IndexedChunk(
            c.chunk_id, "globex", c.dataset_id, c.document_id, "Globex " + c.text, c.vector, {}
        )
        for c in CORPUS
    ]
    index.upsert(other)
    assert index.count(TENANT, DS) == index.count("globex", DS) == 3
    assert index.get_chunks(TENANT, DS, ["cats"])["cats"].text == CORPUS[0].text  # not overwritten
    everything = {"text": "cats dogs rockets globex", "vector": np.ones(DIM, dtype=np.float32) / 2}
    for mode in RetrievalMode:
        hits = index.query(query(mode=mode, top_k=50, **everything))
        assert len(hits) == 3 and all(not h.text.startswith("Globex") for h in hits), mode
        nobody = SearchQuery(tenant="nobody", dataset_ids=(DS,), mode=mode, top_k=50, **everything)
        assert index.query(nobody) == [], mode
    assert index._keyword_scores(query("globex"), ["cats"]) == {"cats": 0.0}
    assert (
        index._load(SearchQuery(tenant="nobody", dataset_ids=(DS,), text="", vector=None), ["cats"])
        == {}
    )
    assert (
        index._vector_scores(
            SearchQuery(tenant="nobody", dataset_ids=(DS,), text="", vector=unit(1)), ["cats"]
        )
        == {}
    )
    total, page = index.list_chunks(
        "globex", DS, "animals", keywords="globex", chunk_id=None, offset=0, limit=10
    )
    assert (total, {c.tenant for c in page}) == (2, {"globex"})
    assert index.list_chunks(
        "nobody", DS, "animals", keywords=None, chunk_id=None, offset=0, limit=10
    ) == (0, [])
    assert index.get_chunks("nobody", DS, ["cats"]) == {}
    assert index.delete_chunks("nobody", DS, ["cats"]) == 0
    assert index.delete_document("nobody", DS, "animals") == 0
    assert index.delete_dataset("nobody", DS) == 0
    assert index.delete_dataset("globex", DS) == 3
    assert index.count(TENANT, DS) == 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error_type", "error", "attempts"),
    [
        (429, "es_rejected_execution_exception", Unavailable, 1),  # no immediate retry
        (503, "unavailable", Unavailable, 3),  # retried twice, then given up
        (502, "", Unavailable, 3),
        (500, "internal_server_error", Upstream, 1),
        (403, "security_exception", Upstream, 1),
        (400, "search_phase_execution_exception", Invalid, 1),
    ],
)
def test_http_errors_are_translated(
    loaded: OpenSearchSearchIndex,
    fake: FakeOpenSearch,
    status: int,
    error_type: str,
    error: type[Exception],
    attempts: int,
) -> None:
    fake.fail(status, error_type=error_type, times=5, path="/_count")
    with pytest.raises(error) as info:
        loaded.count(TENANT, DS)
    assert len(fake.calls("/_count")) == attempts
    message = str(info.value)
    assert str(status) in message
    assert HOST not in message and INDEX not in message


def test_a_retried_503_succeeds(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    fake.fail(503, times=2, path="/_search")
    assert [h.chunk_id for h in loaded.query(query("kerosene"))] == ["rockets"]
    assert len(fake.calls("/_search")) == 4  # 2 failed + candidates + load


@pytest.mark.parametrize(("timeout", "attempts"), [(False, 3), (True, 1)])
def test_connection_failures_are_unavailable(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch, timeout: bool, attempts: int
) -> None:
    fake.fail_connection(times=5, timeout=timeout)
    with pytest.raises(Unavailable) as info:
        loaded.upsert(CORPUS[:1])
    assert len(fake.requests) == attempts
    assert HOST not in str(info.value)


@pytest.mark.parametrize(
    ("status", "error_type", "error"),
    [
        (429, "es_rejected_execution_exception", Unavailable),
        (400, "mapper_parsing_exception", Invalid),
        (500, "engine_exception", Upstream),
    ],
)
def test_bulk_item_failures_fail_the_upsert(
    loaded: OpenSearchSearchIndex,
    fake: FakeOpenSearch,
    status: int,
    error_type: str,
    error: type[Exception],
) -> None:
    fake.fail_items(1, status=status, error_type=error_type)
    with pytest.raises(error, match=f"1 of 3 chunks failed \\({error_type}\\)"):
        loaded.upsert(CORPUS)
    loaded.upsert(CORPUS)  # a retry repairs it
    assert loaded.count(TENANT, DS) == 3


def test_a_missing_index_during_a_write_is_not_hidden(
    loaded: OpenSearchSearchIndex, fake: FakeOpenSearch
) -> None:
    del fake.indices[INDEX]  # deleted behind the process's back
    with pytest.raises(Upstream, match="404 index_not_found_exception"):
        loaded.upsert(CORPUS)


# --------------------------------------------------------------------------- the client


@pytest.fixture
def aws_env() -> Iterator[None]:
    with mock.patch.dict(os.environ, _isolated_env(), clear=True):
        yield


@pytest.mark.parametrize("service", ["es", "aoss"])
def test_signed_client(aws_env: None, service: Any) -> None:
    import requests

    client = opensearch_client(
        "search-x.eu-west-1.es.amazonaws.com", region="eu-west-1", auth=service, timeout=7.5
    )
    transport = client.transport
    assert (transport.max_retries, transport.retry_on_status, transport.retry_on_timeout) == (
        2,
        (502, 503, 504),
        False,
    )
    (conn,) = transport.connection_pool.connections
    assert isinstance(conn, opensearchpy.RequestsHttpConnection)
    assert conn.host == "https://search-x.eu-west-1.es.amazonaws.com:443"
    assert conn.use_ssl and conn.session.verify is not False and conn.timeout == 7.5
    assert isinstance(conn.session.auth, opensearchpy.AWSV4SignerAuth)
    assert conn.session.auth.service == service
    prepared = requests.Request("GET", f"{conn.host}/x/_search", data=b"{}").prepare()
    signed = conn.session.auth(prepared)
    assert (
        signed.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
        and f"/eu-west-1/{service}/aws4_request" in signed.headers["Authorization"]
    )


def test_client_region_comes_from_the_session_when_not_given(aws_env: None) -> None:
    client = opensearch_client("https://h.example", region=None, auth="es", timeout=1)
    (conn,) = client.transport.connection_pool.connections
    prepared = conn.session.auth(
        __import__("requests").Request("GET", "https://h.example/").prepare()
    )
    assert "/us-east-1/es/aws4_request" in prepared.headers["Authorization"]


def test_unsigned_client_and_refusals(aws_env: None) -> None:
    client = opensearch_client("http://127.0.0.1:9200/prefix", region=None, auth="none", timeout=3)
    (conn,) = client.transport.connection_pool.connections
    assert conn.host == "http://127.0.0.1:9200" and conn.url_prefix == "/prefix"
    assert conn.session.auth is None
    with pytest.raises(Invalid, match="https"):
        opensearch_client("http://h.example", region="eu-west-1", auth="es", timeout=1)
    with pytest.raises(Invalid):
        opensearch_client("ftp://h.example", region="eu-west-1", auth="none", timeout=1)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(key)
    with pytest.raises(Unavailable, match="credentials"):
        opensearch_client("h.example", region="eu-west-1", auth="es", timeout=1)


def test_client_without_any_region(aws_env: None) -> None:
    os.environ.pop("AWS_REGION")
    os.environ.pop("AWS_DEFAULT_REGION")
    with pytest.raises(Unavailable, match="region"):
        opensearch_client("h.example", region=None, auth="es", timeout=1)


# --------------------------------------------------------------------------- the fake itself


def test_fake_refuses_what_it_does_not_implement(loaded: OpenSearchSearchIndex) -> None:
    client = loaded._client
    bad_searches = [
        {"query": {"match_all": {}}},
        {"query": {"bool": {"should": [{"term": {"tenant": "x"}}]}}},
        {"query": {"term": {"tenant": {"value": "x"}}}},
        {"query": {"term": {"text": "x"}}},  # a text field
        {"query": {"match": {"text": {"query": "x", "operator": "and"}}}},
        {"query": {"wildcard": {"text.wildcard": {"value": "*x*", "case_insensitive": True}}}},
        {"query": {"knn": {"vector": {"vector": [1, 0, 0, 0], "k": 1, "method_parameters": {}}}}},
        {"query": {"knn": {"vector": {"vector": [1, 0, 0], "k": 1}}}},
        {"post_filter": {"term": {"tenant": "x"}}},
        {"sort": [{"text": {"order": "asc"}}]},
        {"sort": ["_score"]},
        {"_source": {"includes": ["text"]}},
        {"size": 100_001},
    ]
    for body in bad_searches:
        with pytest.raises(opensearchpy.RequestError) as info:
            client.search(index=INDEX, body=body)
        assert info.value.status_code == 400, body
    with pytest.raises(opensearchpy.RequestError, match="fake_not_implemented"):
        client.search(index=INDEX, body={"query": {"match_all": {}}}, params={"routing": "x"})
    with pytest.raises(opensearchpy.RequestError, match="does not implement PUT"):
        client.index(index=INDEX, id="x", body={"text": "x"})  # an endpoint the adapter never uses


def test_fake_bulk_checks_documents_against_the_mapping(loaded: OpenSearchSearchIndex) -> None:
    resp = loaded._client.bulk(
        index=INDEX,
        body=[
            {"index": {"_id": "a"}},
            {"vector": [1, 2, 3]},
            {"index": {"_id": "b"}},
            {"unknown": "x"},
            {"index": {"_id": "c"}},
            {"seq": 1.5},
        ],
    )
    assert resp["errors"] is True
    assert [i["index"]["error"]["type"] for i in resp["items"]] == [
        "mapper_parsing_exception",
        "strict_dynamic_mapping_exception",
        "mapper_parsing_exception",
    ]


def test_fake_bm25_is_lucenes() -> None:
    client, _fake = fake_opensearch_client()
    create_index(client, INDEX, DIM)
    texts = {"a": "apple apple banana", "b": "banana cherry", "c": "cherry cherry cherry date"}
    body = []
    for i, t in texts.items():
        body += [{"index": {"_id": i}}, {"text": t}]
    client.bulk(index=INDEX, body=body, refresh="true")
    resp = client.search(
        index=INDEX, body={"query": {"match": {"text": {"query": "apple cherry"}}}}
    )
    got = {h["_id"]: h["_score"] for h in resp["hits"]["hits"]}
    n, avgdl = 3, (3 + 2 + 4) / 3

    def bm25(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    assert got == pytest.approx(
        {"a": bm25(2, 1, 3), "b": bm25(1, 2, 2), "c": bm25(3, 2, 4)}, rel=1e-6
    )
    assert [h["_id"] for h in resp["hits"]["hits"]] == sorted(got, key=lambda i: -got[i])
    assert [norm_length(i) for i in range(24)] == list(range(24))
    assert norm_length(1000) != 1000 and abs(norm_length(1000) - 1000) < 1000 / 8


def test_fake_analysis() -> None:
    assert standard_tokenize("p1-b dir\\sub it's U.S.A. 100% 3.14 1,000 snake_case text:cats 中文 ___") == [
        "p1", "b", "dir", "sub", "it's", "U.S.A", "100", "3.14", "1,000", "snake_case",
        "text:cats", "中", "文",
    ]  # fmt: skip
    stems = {
        "caresses": "caress",
        "ponies": "poni",
        "cats": "cat",
        "agreed": "agre",
        "hopping": "hop",
        "filing": "file",
        "happy": "happi",
        "relational": "relat",
        "generalization": "gener",
        "electrical": "electr",
        "adjustable": "adjust",
        "controlling": "control",
        "volcanoes": "volcano",
        "erupting": "erupt",
        "is": "is",
    }
    assert {w: porter_stem(w) for w in stems} == stems


def test_recorded_requests_are_parsed(loaded: OpenSearchSearchIndex, fake: FakeOpenSearch) -> None:
    loaded.count(TENANT, DS)
    (r,) = fake.requests
    assert isinstance(r, Recorded) and isinstance(r.body, dict) and r.params == {}
