"""Lambda of the `tasks` group: LlamaFarm task status and cancel."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("tasks")
