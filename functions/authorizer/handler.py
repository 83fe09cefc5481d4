"""API Gateway's REQUEST authorizer: X-Api-Key or Authorization: Bearer -> tenant."""

from pasture.api.authorizer import authorizer_handler

handler = authorizer_handler()
