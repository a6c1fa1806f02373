"""The SDK transport and the `openai` provider: chat and embeddings through the official SDK's AsyncOpenAI client.

The SDK never retries (`max_retries=0`): the service layer retries with tenacity and records
each attempt. Responses are read raw and validated by `openai_format`, so OpenAI, Azure and
compatible servers share one set of checks. Subclasses change only how the client is built,
which model name goes on the wire, and whether a key is required.

The SDK's exceptions are mapped onto the provider error hierarchy here (`translate_openai_error`). The SDK's
own messages can quote the server's body, which may echo the API key, so every message is rebuilt from
the status and body and passed through `redact`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import openai
from openai._base_client import make_request_options
from openai._legacy_response import HttpxBinaryResponseContent

from studyllm_core.providers import openai_format
from studyllm_core.providers.base import ChatMessage, ChatResponse, EmbeddingResponse, Provider
from studyllm_core.providers.errors import (
    ConfigurationError,
    ConnectFailedError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from studyllm_core.providers.http_status import error_for_status
from studyllm_core.providers.openai_common import (
    OpenAIClientMixin,
    check_openai_settings,
    check_timeout,
    connect_reason,
    require_model,
)
from studyllm_core.redaction import redact

DEFAULT_TIMEOUT_S = 60.0


class OpenAIProvider(OpenAIClientMixin[openai.AsyncOpenAI], Provider):
    """OpenAI's API (or any base URL speaking it) via `openai.AsyncOpenAI`, one client per provider."""

    name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    api_key_required: ClassVar[bool] = True
    api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    # OpenAI deprecated `max_tokens`; its reasoning and newer models reject it (see chat_body).
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        embedding_encoding: str = "base64",
        default_headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = check_openai_settings(
            self, api_key=api_key, base_url=base_url, base_url_env=self.base_url_env(),
            embedding_encoding=embedding_encoding, encoding_may_be_none=False,
        )
        self._api_key = api_key
        self.organization = organization
        self.project = project
        self.timeout = check_timeout(timeout, self.name)
        self.embedding_encoding = embedding_encoding
        self._default_headers = dict(default_headers or {})
        self._init_client()

    # -- hooks for subclasses -------------------------------------------------------------------

    @classmethod
    def base_url_env(cls) -> str:
        return "OPENAI_BASE_URL"

    def _make_client(self) -> openai.AsyncOpenAI:
        # Everything is passed explicitly so the SDK never falls back to OPENAI_* variables.
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            organization=self.organization,
            project=self.project,
            timeout=self.timeout,
            max_retries=0,
            default_headers=self._default_headers or None,
        )

    def _wire_model(self, model: str) -> str:
        """The model name sent in the request body (Azure sends the deployment name)."""
        return model

    async def _request(self, send: Callable[[], Awaitable[bytes]]) -> tuple[Any, float]:
        """Run one request under the whole-request timeout (not each read; see openai_http), translate
        the SDK's errors, and return the parsed JSON body with the latency in ms."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                content = await send()
        except TimeoutError:
            error = ProviderTimeoutError(f"{self.name} request timed out after {self.timeout:g} s", provider=self.name)
        except (openai.OpenAIError, ValueError) as exc:
            error = translate_openai_error(exc, provider=self.name, secrets=self.secrets(), base_url=self.base_url)
        else:
            latency_ms = (time.perf_counter() - start) * 1000.0
            return openai_format.parse_json_body(content, provider=self.name), latency_ms
        raise error  # outside `except`, so the SDK exception (which may quote a key) is not chained

    # -- the Provider interface ----------------------------------------------------------------

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> ChatResponse:
        require_model(model, self.name)
        body = openai_format.chat_body(
            messages, model=self._wire_model(model), temperature=temperature, max_tokens=max_tokens, params=params,
            max_tokens_field=self.max_tokens_field,
        )
        extra = {k: v for k, v in body.items() if k not in ("model", "messages")}

        async def send() -> bytes:
            raw = await self._client_for_loop().chat.completions.with_raw_response.create(
                model=body["model"], messages=body["messages"], extra_body=extra or None
            )
            return raw.http_response.content

        data, latency_ms = await self._request(send)
        return openai_format.parse_chat(data, provider=self.name, model=model, latency_ms=latency_ms)

    async def embed(
        self,
        texts: list[str],
        *,
        model: str,
        dimensions: int | None = None,
    ) -> EmbeddingResponse:
        require_model(model, self.name)
        if not texts:
            return openai_format.empty_embeddings(dimensions=dimensions, provider=self.name, model=model)
        body = openai_format.embeddings_body(
            texts, model=self._wire_model(model), dimensions=dimensions, encoding_format=self.embedding_encoding
        )

        async def send() -> bytes:
            # The plain POST skips the SDK's per-item request transform (12 ms for 256 inputs) and
            # its response models; the body is already the wire format and we parse it ourselves.
            response = await self._client_for_loop().post(
                "/embeddings",
                body=body,
                cast_to=HttpxBinaryResponseContent,
                options=make_request_options(security={"bearer_auth": True}),
            )
            return response.content

        data, latency_ms = await self._request(send)
        return openai_format.parse_embeddings(
            data, n_inputs=len(texts), dimensions=dimensions, provider=self.name, model=model, latency_ms=latency_ms
        )

    async def aclose(self) -> None:
        if self._client_closable():
            await self._client.close()


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
