"""LlamaFarm RAG: query and health."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from pasture.api.deps import ContainerDep, TenantDep
from pasture.api.llamafarm.models import (
    ComponentPublic,
    RagHealthPublic,
    RagQuery,
    RagQueryPublic,
    RagResult,
)
from pasture.services.retrieval import RetrievalRequest

router = APIRouter(prefix="/v1/projects/{namespace}/{project}/rag", tags=["rag"])


@router.post("/query", response_model=RagQueryPublic)
def rag_query(
    namespace: str, project: str, body: RagQuery, c: ContainerDep, tenant: TenantDep
) -> RagQueryPublic:
    req = RetrievalRequest(**{**body.model_dump(), "metadata_filters": body.metadata_filters or {}})
    r = c.retrieval.query(tenant, namespace, project, req)
    results = [
        RagResult(
            content=h.text,
            score=round(h.score, 6),
            metadata=dict(h.metadata),
            chunk_id=h.chunk_id,
            document_id=h.document_id,
            keyword_score=round(h.keyword_score, 6),
            vector_score=round(h.vector_score, 6),
        )
        for h in r.hits
    ]
    return RagQueryPublic(
        query=r.query,
        results=results,
        total_results=len(results),
        processing_time_ms=round(r.elapsed_ms, 2),
        retrieval_strategy_used=r.mode.value,
        database_used=r.database,
    )


@router.get("/health", response_model=RagHealthPublic)
def rag_health(
    namespace: str, project: str, c: ContainerDep, tenant: TenantDep, database: str | None = None
) -> RagHealthPublic:
    db, comps = c.retrieval.health(tenant, namespace, project, database)
    bad = [f"{x.name}: {x.message}" for x in comps if x.status != "healthy"]
    status = "healthy" if not bad else ("unhealthy" if len(bad) == len(comps) else "degraded")
    return RagHealthPublic(
        status=status,
        database=db,
        components={
            x.name: ComponentPublic(
                name=x.name, status=x.status, latency=x.latency_ms, message=x.message
            )
            for x in comps
        },
        last_check=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        issues=bad or None,
    )
