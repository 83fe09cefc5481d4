"""RAGFlow datasets routes (being built)."""

from __future__ import annotations

from fastapi import APIRouter

import pasture.api.ragflow.envelope  # noqa: F401  (registers the dialect)

router = APIRouter(tags=["ragflow"])
