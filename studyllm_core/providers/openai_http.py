"""The httpx transport: OpenAI-style HTTP APIs over plain httpx, the base of `hyperbolic`, and the
`openai-compatible` provider.

POST {base_url}/chat/completions and {base_url}/embeddings with a Bearer key (when there is one);
HTTP statuses map onto the same error hierarchy as the SDK-based providers, and no request is
retried here. Plain httpx keeps these providers light: importing the OpenAI SDK costs half a
second per process, and third-party servers need none of it.

`openai-compatible` is any server speaking OpenAI's API (vLLM, Ollama, llama.cpp, LM Studio): a base URL
is required and a key optional (sent only when given, so OpenAI's own key never goes to a third-party
server by accident). Embeddings are asked for as base64, as the OpenAI SDK does by default; servers that
ignore the field answer with float lists, which parse the same.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import httpx

from studyllm_core.providers import openai_format
from studyllm_core.providers.base import ChatMessage, ChatResponse, EmbeddingResponse, Provider
from studyllm_core.providers.errors import (
    ConnectFailedError,
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


class OpenAIHTTPProvider(OpenAIClientMixin[httpx.AsyncClient], Provider):
    """An OpenAI-style API at `base_url`, one pooled httpx.AsyncClient per provider.

    Subclasses set the name, whether a key is required, the default base URL, and the
    `encoding_format` asked of /embeddings (None: leave it to the server).
    """

    name: ClassVar[str] = "openai-http"
    api_key_env: ClassVar[str] = ""
    base_url_env: ClassVar[str] = ""
    api_key_required: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = None
    default_embedding_encoding: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 100,
        embedding_encoding: str | None = None,
    ) -> None:
        encoding = embedding_encoding or self.default_embedding_encoding
        self.base_url = check_openai_settings(
            self, api_key=api_key, base_url=base_url, base_url_env=self.base_url_env,
            embedding_encoding=encoding, encoding_may_be_none=True,
        )
        self._api_key = api_key
        self.timeout = check_timeout(timeout, self.name)
        self.max_connections = int(max_connections)
        self.embedding_encoding = encoding
        self._init_client()

    def _make_client(self) -> httpx.AsyncClient:
        """A pooled httpx client for `base_url`, sending the key as a Bearer token when there is one."""
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
        )

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """POST a JSON body; the decoded 2xx JSON and the latency, or a mapped ProviderError.

        `timeout` bounds the whole request (connect, send, wait and read together): httpx's own
        timeouts bound each step, so a server trickling its answer could hold a request for ever.
        """
        start = time.perf_counter()
        error: ProviderError
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client_for_loop().post(path, json=body)
        except (httpx.TimeoutException, TimeoutError):
            error = ProviderTimeoutError(f"{self.name} request timed out after {self.timeout:g} s", provider=self.name)
        except httpx.ConnectError as exc:
            error = ConnectFailedError(
                redact(f"{self.name} cannot connect to {self.base_url} ({connect_reason(exc)})", self.secrets()),
                provider=self.name,
            )
        except httpx.TransportError as exc:
            error = ProviderConnectionError(
                redact(f"{self.name} connection failed: {type(exc).__name__}", self.secrets()), provider=self.name
            )
        else:
            latency_ms = (time.perf_counter() - start) * 1000.0
            if response.status_code >= 400:
                raise error_for_status(
                    response.status_code,
                    response.content,
                    headers=response.headers,
                    provider=self.name,
                    secrets=self.secrets(),
                )
            return openai_format.parse_json_body(response.content, provider=self.name), latency_ms
        raise error  # outside `except`: no chained httpx exception

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
        body = openai_format.chat_body(messages, model=model, temperature=temperature, max_tokens=max_tokens, params=params)
        data, latency_ms = await self._post("chat/completions", body)
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
            texts, model=model, dimensions=dimensions, encoding_format=self.embedding_encoding
        )
        data, latency_ms = await self._post("embeddings", body)
        return openai_format.parse_embeddings(
            data, n_inputs=len(texts), dimensions=dimensions, provider=self.name, model=model, latency_ms=latency_ms
        )

    async def aclose(self) -> None:
        if self._client_closable():
            await self._client.aclose()


class OpenAICompatibleProvider(OpenAIHTTPProvider):
    """An OpenAI-compatible server at `base_url`; `api_key` only if the server checks one."""

    name: ClassVar[str] = "openai-compatible"
    api_key_env: ClassVar[str] = "OPENAI_COMPATIBLE_API_KEY"
    base_url_env: ClassVar[str] = "OPENAI_COMPATIBLE_BASE_URL"
    api_key_required: ClassVar[bool] = False
    default_embedding_encoding: ClassVar[str | None] = "base64"
