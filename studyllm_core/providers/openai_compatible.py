"""The `openai-compatible` provider: any server speaking OpenAI's API (vLLM, Ollama, llama.cpp, LM Studio).

Same implementation as `openai`; the differences are that a base URL is required, the key is
optional, and OpenAI's own key is never sent to a third-party server by accident.
"""

from __future__ import annotations

from typing import ClassVar

import openai

from studyllm_core.providers.openai_provider import DEFAULT_TIMEOUT_S, OpenAIProvider

# Sent when the server needs no key (vLLM's convention); the SDK insists on some value.
PLACEHOLDER_API_KEY = "EMPTY"


class OpenAICompatibleProvider(OpenAIProvider):
    """An OpenAI-compatible server at `base_url`; `api_key` only if the server checks one."""

    name: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str | None] = None
    api_key_required: ClassVar[bool] = False
    api_key_env: ClassVar[str] = "OPENAI_COMPATIBLE_API_KEY"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        embedding_encoding: str = "float",
        default_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key or PLACEHOLDER_API_KEY,
            base_url=base_url,
            timeout=timeout,
            embedding_encoding=embedding_encoding,
            default_headers=default_headers,
        )

    @classmethod
    def base_url_env(cls) -> str:
        return "OPENAI_COMPATIBLE_BASE_URL"

    def _make_client(self) -> openai.AsyncOpenAI:
        client = super()._make_client()
        # The SDK fills these from OPENAI_ORG_ID / OPENAI_PROJECT_ID; they are OpenAI's, not this server's.
        client.organization = None
        client.project = None
        return client

    def secrets(self) -> list[str]:
        return [s for s in (self._api_key,) if s and s != PLACEHOLDER_API_KEY]
