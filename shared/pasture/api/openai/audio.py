"""Placeholder: routes land here."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
