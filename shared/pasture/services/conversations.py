"""Placeholder."""

from __future__ import annotations

from typing import Any


class ConversationService:
    def __init__(self, *args: Any, **kw: Any) -> None:
        pass
