"""One error hierarchy for every provider: what may be retried and what may not.

Messages never contain API keys; `error_info()` gives the JSON recorded in `raw_calls.error_json`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studyllm_core.providers.base import TokenUsage


class ProviderError(Exception):
    """Base of all provider failures.

    `usage` holds the token counts the server reported with a failed answer (a 200 whose vectors
    were unusable is billed all the same), so the failed attempt can be recorded with them.
    """

    retryable: bool = False
    kind: str = "provider_error"
    exit_code: int = 4  # of the CLI: a provider failed (2 for settings refused before any request)

    def __init__(self, message: str, *, status_code: int | None = None, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider
        self.usage: TokenUsage | None = None

    def with_usage(self, usage: TokenUsage | None) -> ProviderError:
        """This error, carrying the token counts of the failed answer (returned for `raise ... .with_usage(u)`)."""
        self.usage = usage
        return self

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


class ConnectFailedError(ProviderConnectionError):
    """No connection could be made at all (refused, unknown host, unreachable): nothing was sent.

    Transient while a server restarts; systemic when it lasts (see `services.spend`).
    """


class MalformedResponseError(RetryableError):
    """The server answered 2xx with a body we cannot use (bad JSON, wrong count or dimension, NaN).

    `reason` names what was wrong, so a run can tell the same fault repeating from chance:
    not_json, schema, count, nan, zero, dimensions_ignored, dimension, empty.
    """

    kind = "malformed_response"

    def __init__(self, message: str, *, reason: str = "schema", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason

    def error_info(self) -> dict[str, Any]:
        return {**super().error_info(), "reason": self.reason}


# -- not retryable -----------------------------------------------------------------------------


class PermanentError(ProviderError):
    """Retrying the same request cannot help."""

    retryable = False
    kind = "permanent"


class AuthenticationError(PermanentError):
    """HTTP 401/403 or a missing key."""

    kind = "auth"


class BadRequestError(PermanentError):
    """HTTP 400/422: the request itself is wrong (too long, bad parameter).

    `param` and `code` come from the error body when the server names them. `cause` says whether
    one input can be to blame ("input": too long, unreadable), a request setting every request
    shares ("parameter": e.g. `dimensions` the model does not take), or the body does not tell (None).
    """

    kind = "bad_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.param = param
        self.code = code

    @property
    def cause(self) -> str | None:
        return bad_request_cause(self.param, self.code, self.message)

    def error_info(self) -> dict[str, Any]:
        return {**super().error_info(), "param": self.param, "code": self.code, "cause": self.cause}


# Parameters and codes by which a server says one input is at fault; messages that say so in words.
INPUT_PARAMS = frozenset({"input", "inputs", "messages", "prompt", "text", "texts"})
INPUT_CODES = frozenset({"context_length_exceeded", "string_above_max_length", "invalid_input", "input_too_long"})
_INPUT_WORDS = ("context length", "maximum context", "too many tokens", "too long", "token limit", "reduce the length",
                "reduce your prompt", "maximum input length", "input length")


def bad_request_cause(param: str | None, code: str | None, message: str) -> str | None:
    """"input" when a 400 blames one input, "parameter" when it names another request setting, else None."""
    if (param or "").lower() in INPUT_PARAMS or (code or "").lower() in INPUT_CODES:
        return "input"
    lowered = message.lower()
    if any(word in lowered for word in _INPUT_WORDS):
        return "input"
    if param:
        return "parameter"
    return None


class ModelNotFoundError(PermanentError):
    """HTTP 404 or an unknown model/deployment."""

    kind = "model_not_found"


class ContentFilterError(PermanentError):
    kind = "content_filter"


class UnsupportedOperation(PermanentError):
    """The provider does not offer this operation (e.g. chat on an embeddings-only provider)."""

    kind = "unsupported"


class ConfigurationError(PermanentError):
    """The provider cannot be built from the given settings (unknown name, missing setting, an operation
    it does not offer): refused before any request, a configuration error for the CLI."""

    kind = "configuration"
    exit_code = 2


class MissingKeyError(AuthenticationError):
    """No API key is configured: refused before any request (a configuration error for the CLI, exit 2)."""

    exit_code = 2


class QuotaExceededError(PermanentError):
    """HTTP 429 `insufficient_quota`: the account is out of credit; waiting does not help, paying does."""

    kind = "quota"


class SystemicFaultError(PermanentError):
    """A run stopped because the same fault kept coming back (or its request budget ran out): retrying
    or splitting would only multiply requests. The message names the cause and the fix."""

    kind = "systemic"
