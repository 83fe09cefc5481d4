"""Contract of the Tokenizer port: every adapter must pass this suite.

Chunking relies on it: spans index into the original text, come in order, carry no special
tokens and are never truncated. Add an adapter by appending a factory to `TOKENIZERS`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pasture.domain.errors import Unavailable
from pasture.ports import Tokenizer
from tests.helpers.concurrency import run_together


def _hf_minilm() -> Tokenizer:
    pytest.importorskip("tokenizers")
    from pasture.adapters.local.hf_tokenizer import HuggingFaceTokenizer
    from pasture.adapters.local.model_files import minilm_dir

    try:
        return HuggingFaceTokenizer(minilm_dir() / "tokenizer.json")
    except Unavailable as e:
        pytest.skip(e.message)


TOKENIZERS: list[object] = [
    pytest.param(_hf_minilm, id="hf-minilm"),
]


@pytest.fixture(scope="session", params=TOKENIZERS)
def make_tokenizer(request: pytest.FixtureRequest) -> Callable[[], Tokenizer]:
    return request.param


@pytest.fixture(scope="session")
def tokenizer(make_tokenizer: Callable[[], Tokenizer]) -> Tokenizer:
    return make_tokenizer()


TEXTS = [
    "Hello, world!",
    "Pasture chunks documents by token counts.",
    "  leading and trailing whitespace  ",
    "Unicode: café, naïve, 東京, emoji 🙂 and math ∑x².",
    "tabs\tand\nnewlines\r\nare whitespace",
    "",
    "   ",
]


def assert_well_formed(text: str, spans: list[tuple[int, int]]) -> None:
    prev: tuple[int, int] | None = None
    for start, end in spans:
        assert 0 <= start < end <= len(text), (text, start, end)  # zero width = special token
        if prev is not None and (start, end) != prev:  # byte-level BPE may repeat a span
            assert start >= prev[1], (text, prev, (start, end))
        prev = (start, end)


def test_one_list_per_text(tokenizer: Tokenizer) -> None:
    out = tokenizer.spans(TEXTS)
    assert len(out) == len(TEXTS)
    assert tokenizer.spans([]) == []


def test_spans_are_within_the_text_and_increasing(tokenizer: Tokenizer) -> None:
    for text, spans in zip(TEXTS, tokenizer.spans(TEXTS), strict=True):
        assert_well_formed(text, spans)


def test_blank_text_has_no_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.spans(["", "   \n\t"]) == [[], []]


def test_no_special_tokens(tokenizer: Tokenizer) -> None:
    (spans,) = tokenizer.spans(["Hello, world!"])
    pieces = [("Hello, world!")[s:e] for s, e in spans]
    # Every token is a piece of the text: no [CLS]/[SEP] (or <s>, </s>) around it.
    assert "".join(p.strip() for p in pieces) == "Hello,world!"
    assert all(p.strip() for p in pieces)


def test_tokens_cover_the_words(tokenizer: Tokenizer) -> None:
    text = "Pasture chunks documents by token counts."
    (spans,) = tokenizer.spans([text])
    covered = "".join(text[s:e].strip() for s, e in spans)
    assert covered == text.replace(" ", "")


def test_offsets_are_characters_not_bytes(tokenizer: Tokenizer) -> None:
    text = "東京 café 🙂 end"
    (spans,) = tokenizer.spans([text])
    assert_well_formed(text, spans)
    assert text[spans[-1][0] : spans[-1][1]] == "end"


def test_long_text_is_not_truncated(tokenizer: Tokenizer) -> None:
    text = " ".join(f"word{i % 50} is here" for i in range(700))  # 2100 words
    (spans,) = tokenizer.spans([text])
    assert len(spans) > 1000
    assert_well_formed(text, spans)
    assert spans[-1][1] == len(text)  # the end of the text is reached


def test_concurrent_first_use(
    tokenizer: Tokenizer, make_tokenizer: Callable[[], Tokenizer]
) -> None:
    want = tokenizer.spans(TEXTS)
    fresh = make_tokenizer()  # not loaded yet: the threads race on any lazy set-up
    assert run_together(lambda _: fresh.spans(TEXTS), 4) == [want] * 4
