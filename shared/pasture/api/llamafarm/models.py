"""LlamaFarm request and response models (wire shapes from the LlamaFarm API reference)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pasture.domain.search import FilterValue


class ProjectCreate(BaseModel):
    name: str
    config_template: str | None = None


class ProjectUpdate(BaseModel):
    config: dict[str, Any]


class ProjectPublic(BaseModel):
    namespace: str
    name: str
    config: dict[str, Any]


class ProjectEnvelope(BaseModel):
    project: ProjectPublic


class ProjectList(BaseModel):
    total: int
    projects: list[ProjectPublic]


class DatasetCreate(BaseModel):
    name: str
    data_processing_strategy: str | None = None
    database: str | None = None


class FileDetail(BaseModel):
    hash: str
    original_filename: str
    size: int
    timestamp: float
    # Extensions: where the file is in its processing.
    status: str
    chunks: int
    error: str | None = None


class DatasetDetails(BaseModel):
    total_files: int
    total_size_bytes: int
    file_details: list[FileDetail]


class DatasetPublic(BaseModel):
    name: str
    database: str
    data_processing_strategy: str
    files: list[str]
    details: DatasetDetails | None = None


class DatasetEnvelope(BaseModel):
    dataset: DatasetPublic


class DatasetList(BaseModel):
    total: int
    datasets: list[DatasetPublic]


class Strategies(BaseModel):
    data_processing_strategies: list[str]
    databases: list[str]


class UploadPublic(BaseModel):
    filename: str
    hash: str
    processed: bool
    # Extension: true when these bytes were already in the dataset (a no-op).
    duplicate: bool = False


class ProcessPublic(BaseModel):
    message: str
    processed_files: int
    skipped_files: int
    failed_files: int
    strategy: str
    database: str
    details: list[dict[str, Any]]
    task_id: str | None = None


class RemovedFile(BaseModel):
    file_hash: str


class RagQuery(BaseModel):
    # Unknown fields are refused (422) rather than silently ignored.
    model_config = ConfigDict(extra="forbid")

    query: str
    database: str | None = None
    top_k: int = 5
    score_threshold: float | None = None
    retrieval_strategy: str | None = None
    metadata_filters: dict[str, FilterValue] | None = None
    distance_metric: str | None = None
    hybrid_alpha: float | None = None
    rerank_model: str | None = None
    query_expansion: bool | None = None
    max_tokens: int | None = None


class RagResult(BaseModel):
    content: str
    score: float
    metadata: dict[str, Any]
    chunk_id: str
    document_id: str
    # Extensions: the two components the score fuses.
    keyword_score: float
    vector_score: float


class RagQueryPublic(BaseModel):
    query: str
    results: list[RagResult]
    total_results: int
    processing_time_ms: float
    retrieval_strategy_used: str
    database_used: str


class ComponentPublic(BaseModel):
    name: str
    status: str
    latency: float
    message: str | None = None


class RagHealthPublic(BaseModel):
    status: str
    database: str
    components: dict[str, ComponentPublic]
    last_check: str
    issues: list[str] | None = None


class TaskPublic(BaseModel):
    task_id: str
    state: str
    meta: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
