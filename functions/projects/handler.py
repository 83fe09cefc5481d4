"""Lambda of the `projects` group: LlamaFarm projects and examples."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("projects")
