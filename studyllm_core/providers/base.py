"""The provider contract: one async interface for chat completions and embeddings.

Every provider returns the standard response objects below and raises only the errors of
`studyllm_core.providers.errors`, so services can retry, record and report without knowing
which vendor answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from studyllm_core.providers.errors import UnsupportedOperation

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TokenUsage:
    """Token counts reported by the provider (zeros when it reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class ChatResponse:
    """One chat completion (one choice)."""

    text: str
    provider: str
    model: str
    usage: TokenUsage
    latency_ms: float
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbeddingResponse:
    """Vectors for a batch of inputs, row i for input i, as a float32 array of shape (n, d)."""

    vectors: np.ndarray
    provider: str
    model: str
    usage: TokenUsage
    latency_ms: float
    raw: dict[str, Any] = field(default_factory=dict)


class Provider:
    """Base class of all providers.

    Subclasses set `name` and override whichever of `chat`/`embed` they support; the default
    of the other raises `UnsupportedOperation`. Constructors take plain keyword settings
    (api_key, base_url, model, timeout, ...) so the registry can build any provider from configuration.
    """

    name: ClassVar[str] = "base"

    @classmethod
    def supports(cls, operation: str) -> bool:
        """Whether the provider offers `operation` ("chat" or "embed"): it overrides the base's refusal."""
        if operation not in ("chat", "embed"):
            raise ValueError(f"unknown operation {operation!r}: 'chat' or 'embed'")
        return getattr(cls, operation) is not getattr(Provider, operation)

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> ChatResponse:
        """One chat completion; by default UnsupportedOperation (the provider only embeds)."""
        raise UnsupportedOperation(
            f"the {self.name} provider does not support chat; use a chat provider such as openai or extractive",
            provider=self.name,
        )

    async def embed(
        self,
        texts: list[str],
        *,
        model: str,
        dimensions: int | None = None,
    ) -> EmbeddingResponse:
        """Vectors for `texts`; by default UnsupportedOperation (the provider only chats)."""
        raise UnsupportedOperation(
            f"the {self.name} provider does not support embeddings; use an embedding provider such as openai or local",
            provider=self.name,
        )

    def endpoint(self) -> str | None:
        """The server requests go to (recorded with every call); None for offline providers."""
        return None

    def embedding_server(self) -> str | None:
        """The server, when it is part of the embedding space (and so of the cache key); None when the
        provider and model name alone say which model made a vector (a vendor's own API, an offline model).

        The rule of the built-ins: `openai-compatible` always names its server (two servers may serve
        different models under one name); `openai` and `hyperbolic` only at a base URL other than the
        vendor's; `azure`, `local` and `extractive` never.
        """
        return None

    async def aclose(self) -> None:
        """Release HTTP clients; safe to call twice."""
        return None
