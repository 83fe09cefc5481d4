"""Lambda of the `retrieval` group: LlamaFarm rag/query and rag/health; RAGFlow retrieval."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("retrieval")
