"""LLM providers behind one async interface: build them by name with `create_provider` or `provider_from_env`.

Vendor SDKs (openai, httpx, sentence-transformers) are imported only when their provider is built.
"""

from studyllm_core.providers.base import ChatMessage, ChatResponse, EmbeddingResponse, Provider, TokenUsage
from studyllm_core.redaction import redact
from studyllm_core.providers.registry import available_providers, create_provider, register_provider
from studyllm_core.providers.settings import provider_from_env, settings_from_env

__all__ = [
    "ChatMessage",
    "ChatResponse",
    "EmbeddingResponse",
    "Provider",
    "TokenUsage",
    "available_providers",
    "create_provider",
    "provider_from_env",
    "redact",
    "register_provider",
    "settings_from_env",
]
