"""One error hierarchy for every provider: what may be retried and what may not.

Messages never contain API keys; `error_info()` gives the JSON recorded in `raw_calls.error_json`.
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """Base of all provider failures."""

    retryable: bool = False
    kind: str = "provider_error"

    def __init__(self, message: str, *, status_code: int | None = None, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider

    def error_info(self) -> dict[str, Any]:
        """The JSON-able description recorded with a failed call."""
        return {
            "type": self.kind,
            "class": type(self).__name__,
            "message": self.message,
            "status_code": self.status_code,
            "retryable": self.retryable,
        }


# -- retryable ---------------------------------------------------------------------------------


class RetryableError(ProviderError):
    """A transient failure: the same request may succeed later."""

    retryable = True
    kind = "retryable"


class RateLimitError(RetryableError):
    """HTTP 429; `retry_after` holds the server's Retry-After in seconds when it sent one."""

    kind = "rate_limit"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def error_info(self) -> dict[str, Any]:
        return {**super().error_info(), "retry_after": self.retry_after}


class ProviderTimeoutError(RetryableError):
    kind = "timeout"


class ServerError(RetryableError):
    """HTTP 5xx."""

    kind = "server_error"


class ProviderConnectionError(RetryableError):
    kind = "connection"


class MalformedResponseError(RetryableError):
    """The server answered 2xx with a body we cannot use (bad JSON, wrong count or dimension, NaN)."""

    kind = "malformed_response"


# -- not retryable -----------------------------------------------------------------------------


class PermanentError(ProviderError):
    """Retrying the same request cannot help."""

    retryable = False
    kind = "permanent"


class AuthenticationError(PermanentError):
    """HTTP 401/403 or a missing key."""

    kind = "auth"


class BadRequestError(PermanentError):
    """HTTP 400/422: the request itself is wrong (too long, bad parameter)."""

    kind = "bad_request"


class ModelNotFoundError(PermanentError):
    """HTTP 404 or an unknown model/deployment."""

    kind = "model_not_found"


class ContentFilterError(PermanentError):
    kind = "content_filter"


class UnsupportedOperation(PermanentError):
    """The provider does not offer this operation (e.g. chat on an embeddings-only provider)."""

    kind = "unsupported"


class ConfigurationError(PermanentError):
    """The provider cannot be built from the given settings (unknown name, missing setting)."""

    kind = "configuration"
