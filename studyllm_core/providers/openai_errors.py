"""Map exceptions of the `openai` SDK (and JSON decoding) onto the provider error hierarchy.

The SDK's own messages can quote the server's body, which may echo the API key, so every
message is rebuilt from the status and body and passed through `redact`.
"""

from __future__ import annotations

from collections.abc import Iterable

import openai

from studyllm_core.providers.errors import (
    ConfigurationError,
    ConnectFailedError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from studyllm_core.providers.http_status import error_for_status
from studyllm_core.providers.openai_common import connect_reason
from studyllm_core.redaction import redact


def translate_openai_error(
    exc: BaseException, *, provider: str, secrets: Iterable[str | None] = (), base_url: str | None = None
) -> ProviderError:
    """The ProviderError for an exception raised by an `openai` SDK call."""
    secrets = list(secrets)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        return ProviderTimeoutError(f"{provider} request timed out", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        # The SDK's HTTP client may be httpx or a fork of it (httpx2): match the class by name.
        if cause is not None and any(c.__name__ == "ConnectError" for c in type(cause).__mro__):
            where = f" to {base_url}" if base_url else ""
            return ConnectFailedError(
                redact(f"{provider} cannot connect{where} ({connect_reason(cause)})", secrets), provider=provider
            )
        detail = f": {type(cause).__name__}" if cause is not None else ""
        return ProviderConnectionError(redact(f"{provider} connection failed{detail}", secrets), provider=provider)
    if isinstance(exc, openai.APIResponseValidationError):
        return MalformedResponseError(
            redact(f"{provider} returned a response that does not match the API schema", secrets),
            status_code=exc.status_code,
            provider=provider,
        )
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        try:
            body = exc.response.json()
        except Exception:  # noqa: BLE001 - a non-JSON error body is still an error body
            try:
                body = exc.response.text
            except Exception:  # noqa: BLE001
                pass
        return error_for_status(
            exc.status_code, body, headers=exc.response.headers, provider=provider, secrets=secrets
        )
    if isinstance(exc, ValueError):  # json.JSONDecodeError and friends from decoding a 2xx body
        return MalformedResponseError(f"{provider} returned a body that is not valid JSON", provider=provider)
    if isinstance(exc, openai.OpenAIError):
        return ConfigurationError(redact(f"{provider} client error: {exc}", secrets), provider=provider)
    return ProviderError(redact(f"{provider} call failed: {type(exc).__name__}: {exc}", secrets), provider=provider)
