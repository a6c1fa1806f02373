"""The `hyperbolic` provider: Hyperbolic's OpenAI-style API (https://api.hyperbolic.xyz/v1) over httpx."""

from __future__ import annotations

from typing import ClassVar

from studyllm_core.providers.openai_http import OpenAIHTTPProvider


class HyperbolicProvider(OpenAIHTTPProvider):
    """Hyperbolic: a key is required; the base URL defaults to Hyperbolic's API."""

    name: ClassVar[str] = "hyperbolic"
    api_key_env: ClassVar[str] = "HYPERBOLIC_API_KEY"
    base_url_env: ClassVar[str] = "HYPERBOLIC_BASE_URL"
    default_base_url: ClassVar[str | None] = "https://api.hyperbolic.xyz/v1"
