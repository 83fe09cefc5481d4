"""Placeholder."""

from __future__ import annotations

from typing import Any


class ChatbotService:
    def __init__(self, *args: Any) -> None:
        pass
