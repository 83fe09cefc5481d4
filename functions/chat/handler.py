"""Lambda of the `chat` group: every chat dialect, buffered through Mangum. run.sh serves the
same app behind the Lambda Web Adapter, which streams."""

from pasture.api.lambda_app import lambda_handler

handler = lambda_handler("chat")
