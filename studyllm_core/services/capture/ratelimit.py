"""Per-provider rate limits (requests and tokens per minute), shared by every service in a process."""

from __future__ import annotations

from dataclasses import dataclass

from aiolimiter import AsyncLimiter


@dataclass(frozen=True)
class RateLimit:
    """Limits per minute; None means unlimited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


class RateLimiter:
    """Leaky-bucket limits (aiolimiter) on requests and on tokens, awaited before each API call."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._requests = AsyncLimiter(limit.requests_per_minute, 60) if limit.requests_per_minute else None
        self._tokens = AsyncLimiter(limit.tokens_per_minute, 60) if limit.tokens_per_minute else None

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one more request of about `tokens` tokens fits in both budgets."""
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None and tokens > 0:
            # A request larger than the whole budget would wait forever: charge it the full budget.
            await self._tokens.acquire(min(tokens, self._tokens.max_rate))


_limiters: dict[str, RateLimiter] = {}


def limiter_for(key: str, limit: RateLimit | None) -> RateLimiter | None:
    """The process-wide limiter of provider `key` (created with `limit` on first use)."""
    if limit is None or (limit.requests_per_minute is None and limit.tokens_per_minute is None):
        return None
    limiter = _limiters.get(key)
    if limiter is None or limiter.limit != limit:
        limiter = _limiters[key] = RateLimiter(limit)
    return limiter


def estimate_tokens(text: str) -> int:
    """A cheap token estimate for budgeting (about 4 characters per token)."""
    return max(1, len(text) // 4)
