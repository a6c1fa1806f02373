"""Retry policy for provider calls, on tenacity: exponential backoff with jitter, Retry-After honoured.

Only retryable provider errors are retried; permanent ones (auth, bad request, unknown model)
fail on the first attempt, and an unusable answer is tried at most `max_malformed_attempts` times
(the same garbage three times is not chance). Callers record each attempt themselves and account
for it in their run's `SpendGuard`, so the policy only decides whether and when to try again.
Every wait is logged on `studyllm.retry` (what is retried, why, and when): at INFO, and at WARNING
when the wait is long enough for a user to wonder whether the run hangs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from studyllm_core.logging_config import get_logger
from studyllm_core.providers.errors import (
    BadRequestError,
    ContentFilterError,
    MalformedResponseError,
    PermanentError,
    ProviderError,
    RateLimitError,
)

T = TypeVar("T")

log = get_logger("retry")
LOUD_WAIT_S = 5.0  # waits at least this long are logged as warnings (shown on the console)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, backoff bounds and a cap on total time per request."""

    # 10 attempts: with 30% of requests failing at random, a request still fails all of them
    # only about once in 170,000 tries; backoff caps keep the worst case near five minutes.
    max_attempts: int = 10
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    max_total_s: float = 600.0
    max_retry_after_s: float = 120.0  # a server asking for longer is waited for this long at most
    max_malformed_attempts: int = 3  # tries of one request whose answers are unusable (NaN, not JSON, ...)
    min_failure_budget: int = 20  # failed requests any run may make (see services.spend.SpendGuard)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def is_fatal(exc: BaseException) -> bool:
    """True for errors that doom every request of a run (bad key, unknown model, bad configuration).

    A run stops at the first of these instead of repeating it for each item; permanent errors
    about one request's content (bad request, content filter) fail only that request.
    """
    return isinstance(exc, PermanentError) and not isinstance(exc, (BadRequestError, ContentFilterError))


class _WaitRetryAfter:
    """Wait what the server asked for (Retry-After) when it did, else exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_exponential_jitter(multiplier=policy.initial_wait_s, max=policy.max_wait_s, jitter=policy.initial_wait_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.policy.max_retry_after_s)
        return self.backoff(state)


def _stop_malformed(policy: RetryPolicy) -> Callable[[RetryCallState], bool]:
    """Stop once this request got `max_malformed_attempts` unusable answers (other failures do not count)."""
    seen = 0

    def stop(state: RetryCallState) -> bool:
        nonlocal seen
        if isinstance(state.outcome.exception() if state.outcome else None, MalformedResponseError):
            seen += 1
        return seen >= policy.max_malformed_attempts

    return stop


def _log_wait(what: str, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.log(
            logging.WARNING if wait >= LOUD_WAIT_S else logging.INFO,
            "retrying %s in %.1f s (attempt %d of %d failed: %s)",
            what, wait, state.attempt_number, policy.max_attempts, exc,
        )

    return before_sleep


async def call_with_retries(attempt: Callable[[int], Awaitable[T]], policy: RetryPolicy, *, what: str = "a request") -> T:
    """Run `attempt(n)` (n = 1, 2, ...) until it succeeds, fails permanently, or the policy gives up.

    The last exception propagates unchanged, so callers see the real provider error. `what` names
    the request in the retry log lines.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retryable),
        wait=_WaitRetryAfter(policy),
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_total_s) | _stop_malformed(policy),
        before_sleep=_log_wait(what, policy),
        reraise=True,
    )
    async for state in retrying:
        with state:
            return await attempt(state.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
