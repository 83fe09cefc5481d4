"""Values the SearchIndex port takes and returns, and the documented score fusion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]

# Metadata values are scalars; a filter value may also be a list meaning "any of".
Scalar = str | int | float | bool
FilterValue = Scalar | list[Scalar]


class RetrievalMode(StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True)
class IndexedChunk:
    """One chunk as stored in the index. `vector` is L2-normalised float32."""

    chunk_id: str
    tenant: str
    dataset_id: str
    document_id: str
    text: str
    vector: Vector
    metadata: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchQuery:
    """A hybrid query, always scoped to one tenant and a set of datasets."""

    tenant: str
    dataset_ids: tuple[str, ...]
    text: str
    vector: Vector | None
    top_k: int = 5
    mode: RetrievalMode = RetrievalMode.HYBRID
    # Weight of the vector component in the fused score (1 - weight goes to keywords).
    vector_weight: float = 0.5
    # How many candidates each side (keyword, vector) contributes before fusion.
    candidates: int = 100
    document_ids: tuple[str, ...] = ()
    metadata_filters: Mapping[str, FilterValue] = field(default_factory=dict)
    min_score: float = 0.0


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    dataset_id: str
    document_id: str
    text: str
    metadata: Mapping[str, Scalar]
    score: float
    keyword_score: float
    vector_score: float


def __getattr__(name: str) -> Any:
    # numpy (~70 ms of a Lambda's cold start, bench/coldstart.py) loads on first use, not in
    # every process that imports the domain: `Vector` is built when something asks for it.
    if name == "Vector":
        import numpy as np
        import numpy.typing as npt

        return npt.NDArray[np.float32]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fuse(vector_score: float, keyword_score: float, vector_weight: float) -> float:
    """Convex combination of the two component scores, both already in [0, 1].

    vector_score: cosine similarity of L2-normalised embeddings, clipped at 0.
    keyword_score: BM25 divided by the best BM25 among the query's candidates (so in [0, 1]).
    """
    return vector_weight * vector_score + (1.0 - vector_weight) * keyword_score
