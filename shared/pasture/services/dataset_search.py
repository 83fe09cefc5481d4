"""Search across tenant-level datasets by id, scored the way RAGFlow scores:

    similarity = w * vector_similarity + (1 - w) * term_similarity

`vector_similarity` is the cosine of query and chunk embeddings (clipped at 0);
`term_similarity` is the weighted share of the query's terms found in the chunk, each term
weighted by its inverse document frequency among the candidates (a term every candidate has
says little). Candidates come from the hybrid index query (BM25 and vector sides), so a chunk
that only one side finds is still scored on both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pasture.domain.chat import ChatMessage, GenerationParams
from pasture.domain.errors import Invalid, NotFound
from pasture.domain.search import RetrievalMode, SearchHit, SearchQuery
from pasture.ports import ChatModel, Embedder, SearchIndex
from pasture.services.datasets import DatasetService

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic in a question; RAGFlow drops the same kind before weighting.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "she",
        "should",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "he",
        "his",
        "her",
        "about",
        "tell",
        "give",
        "show",
        "list",
    ]
)
MAX_TOP_K = 1024
_MAX_QUESTION = 4000


def terms(text: str) -> list[str]:
    """The question's distinct content words, lowercased, in order."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if w not in STOPWORDS and w not in out and (len(w) > 1 or not w.isascii()):
            out.append(w)
    return out


def _stem(w: str) -> str:
    """Enough for English inflections to meet: goats ~ goat, lives ~ live, parsed ~ parse."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


def term_similarities(question_terms: Sequence[str], texts: Sequence[str]) -> list[float]:
    if not question_terms:
        return [0.0] * len(texts)
    stems = [_stem(t) for t in question_terms]
    bags = [{_stem(w) for w in _WORD.findall(t.lower())} for t in texts]
    n = len(bags)
    weights = []
    for s in stems:
        df = sum(1 for b in bags if s in b)
        weights.append(math.log(1.0 + (n - df + 0.5) / (df + 0.5)))
    total = sum(weights)
    return [sum(w for s, w in zip(stems, weights, strict=True) if s in b) / total for b in bags]


def highlight(text: str, question_terms: Sequence[str]) -> str:
    """The text with each word matching a query term wrapped in <em>...</em>."""
    stems = {_stem(t) for t in question_terms}
    if not stems:
        return text
    return _WORD.sub(
        lambda m: f"<em>{m.group(0)}</em>" if _stem(m.group(0).lower()) in stems else m.group(0),
        text,
    )


@dataclass(frozen=True)
class DatasetSearch:
    question: str
    dataset_ids: tuple[str, ...]
    document_ids: tuple[str, ...] = ()
    page: int = 1
    page_size: int = 30
    similarity_threshold: float = 0.2
    vector_similarity_weight: float = 0.3
    top_k: int = MAX_TOP_K
    keyword: bool = False
    highlight: bool = False


@dataclass(frozen=True)
class ScoredChunk:
    hit: SearchHit
    similarity: float
    vector_similarity: float
    term_similarity: float
    document_name: str
    highlight: str | None


@dataclass(frozen=True)
class DocAgg:
    doc_name: str
    doc_id: str
    count: int


@dataclass(frozen=True)
class DatasetSearchResult:
    total: int
    chunks: list[ScoredChunk]  # the requested page
    doc_aggs: list[DocAgg]  # over every chunk above the threshold, most chunks first


class DatasetSearchService:
    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder,
        datasets: DatasetService,
        keyword_model: Any,  # () -> ChatModel, loaded only when `keyword` is asked for
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._datasets = datasets
        self._keyword_model = keyword_model

    def check(self, tenant: str, req: DatasetSearch) -> None:
        if not req.question or not req.question.strip():
            raise Invalid("`question` is required.")
        if not req.dataset_ids:
            raise Invalid("`dataset_ids` is required.")
        for name, v in (
            ("similarity_threshold", req.similarity_threshold),
            ("vector_similarity_weight", req.vector_similarity_weight),
        ):
            if not 0.0 <= v <= 1.0:
                raise Invalid(f"`{name}` must be between 0 and 1")
        if req.page < 1 or req.page_size < 1:
            raise Invalid("`page` and `page_size` must be at least 1")
        if req.top_k < 1:
            raise Invalid("`top_k` must be at least 1")
        for ds_id in req.dataset_ids:
            ds = self._datasets.by_id(tenant, ds_id)
            if ds is None or ds.in_project:
                raise NotFound(f"You don't own the dataset {ds_id}.")
        for doc_id in req.document_ids:
            if not any(self._datasets.document(tenant, ds, doc_id) for ds in req.dataset_ids):
                raise NotFound(f"The datasets don't own the document {doc_id}")

    async def keywords(self, question: str) -> str:
        """A few extra search words from the chat model (RAGFlow's `keyword: true`)."""
        model: ChatModel = self._keyword_model()
        prompt = [
            ChatMessage(
                "system",
                "List the 3 to 5 most important keywords or short phrases of the user's"
                " question, separated by commas. Reply with the keywords only.",
            ),
            ChatMessage("user", question[:_MAX_QUESTION]),
        ]
        done = await model.complete(prompt, GenerationParams(max_tokens=48, temperature=0.0))
        words = [w.strip(" .\"'") for w in done.text.replace("\n", ",").split(",")]
        return " ".join(w for w in words if w)[:400]

    def search(self, tenant: str, req: DatasetSearch, extra_terms: str = "") -> DatasetSearchResult:
        self.check(tenant, req)
        question = req.question[:_MAX_QUESTION]
        text = f"{question} {extra_terms}".strip()
        top_k = min(req.top_k, MAX_TOP_K)
        w = req.vector_similarity_weight
        hits = self._index.query(
            SearchQuery(
                tenant=tenant,
                dataset_ids=tuple(dict.fromkeys(req.dataset_ids)),
                text=text,
                vector=self._embedder.embed([question])[0],
                top_k=top_k,
                mode=RetrievalMode.HYBRID,
                vector_weight=w,
                candidates=top_k,
                document_ids=tuple(req.document_ids),
                metadata_filters={"available": True},
            )
        )
        qterms = terms(text)
        term_sims = term_similarities(
            qterms, [f"{h.text} {h.metadata.get('important_keywords', '')}" for h in hits]
        )
        scored = []
        for h, ts in zip(hits, term_sims, strict=True):
            sim = w * h.vector_score + (1.0 - w) * ts
            if sim >= req.similarity_threshold:
                scored.append((sim, ts, h))
        scored.sort(key=lambda t: (-t[0], t[2].chunk_id))
        aggs: dict[str, DocAgg] = {}
        for _, _, h in scored:
            name = str(h.metadata.get("filename") or h.document_id)
            a = aggs.get(h.document_id)
            aggs[h.document_id] = DocAgg(name, h.document_id, (a.count if a else 0) + 1)
        start = (req.page - 1) * req.page_size
        page = [
            ScoredChunk(
                hit=h,
                similarity=sim,
                vector_similarity=h.vector_score,
                term_similarity=ts,
                document_name=str(h.metadata.get("filename") or h.document_id),
                highlight=highlight(h.text, qterms) if req.highlight else None,
            )
            for sim, ts, h in scored[start : start + req.page_size]
        ]
        return DatasetSearchResult(
            total=len(scored),
            chunks=page,
            doc_aggs=sorted(aggs.values(), key=lambda a: (-a.count, a.doc_name)),
        )
