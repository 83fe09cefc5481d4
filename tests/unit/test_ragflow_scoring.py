"""RAGFlow-side scoring pieces without any model: term similarity, highlighting, citation
placement and the chunk-method -> strategy mapping."""

from __future__ import annotations

import numpy as np
import pytest

from pasture.domain.errors import Invalid
from pasture.services.citations import insert_citations
from pasture.services.dataset_search import highlight, term_similarities, terms
from pasture.services.tenant_datasets import (
    check_chunk_method,
    check_page,
    default_parser_config,
    strategy_for,
)


def bag_embed(texts: list[str]) -> np.ndarray:
    """Bag-of-words vectors: cosine is word overlap, so the expected citations are obvious."""
    vocab = sorted({w.strip(".!?,").lower() for t in texts for w in t.split()})
    m = np.array(
        [[[w.strip(".!?,").lower() for w in t.split()].count(v) for v in vocab] for t in texts],
        dtype=np.float32,
    )
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_terms_drop_stopwords_and_repeats() -> None:
    assert terms("How old is Quillon? How OLD!") == ["old", "quillon"]


def test_term_similarity_is_an_idf_weighted_share() -> None:
    texts = ["quillon is old", "quillon lives in lyon", "quillon likes cheese"]
    sims = term_similarities(["quillon", "old"], texts)
    # "quillon" is in every chunk, so it weighs less than the rare "old".
    assert sims[0] == pytest.approx(1.0)
    assert 0 < sims[1] == sims[2] < 0.5
    assert term_similarities([], texts) == [0.0, 0.0, 0.0]


def test_term_similarity_meets_inflections() -> None:
    assert term_similarities(["goats", "lives"], ["a goat that lived here"]) == [pytest.approx(1.0)]


def test_highlight_wraps_matching_words() -> None:
    assert highlight("Goats eat grass.", ["goat"]) == "<em>Goats</em> eat grass."
    assert highlight("nothing here", []) == "nothing here"


def test_citations_go_after_supported_sentences_only() -> None:
    chunks = ["Quillon is 27 years old and lives in Lyon", "Goats eat grass in the hills"]
    answer = "Quillon is 27 years old. Paris is large! Goats eat grass."
    text, cited = insert_citations(answer, chunks, bag_embed)
    assert text == "Quillon is 27 years old ##0$$. Paris is large! Goats eat grass ##1$$."
    assert cited == [0, 1]


def test_no_citations_without_chunks_or_support() -> None:
    assert insert_citations("Anything at all.", [], bag_embed) == ("Anything at all.", [])
    text, cited = insert_citations("Zebras run fast.", ["Quillon is old"], bag_embed)
    assert (text, cited) == ("Zebras run fast.", [])


def test_strategy_follows_chunk_method_and_parser_config() -> None:
    naive = strategy_for("naive", {"chunk_token_num": 64, "delimiter": "\\n!?"})
    cfg = naive.parsers[0].config
    assert cfg["chunk_size"] == 64 and cfg["chunk_overlap"] == 0
    # The stored backslash-n means a newline (RAGFlow's own bug split on the letter n).
    assert cfg["delimiters"][:3] == ["\n", "!", "?"] and "n" not in cfg["delimiters"]
    assert strategy_for("one", {}).parsers[0].config["chunk_size"] == 8192


def test_chunk_method_and_defaults() -> None:
    with pytest.raises(Invalid, match=r"'bad' is not in \['naive', 'manual'"):
        check_chunk_method("bad")
    assert default_parser_config("table") == {}
    assert default_parser_config("naive")["chunk_token_num"] == 128


@pytest.mark.parametrize(
    ("desc", "expected"), [(None, True), ("false", False), ("False", False), ("true", True)]
)
def test_desc_strings(desc: str | None, expected: bool) -> None:
    assert check_page(None, None, None, desc, 30).desc is expected


def test_bad_paging_is_refused() -> None:
    with pytest.raises(Invalid, match="page"):
        check_page("0", None, None, None, 30)
    with pytest.raises(Invalid, match=r"'name' is not in \['create_time'"):
        check_page(None, None, "name", None, 30)
