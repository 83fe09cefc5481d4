"""Project config templates offered by `config_template` (server, rag)."""

from __future__ import annotations

from typing import Any

from pasture.domain.errors import Invalid

DEFAULT_MODEL = {
    "name": "default",
    "provider": "llamacpp",
    "model": "smollm2-135m-instruct",
    "default": True,
    "description": "SmolLM2-135M-Instruct, embedded, run in process by llama.cpp",
}

_RAG = {
    "databases": [
        {
            "name": "main_db",
            "type": "PastureStore",
            "config": {"distance_metric": "cosine"},
            "embedding_strategies": [
                {
                    "name": "default_embeddings",
                    "type": "OnnxEmbedder",
                    "config": {"model": "all-MiniLM-L6-v2"},
                }
            ],
            "retrieval_strategies": [
                {
                    "name": "hybrid_search",
                    "type": "HybridSearch",
                    "config": {"top_k": 5},
                    "default": True,
                }
            ],
            "default_embedding_strategy": "default_embeddings",
            "default_retrieval_strategy": "hybrid_search",
        }
    ],
    "data_processing_strategies": [
        {
            "name": "universal_processor",
            "description": "Every supported file type, token-based chunks with overlap",
            "parsers": [
                {
                    "type": "auto",
                    "file_include_patterns": ["*"],
                    "config": {"chunk_size": 200, "chunk_overlap": 20},
                }
            ],
            "extractors": [],
        }
    ],
    "default_database": "main_db",
}

_SYSTEM_PROMPTS = {
    "server": "You are a helpful assistant.",
    "rag": (
        "You are a helpful assistant. Answer from the numbered sources you are given when they"
        " are relevant, cite them like [1], and say so when they do not contain the answer."
    ),
}

TEMPLATES = ("server", "rag")


def render_template(template: str, namespace: str, name: str) -> dict[str, Any]:
    if template not in TEMPLATES:
        raise Invalid(f"unknown config_template {template!r} (available: {', '.join(TEMPLATES)})")
    import copy

    return {
        "version": "v1",
        "name": name,
        "namespace": namespace,
        "prompts": [{"role": "system", "content": _SYSTEM_PROMPTS[template]}],
        "runtime": {"models": [dict(DEFAULT_MODEL)], "default_model": "default"},
        "rag": copy.deepcopy(_RAG),
        "datasets": [],
        # Whether chat uses RAG when a request does not say (read by the chat service).
        "rag_enabled_by_default": template == "rag",
    }
