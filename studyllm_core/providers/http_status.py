"""Turn an HTTP error status (and its body and headers) into the provider error hierarchy.

Shared by the SDK-based providers and the plain-httpx ones, so a 429 or a 503 means the same
retryable error whichever client saw it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from studyllm_core.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    RetryableError,
    ServerError,
)
from studyllm_core.redaction import redact

# Error codes providers use for a refused prompt or completion (OpenAI, Azure).
CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "responsibleaipolicyviolation"})
# 429 codes that mean "out of credit", not "slow down": OpenAI's insufficient_quota, and billing limits.
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})

_MAX_DETAIL_CHARS = 500


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_detail(body: Any) -> tuple[str, str | None]:
    """The human message and the error code found in an OpenAI-style error body (dict, bytes or text)."""
    message, code, _ = error_fields(body)
    return message, code


def error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """The human message, the error code and the parameter blamed (`param`) of an OpenAI-style error body."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()[:_MAX_DETAIL_CHARS], None, None
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            message = err.get("message") or err.get("detail") or ""
            code = err.get("code") or err.get("type")
            inner = err.get("innererror")
            if isinstance(inner, Mapping) and inner.get("code"):
                code = code or inner.get("code")
                if str(inner.get("code")).lower() in CONTENT_FILTER_CODES:
                    code = "content_filter"
            param = err.get("param")
            return (
                str(message)[:_MAX_DETAIL_CHARS],
                str(code) if code is not None else None,
                str(param) if isinstance(param, str | int) and str(param) else None,
            )
        if isinstance(err, str):
            return err[:_MAX_DETAIL_CHARS], None, None
        return json.dumps(body)[:_MAX_DETAIL_CHARS], None, None
    if body is None:
        return "", None, None
    return str(body)[:_MAX_DETAIL_CHARS], None, None


def with_fix(message: str, fix: str) -> str:
    """`message; fix` without doubled punctuation."""
    return f"{message.rstrip().rstrip('.;:')}; {fix}"


def error_for_status(
    status: int,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """The provider error for an HTTP error response, with a redacted one-line message."""
    detail, code, param = error_fields(body)
    message = f"{provider or 'provider'} returned HTTP {status}"
    if code:
        message += f" ({code})"
    if param and status < 500:
        message += f" [param {param}]"
    if detail:
        message += f": {' '.join(detail.split())}"
    message = redact(message, secrets)
    kw: dict[str, Any] = {"status_code": status, "provider": provider}
    code_l = (code or "").lower()
    if status == 429 and code_l in QUOTA_CODES:
        return QuotaExceededError(
            with_fix(message, "the account is out of credit: add credit or raise the usage limit in the provider's "
                     "billing settings, then re-run (what succeeded is kept)"), **kw)
    if status == 429:
        return RateLimitError(message, retry_after=parse_retry_after(headers), **kw)
    if status in (401, 403):
        return AuthenticationError(with_fix(message, "check the API key and what it may access"), **kw)
    if status == 404:
        return ModelNotFoundError(with_fix(message, "check the model name (Azure: the deployment) and the base URL"), **kw)
    if status == 408:
        return ProviderTimeoutError(message, **kw)
    if status in (409, 425):
        return RetryableError(message, **kw)
    if status >= 500:
        return ServerError(message, **kw)
    if code_l in CONTENT_FILTER_CODES:
        return ContentFilterError(message, **kw)
    return BadRequestError(message, param=param, code=code, **kw)
