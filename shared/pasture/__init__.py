"""Pasture: a self-hostable RAG, chat and speech API."""

__version__ = "0.1.0"
