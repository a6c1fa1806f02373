"""The `openai-compatible` provider: any server speaking OpenAI's API (vLLM, Ollama, llama.cpp, LM Studio).

A base URL is required and a key optional (sent only when given, so OpenAI's own key never goes
to a third-party server by accident). Embeddings are asked for as base64, as the OpenAI SDK
does by default; servers that ignore the field answer with float lists, which parse the same.
"""

from __future__ import annotations

from typing import ClassVar

from studyllm_core.providers.openai_http import OpenAIHTTPProvider


class OpenAICompatibleProvider(OpenAIHTTPProvider):
    """An OpenAI-compatible server at `base_url`; `api_key` only if the server checks one."""

    name: ClassVar[str] = "openai-compatible"
    api_key_env: ClassVar[str] = "OPENAI_COMPATIBLE_API_KEY"
    base_url_env: ClassVar[str] = "OPENAI_COMPATIBLE_BASE_URL"
    api_key_required: ClassVar[bool] = False
    default_embedding_encoding: ClassVar[str | None] = "base64"
