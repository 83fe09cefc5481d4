#!/bin/bash
# The chat group behind the AWS Lambda Web Adapter (its layer; the function's handler is
# this file and AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap). The adapter turns each API Gateway
# event into an HTTP request to this server and streams the answer back as it is written.
# Environment: functions/README.md.
set -euo pipefail

# The adapter's own settings, unless the stack set them.
export AWS_LWA_PORT="${AWS_LWA_PORT:-8080}"
export AWS_LWA_INVOKE_MODE="${AWS_LWA_INVOKE_MODE:-response_stream}"
export AWS_LWA_READINESS_CHECK_PATH="${AWS_LWA_READINESS_CHECK_PATH:-/health/liveness}"

# The code layer (shared/ -> /opt/python) and this function's own directory.
export PYTHONPATH="${LAMBDA_TASK_ROOT:-.}:/opt/python${PYTHONPATH:+:$PYTHONPATH}"

# Loopback only: nothing but the adapter may reach the app, because the app believes the
# request context header (the tenant) that the adapter sets. One worker: one request at a
# time per execution environment anyway.
exec python -m uvicorn pasture.api.lambda_app:web_adapter_app --factory \
    --host 127.0.0.1 --port "$AWS_LWA_PORT" \
    --workers 1 --no-access-log --no-server-header --timeout-graceful-shutdown 1
