"""Lambda of the `system` group: /, /info, /health. Open: API Gateway attaches no authorizer to these routes."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("system")
