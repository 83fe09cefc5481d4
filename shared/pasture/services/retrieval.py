"""Retrieval: hybrid BM25 + vector search over a project's RAG database, scoped to the tenant."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pasture.domain.errors import Invalid, NotFound
from pasture.domain.search import FilterValue, RetrievalMode, SearchHit, SearchQuery
from pasture.ports import Embedder, SearchIndex
from pasture.services.datasets import DatasetService
from pasture.services.projects import ProjectService

# Names clients send for each mode (LlamaFarm strategy names included).
MODE_ALIASES: dict[str, RetrievalMode] = {
    "hybrid": RetrievalMode.HYBRID,
    "hybrid_search": RetrievalMode.HYBRID,
    "HybridSearch": RetrievalMode.HYBRID,
    "vector": RetrievalMode.VECTOR,
    "semantic": RetrievalMode.VECTOR,
    "basic_similarity": RetrievalMode.VECTOR,
    "BasicSimilarityStrategy": RetrievalMode.VECTOR,
    "keyword": RetrievalMode.KEYWORD,
    "bm25": RetrievalMode.KEYWORD,
    "KeywordSearch": RetrievalMode.KEYWORD,
}


@dataclass(frozen=True)
class RetrievalRequest:
    query: str
    database: str | None = None
    top_k: int = 5
    score_threshold: float | None = None
    retrieval_strategy: str | None = None
    metadata_filters: Mapping[str, FilterValue] = field(default_factory=dict)
    distance_metric: str | None = None
    hybrid_alpha: float | None = None
    rerank_model: str | None = None
    query_expansion: bool | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class RetrievalResult:
    query: str
    hits: list[SearchHit]
    database: str
    mode: RetrievalMode
    elapsed_ms: float


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: str
    latency_ms: float
    message: str


class RetrievalService:
    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder,
        projects: ProjectService,
        datasets: DatasetService,
        *,
        vector_weight: float,
        candidates: int,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._projects = projects
        self._datasets = datasets
        self._weight = vector_weight
        self._candidates = candidates

    def _validate(self, req: RetrievalRequest) -> RetrievalMode:
        """Options the engine cannot honour are refused with the reason, never ignored."""
        if not req.query.strip():
            raise Invalid("query must not be empty")
        if not 1 <= req.top_k <= 1000:
            raise Invalid("top_k must be between 1 and 1000")
        if req.score_threshold is not None and not 0.0 <= req.score_threshold <= 1.0:
            raise Invalid(
                "score_threshold must be between 0 and 1 (scores are fused similarities in [0, 1])"
            )
        if req.hybrid_alpha is not None and not 0.0 <= req.hybrid_alpha <= 1.0:
            raise Invalid("hybrid_alpha must be between 0 and 1 (weight of the vector score)")
        if req.distance_metric is not None and req.distance_metric.lower() not in ("cosine", "cos"):
            raise Invalid(
                f"distance_metric {req.distance_metric!r} is not supported (supported: cosine)"
            )
        if req.rerank_model:
            raise Invalid("rerank_model is not supported: no reranking model is configured")
        if req.query_expansion:
            raise Invalid("query_expansion is not supported")
        if req.max_tokens is not None and req.max_tokens < 1:
            raise Invalid("max_tokens must be positive")
        for key, value in req.metadata_filters.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                raise Invalid(
                    f"metadata_filters[{key!r}] must be a scalar or a non-empty list of scalars"
                )
        if req.retrieval_strategy is None:
            return RetrievalMode.HYBRID
        mode = MODE_ALIASES.get(req.retrieval_strategy)
        if mode is None:
            raise Invalid(
                f"retrieval_strategy {req.retrieval_strategy!r} is not supported"
                f" (supported: {', '.join(sorted(MODE_ALIASES))})"
            )
        return mode

    def query(
        self, tenant: str, namespace: str, project: str, req: RetrievalRequest
    ) -> RetrievalResult:
        started = time.perf_counter()
        mode = self._validate(req)
        cfg = self._projects.config(tenant, namespace, project)
        database = req.database or cfg.default_database()
        if database is None:
            raise Invalid(f"project {namespace}/{project} has no RAG database configured")
        if database not in cfg.database_names():
            raise NotFound(f"Database {database} not found in project {namespace}/{project}")
        dataset_ids = tuple(
            d.id
            for d in self._datasets.list_datasets(tenant, namespace, project)
            if d.database == database
        )
        vector = None if mode == RetrievalMode.KEYWORD else self._embedder.embed([req.query])[0]
        hits = self._index.query(
            SearchQuery(
                tenant=tenant,
                dataset_ids=dataset_ids,
                text=req.query,
                vector=vector,
                top_k=req.top_k,
                mode=mode,
                vector_weight=self._weight if req.hybrid_alpha is None else req.hybrid_alpha,
                candidates=max(self._candidates, req.top_k),
                metadata_filters=dict(req.metadata_filters),
                min_score=req.score_threshold or 0.0,
            )
        )
        if req.max_tokens is not None:
            hits = _within_tokens(hits, req.max_tokens)
        return RetrievalResult(
            req.query, hits, database, mode, (time.perf_counter() - started) * 1000
        )

    def health(
        self, tenant: str, namespace: str, project: str, database: str | None
    ) -> tuple[str, list[ComponentHealth]]:
        cfg = self._projects.config(tenant, namespace, project)
        db = database or cfg.default_database()
        if db is None or db not in cfg.database_names():
            raise NotFound(
                f"Database {database or '(default)'} not found in project {namespace}/{project}"
            )
        dataset_ids = [
            d.id
            for d in self._datasets.list_datasets(tenant, namespace, project)
            if d.database == db
        ]
        comps = [
            _probe(
                "vector_store",
                lambda: f"{sum(self._index.count(tenant, i) for i in dataset_ids)} chunks indexed",
            ),
            _probe(
                "embeddings",
                lambda: (
                    f"{self._embedder.name}, {self._embedder.embed(['health check']).shape[1]} dimensions"
                ),
            ),
        ]
        return db, comps


def _within_tokens(hits: list[SearchHit], budget: int) -> list[SearchHit]:
    out: list[SearchHit] = []
    used = 0
    for h in hits:
        n = int(h.metadata.get("token_count", 0) or 0)
        if out and used + n > budget:
            break
        out.append(h)
        used += n
    return out


def _probe(name: str, check: Any) -> ComponentHealth:
    t = time.perf_counter()
    try:
        message = check()
        status = "healthy"
    except Exception as exc:
        message, status = f"{type(exc).__name__}: {exc}"[:200], "unhealthy"
    return ComponentHealth(name, status, round((time.perf_counter() - t) * 1000, 2), message)
