"""Errors as types. Services raise these; each dialect maps them to its envelope once."""


class PastureError(Exception):
    """Base of every error Pasture raises on purpose; `message` is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PastureError):
    """The thing does not exist, or belongs to another tenant (the two are indistinguishable)."""


class Conflict(PastureError):
    """A uniqueness rule would be broken (duplicate name, ...)."""


class Invalid(PastureError):
    """The request is well-formed but its values cannot be honoured."""


class Unauthorized(PastureError):
    """Missing or unknown credentials."""


class PayloadTooLarge(PastureError):
    """An upload went past the configured limit."""


class Upstream(PastureError):
    """A backend the request depends on (model server, web page, ...) failed."""


class Unavailable(PastureError):
    """A component is not ready or is shutting down."""
