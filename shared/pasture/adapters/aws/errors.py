"""botocore errors -> Pasture errors, at the adapter boundary (conventions: errors are types).

Adapters check the codes that mean something to them first (NoSuchKey -> NotFound,
ConditionalCheckFailedException -> Conflict); everything else goes through `translate`:
throttling, a service that says it is unavailable, and connection failures (after botocore's own
retries) are `Unavailable`; anything else is `Upstream`. Messages name the service, the
operation and the error code only: no bucket, table, key or credential in them.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pasture.domain.errors import PastureError, Unavailable, Upstream

# Codes AWS answers when a request should simply be tried again later.
_RETRY_LATER = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "503",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: BotoCoreError | ClientError, service: str, operation: str) -> PastureError:
    """The Pasture error to raise (`raise translate(...) from exc`)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _RETRY_LATER:
            return Unavailable(f"{service} {operation} throttled or unavailable ({code})")
        return Upstream(f"{service} {operation} failed ({code or 'unknown error'})")
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return Unavailable(f"{service} {operation}: cannot reach the service")
    return Upstream(f"{service} {operation} failed ({type(exc).__name__})")
