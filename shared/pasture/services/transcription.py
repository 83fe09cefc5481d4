"""Placeholder."""

from __future__ import annotations


class TranscriptionService:
    pass
