"""Lambda of the `accounts` group: RAGFlow's register/login/new_token (login sessions, not API keys: no authorizer)."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("accounts")
