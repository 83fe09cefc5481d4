"""LlamaFarm RAG API: query (every documented field) and health."""

from __future__ import annotations

import pytest

from tests.helpers.llamafarm import LF, uniq

DOCS = {
    "volcano.txt": b"Volcanoes erupt when magma rises through the crust. Lava flows can reach 1200 degrees.",
    "ocean.txt": b"The Pacific is the largest ocean. Coral reefs grow in warm shallow water.",
    "space.md": b"# Mars\n\nMars has two moons named Phobos and Deimos. Its red colour comes from iron oxide.",
}


@pytest.fixture(scope="module")
def corpus(client, api_keys):  # type: ignore[no-untyped-def]
    lf = LF(client, {"X-Api-Key": api_keys["alice"]})
    ns, p, ds = lf.project_with_dataset()
    for name, data in DOCS.items():
        lf.upload(ns, p, ds, name, data)
    assert lf.process(ns, p, ds).json()["processed_files"] == 3
    return ns, p


def test_query_finds_the_right_document(alice: LF, corpus: tuple[str, str]) -> None:
    ns, p = corpus
    r = alice.query(ns, p, query="What are the moons of Mars called?", top_k=2)
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "What are the moons of Mars called?"
    assert body["retrieval_strategy_used"] == "hybrid" and body["database_used"] == "main_db"
    assert body["total_results"] == len(body["results"]) == 2
    top = body["results"][0]
    assert top["metadata"]["filename"] == "space.md" and "Phobos" in top["content"]
    assert set(top) >= {
        "content",
        "score",
        "metadata",
        "chunk_id",
        "document_id",
        "keyword_score",
        "vector_score",
    }
    assert top["score"] == pytest.approx(
        0.5 * top["vector_score"] + 0.5 * top["keyword_score"], abs=1e-5
    )
    assert body["processing_time_ms"] > 0


@pytest.mark.parametrize("strategy", ["vector", "keyword", "hybrid", "bm25", "semantic"])
def test_each_strategy_ranks_the_right_document_first(
    alice: LF, corpus: tuple[str, str], strategy: str
) -> None:
    ns, p = corpus
    body = alice.query(
        ns, p, query="coral reefs in the Pacific ocean", retrieval_strategy=strategy
    ).json()
    assert body["results"][0]["metadata"]["filename"] == "ocean.txt"


def test_threshold_alpha_filters_and_max_tokens(alice: LF, corpus: tuple[str, str]) -> None:
    ns, p = corpus
    all_hits = alice.query(ns, p, query="magma lava volcano", top_k=10).json()["results"]
    assert len(all_hits) == 3
    high = alice.query(
        ns, p, query="magma lava volcano", top_k=10, score_threshold=all_hits[0]["score"] - 1e-6
    ).json()
    assert [h["chunk_id"] for h in high["results"]] == [all_hits[0]["chunk_id"]]
    vec_only = alice.query(ns, p, query="magma lava volcano", hybrid_alpha=1.0).json()["results"][0]
    assert vec_only["score"] == pytest.approx(vec_only["vector_score"], abs=1e-5)
    filtered = alice.query(
        ns, p, query="magma lava volcano", metadata_filters={"filename": "ocean.txt"}
    ).json()
    assert {h["metadata"]["filename"] for h in filtered["results"]} == {"ocean.txt"}
    any_of = alice.query(
        ns, p, query="magma", metadata_filters={"filename": ["ocean.txt", "space.md"]}
    ).json()
    assert {h["metadata"]["filename"] for h in any_of["results"]} == {"ocean.txt", "space.md"}
    limited = alice.query(ns, p, query="magma lava volcano", top_k=10, max_tokens=1).json()
    assert len(limited["results"]) == 1  # the first hit always fits; nothing past the budget


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"retrieval_strategy": "quantum"}, "retrieval_strategy"),
        ({"rerank_model": "bge-reranker"}, "rerank_model"),
        ({"query_expansion": True}, "query_expansion"),
        ({"distance_metric": "euclidean"}, "distance_metric"),
        ({"hybrid_alpha": 1.5}, "hybrid_alpha"),
        ({"score_threshold": 7}, "score_threshold"),
        ({"top_k": 0}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"metadata_filters": {"filename": []}}, "metadata_filters"),
    ],
)
def test_unsupported_options_are_reported(
    alice: LF, corpus: tuple[str, str], body: dict, needle: str
) -> None:
    ns, p = corpus
    r = alice.query(ns, p, query="lava", **body)
    assert r.status_code == 400 and needle in r.json()["detail"]


def test_query_validation_and_not_found(alice: LF, corpus: tuple[str, str]) -> None:
    ns, p = corpus
    assert alice.query(ns, p, query="   ").status_code == 400
    r = alice.query(ns, p, query="lava", surprise_option=1)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
    assert alice.query(ns, p).status_code == 422
    r = alice.query(ns, p, query="lava", database="ghost_db")
    assert r.status_code == 404 and "ghost_db" in r.json()["detail"]
    assert alice.query(ns, "ghost", query="lava").status_code == 404


def test_hostile_query_text_is_safe(alice: LF, corpus: tuple[str, str]) -> None:
    ns, p = corpus
    for q in ['"AND OR (', "NEAR(a b)", "*", "col:value", "'; DROP TABLE chunks; --", "ünïcödé ✓"]:
        assert alice.query(ns, p, query=q).status_code == 200


def test_empty_database_returns_no_results(alice: LF) -> None:
    ns, p = uniq("ns"), uniq("p")
    alice.create_project(ns, p)
    body = alice.query(ns, p, query="anything").json()
    assert body["results"] == [] and body["total_results"] == 0


def test_rag_health(alice: LF, corpus: tuple[str, str]) -> None:
    ns, p = corpus
    r = alice.req("GET", f"/v1/projects/{ns}/{p}/rag/health")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "healthy" and body["database"] == "main_db"
    assert set(body["components"]) == {"vector_store", "embeddings"}
    assert body["components"]["vector_store"]["message"].startswith("3 chunks")
    assert body["issues"] is None and body["last_check"].endswith("Z")
    r = alice.req("GET", f"/v1/projects/{ns}/{p}/rag/health", params={"database": "ghost"})
    assert r.status_code == 404
