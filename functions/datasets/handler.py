"""Lambda of the `datasets` group: LlamaFarm datasets and files; RAGFlow datasets, documents, chunks and parsing."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("datasets")
