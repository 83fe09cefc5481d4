"""Adapters that reach a model or service over HTTP (OpenAI-compatible servers, ...)."""
