"""Token-based chunking, measured with a fast fake word-piece tokenizer."""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Sequence

import pytest

from pasture.domain.documents import ChunkingSpec, ParsedDocument, ParsedSection, TextChunk
from pasture.domain.errors import Invalid
from pasture.ports import Tokenizer
from pasture.services.chunking import chunk_document


class RegexTokenizer(Tokenizer):
    """Word pieces of at most 8 characters and single punctuation marks, like a tiny
    WordPiece: long words cost several tokens, so word-free runs can be measured."""

    _TOKEN = re.compile(r"\w{1,8}|[^\w\s]")

    def __init__(self) -> None:
        self.calls = 0

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        self.calls += 1
        return [[m.span() for m in self._TOKEN.finditer(t)] for t in texts]

    def count(self, text: str) -> int:
        return len(self.spans([text])[0])


def doc_of(*texts: str, metadata: Sequence[dict] | None = None) -> ParsedDocument:
    metas = metadata or [{} for _ in texts]
    return ParsedDocument(
        "text", tuple(ParsedSection(t, dict(m)) for t, m in zip(texts, metas, strict=True))
    )


def random_text(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)
    vocab = ["llama", "alpaca", "pasture", "grass", "fence", "a", "the", "sheep", "hay"]
    vocab += ["extraordinarily", "woolly", "farm", "gate", "water", "barn", "x"]
    paras = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            words = [rng.choice(vocab) for _ in range(rng.randint(1, 25))]
            sentences.append(" ".join(words) + rng.choice([".", "?", "!", ";", ","]))
        lines = [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
        paras.append("\n".join(lines))
    return "\n\n".join(paras)


def numbered_sentences(n: int) -> str:
    """Sentences of 4 unique words + '.', i.e. 5 tokens each: "w0 w1 w2 w3. w4 ..."."""
    return " ".join(" ".join(f"w{4 * s + k}" for k in range(4)) + "." for s in range(n))


def word_numbers(chunk: TextChunk) -> list[int]:
    return [int(w) for w in re.findall(r"w(\d+)", chunk.text)]


# --------------------------------------------------------------------------- sizes and text


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 8), (50, 10), (200, 20), (512, 0)])
def test_chunks_never_exceed_chunk_size(size: int, overlap: int) -> None:
    tok = RegexTokenizer()
    text = random_text(seed=size + overlap, paragraphs=60)
    chunks = chunk_document(doc_of(text), ChunkingSpec(size, overlap), tok)
    assert chunks
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == c.text.strip() and c.text
        assert c.token_count == tok.count(c.text)
        assert 0 < c.token_count <= size


def test_without_overlap_no_text_is_lost_or_repeated() -> None:
    text = random_text(seed=7, paragraphs=80)
    chunks = chunk_document(doc_of(text), ChunkingSpec(40, 0), RegexTokenizer())
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_with_overlap_every_word_appears_in_order() -> None:
    text = numbered_sentences(200)
    chunks = chunk_document(doc_of(text), ChunkingSpec(40, 12), RegexTokenizer())
    seen: list[int] = []
    for c in chunks:
        numbers = word_numbers(c)
        assert numbers == list(range(numbers[0], numbers[-1] + 1))  # contiguous slice
        seen.extend(n for n in numbers if not seen or n > seen[-1])
    assert seen == list(range(800))


def test_overlap_is_present_and_bounded() -> None:
    tok = RegexTokenizer()
    chunks = chunk_document(doc_of(numbered_sentences(100)), ChunkingSpec(40, 12), tok)
    assert len(chunks) > 3
    for prev, nxt in itertools.pairwise(chunks):
        shared = sorted(set(word_numbers(prev)) & set(word_numbers(nxt)))
        assert shared, "consecutive chunks must overlap"
        # The overlap is whole sentences from the end of the previous chunk.
        assert shared[-1] == word_numbers(prev)[-1] and shared[0] == word_numbers(nxt)[0]
        overlap_text = nxt.text[: nxt.text.index(f"w{shared[-1]}.") + len(f"w{shared[-1]}.")]
        assert 0 < tok.count(overlap_text) <= 12


def test_zero_overlap_means_none() -> None:
    chunks = chunk_document(doc_of(numbered_sentences(100)), ChunkingSpec(40, 0), RegexTokenizer())
    for prev, nxt in itertools.pairwise(chunks):
        assert word_numbers(prev)[-1] + 1 == word_numbers(nxt)[0]


def test_delimiters_are_preferred_in_order() -> None:
    para = "one two three. four five six.\nseven eight nine."
    text = "\n\n".join([para] * 4)
    chunks = chunk_document(doc_of(text), ChunkingSpec(16, 0), RegexTokenizer())
    # 12 tokens per paragraph: paragraphs stay whole rather than being packed across.
    assert [c.text for c in chunks] == [para] * 4


def test_word_free_runs_are_hard_split_at_token_boundaries() -> None:
    tok = RegexTokenizer()
    runs = "=" * 3000  # 3000 one-character tokens, no delimiter at all
    chunks = chunk_document(doc_of(runs), ChunkingSpec(100, 0), tok)
    assert [c.token_count for c in chunks] == [100] * 30
    assert "".join(c.text for c in chunks) == runs

    blob = "x" * 4000  # one "word" of 500 eight-character pieces
    chunks = chunk_document(doc_of(f"start {blob} end"), ChunkingSpec(64, 8), tok)
    assert all(c.token_count <= 64 for c in chunks)
    assert "".join(c.text for c in chunks).count("x") >= 4000
    assert chunks[0].text.startswith("start") and chunks[-1].text.endswith("end")


def test_sections_are_not_crossed_and_metadata_is_copied() -> None:
    metas = [{"page": 1}, {"page": 2}, {"page": 3}]
    texts = [numbered_sentences(3), "short page", numbered_sentences(30)]
    doc = doc_of(*texts, metadata=metas)
    chunks = chunk_document(doc, ChunkingSpec(32, 8), RegexTokenizer())
    pages = [c.metadata["page"] for c in chunks]
    assert pages == sorted(pages) and set(pages) == {1, 2, 3}
    for c in chunks:
        assert c.text in texts[c.metadata["page"] - 1]
    assert [c.text for c in chunks if c.metadata["page"] == 2] == ["short page"]
    chunks[0].metadata["page"] = 99  # a copy: the section is untouched
    assert doc.sections[0].metadata == {"page": 1}


def test_blank_sections_and_documents_give_no_chunks() -> None:
    tok = RegexTokenizer()
    assert chunk_document(doc_of("  \n\n "), ChunkingSpec(), tok) == []
    assert chunk_document(ParsedDocument("text", ()), ChunkingSpec(), tok) == []
    chunks = chunk_document(doc_of(" ", "hello world", "\n"), ChunkingSpec(), tok)
    assert [(c.index, c.text, c.token_count) for c in chunks] == [(0, "hello world", 2)]


def test_deterministic() -> None:
    text = random_text(seed=3, paragraphs=50)
    spec = ChunkingSpec(48, 16)
    first = chunk_document(doc_of(text, text[:500]), spec, RegexTokenizer())
    second = chunk_document(doc_of(text, text[:500]), spec, RegexTokenizer())
    assert first == second


@pytest.mark.parametrize(
    "spec",
    [
        ChunkingSpec(chunk_size=15, chunk_overlap=0),
        ChunkingSpec(chunk_size=0, chunk_overlap=0),
        ChunkingSpec(chunk_size=100, chunk_overlap=-1),
        ChunkingSpec(chunk_size=100, chunk_overlap=100),
        ChunkingSpec(chunk_size=100, chunk_overlap=150),
        ChunkingSpec(chunk_size=100, chunk_overlap=10, delimiters=("\n", "")),
    ],
)
def test_invalid_specs_are_rejected(spec: ChunkingSpec) -> None:
    with pytest.raises(Invalid):
        chunk_document(doc_of("some text"), spec, RegexTokenizer())


def test_one_megabyte_document_is_fast() -> None:
    text = random_text(seed=11, paragraphs=4000)
    while len(text) < 1_000_000:
        text += "\n\n" + text
    tok = RegexTokenizer()
    started = time.perf_counter()
    chunks = chunk_document(doc_of(text[:1_000_000]), ChunkingSpec(200, 20), tok)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    assert tok.calls == 2  # one batched call to measure, one to count the chunks
    assert all(c.token_count <= 200 for c in chunks)
    assert len(chunks) > 1000


def test_with_the_real_embedder_tokenizer() -> None:
    hf = pytest.importorskip("pasture.adapters.local.hf_tokenizer")
    model_files = pytest.importorskip("pasture.adapters.local.model_files")
    pytest.importorskip("tokenizers")
    try:
        model_dir = model_files.minilm_dir()
    except Exception as exc:  # model package not installed
        pytest.skip(f"MiniLM files unavailable: {exc}")
    tok = hf.HuggingFaceTokenizer(model_dir / "tokenizer.json")
    text = random_text(seed=5, paragraphs=40)
    chunks = chunk_document(doc_of(text), ChunkingSpec(64, 8), tok)
    assert chunks
    for c in chunks:
        assert 0 < c.token_count <= 64
        assert c.token_count == len(tok.spans([c.text])[0])
