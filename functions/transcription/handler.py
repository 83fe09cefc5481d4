"""Lambda of the `transcription` group: LlamaChat and OpenAI speech to text."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("transcription")
