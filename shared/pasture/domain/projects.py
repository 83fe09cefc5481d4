"""Project configuration, compatible with llamafarm.yaml (unknown keys are kept, not dropped)."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pasture.domain.documents import ChunkingSpec
from pasture.domain.errors import Invalid

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """Names become parts of keys and paths: a conservative charset, no separators."""
    if not NAME_RE.fullmatch(value or ""):
        raise Invalid(
            f"invalid {kind} name {value!r}: use 1-64 letters, digits, '_', '-' or '.',"
            " starting with a letter or digit"
        )
    return value


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelConfig(_Open):
    name: str
    provider: str = "llamacpp"
    model: str = ""
    base_url: str | None = None
    default: bool = False
    description: str | None = None


class RuntimeConfig(_Open):
    models: list[ModelConfig] = Field(default_factory=list)
    default_model: str | None = None


class ParserConfig(_Open):
    type: str = "auto"
    file_include_patterns: list[str] = Field(default_factory=lambda: ["*"])
    config: dict[str, Any] = Field(default_factory=dict)


class DataProcessingStrategy(_Open):
    name: str
    description: str = ""
    parsers: list[ParserConfig] = Field(default_factory=lambda: [ParserConfig()])
    extractors: list[dict[str, Any]] = Field(default_factory=list)

    def parser_for(self, filename: str) -> ParserConfig | None:
        low = filename.lower()
        for p in self.parsers:
            if any(fnmatch.fnmatch(low, pat.lower()) for pat in p.file_include_patterns):
                return p
        return None


class DatabaseConfig(_Open):
    name: str
    type: str = "PastureStore"
    config: dict[str, Any] = Field(default_factory=dict)
    embedding_strategies: list[dict[str, Any]] = Field(default_factory=list)
    retrieval_strategies: list[dict[str, Any]] = Field(default_factory=list)
    default_embedding_strategy: str | None = None
    default_retrieval_strategy: str | None = None


class RagConfig(_Open):
    databases: list[DatabaseConfig] = Field(default_factory=list)
    data_processing_strategies: list[DataProcessingStrategy] = Field(default_factory=list)
    default_database: str | None = None


class ProjectConfig(_Open):
    version: str = "v1"
    name: str
    namespace: str
    prompts: list[dict[str, Any]] = Field(default_factory=list)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    rag: RagConfig | None = None
    datasets: list[dict[str, Any]] = Field(default_factory=list)

    def validate_semantics(self) -> None:
        """Cross-field rules pydantic types cannot express; raise Invalid with the reason."""
        if self.version != "v1":
            raise Invalid(f"unsupported config version {self.version!r} (supported: v1)")
        names = _unique("runtime.models", [m.name for m in self.runtime.models])
        if self.runtime.default_model and self.runtime.default_model not in names:
            raise Invalid(
                f"runtime.default_model {self.runtime.default_model!r} is not in runtime.models"
            )
        if sum(1 for m in self.runtime.models if m.default) > 1:
            raise Invalid("at most one runtime.models entry may have default: true")
        if self.rag is not None:
            dbs = _unique("rag.databases", [d.name for d in self.rag.databases])
            _unique(
                "rag.data_processing_strategies",
                [s.name for s in self.rag.data_processing_strategies],
            )
            if self.rag.default_database and self.rag.default_database not in dbs:
                raise Invalid(
                    f"rag.default_database {self.rag.default_database!r} is not in rag.databases"
                )
            for s in self.rag.data_processing_strategies:
                for p in s.parsers:
                    chunking_spec(p)  # raises Invalid on bad sizes

    def database_names(self) -> list[str]:
        return [d.name for d in self.rag.databases] if self.rag else []

    def strategy_names(self) -> list[str]:
        return [s.name for s in self.rag.data_processing_strategies] if self.rag else []

    def strategy(self, name: str) -> DataProcessingStrategy:
        for s in self.rag.data_processing_strategies if self.rag else []:
            if s.name == name:
                return s
        raise Invalid(
            f"data_processing_strategy {name!r} not found in project"
            f" (available: {', '.join(self.strategy_names()) or 'none'})"
        )

    def default_database(self) -> str | None:
        if self.rag is None:
            return None
        if self.rag.default_database:
            return self.rag.default_database
        return self.rag.databases[0].name if self.rag.databases else None


def _unique(field: str, names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise Invalid(f"{field} names must be unique")
    return names


def chunking_spec(parser: ParserConfig, defaults: ChunkingSpec | None = None) -> ChunkingSpec:
    """Chunk sizes from a parser's config (`chunk_size`, `chunk_overlap` in embedder tokens,
    optional `delimiters`), falling back to the defaults."""
    base = defaults or ChunkingSpec()
    cfg = parser.config
    try:
        size = int(cfg.get("chunk_size", base.chunk_size))
        overlap = int(cfg.get("chunk_overlap", base.chunk_overlap))
    except (TypeError, ValueError):
        raise Invalid("chunk_size and chunk_overlap must be integers") from None
    if size < 16 or size > 8192:
        raise Invalid(f"chunk_size must be between 16 and 8192 tokens, got {size}")
    if overlap < 0 or overlap >= size:
        raise Invalid(f"chunk_overlap must be >= 0 and < chunk_size, got {overlap}")
    delims = cfg.get("delimiters")
    if delims is None:
        return ChunkingSpec(size, overlap, base.delimiters)
    if not isinstance(delims, list) or not all(isinstance(d, str) and d for d in delims):
        raise Invalid("delimiters must be a list of non-empty strings")
    return ChunkingSpec(size, overlap, tuple(delims))
