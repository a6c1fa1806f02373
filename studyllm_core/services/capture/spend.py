"""SpendGuard: what a failing provider may cost one run, bounded by design.

Retrying is right for faults that pass (a 503, a rate limit, a timeout) and wrong for faults that
come back on every request: a model that rejects a parameter, a proxy answering with an HTML page,
a server returning NaN vectors or ignoring `dimensions`, an account out of credit, a server that is
not there. Retrying those, and splitting batches to find "the bad text", multiplied the requests of
a run by up to `max_attempts x (1 + log2(batch_size))`. A run therefore keeps one guard that every
attempt reports to:

- until one request of the run has succeeded, the run sends one request at a time (`proven`), so
  a provider that is broken from the start costs a handful of requests, not `concurrency` of them;
- errors no retry can fix stop the run at once (auth, unknown model, `insufficient_quota`, a 400
  that names a request parameter): `is_fatal`;
- faults that retrying might fix once but that keep coming back stop it when they repeat with no
  success in between: the same kind of unusable answer `MALFORMED_TRIP` times over at least two
  different requests, the same unexplained 400 for `BAD_REQUEST_TRIP` different requests, or no
  connection at all for `CONNECT_WINDOW_S` seconds over `CONNECT_TRIP` attempts;
- whatever remains is capped by a failure budget: at most one failed request per request the run
  needs (`planned`), and at least `RetryPolicy.min_failure_budget`.

Each stop raises `SystemicFaultError` with one line naming the cause and the fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from studyllm_core.providers.errors import (
    BadRequestError,
    ConnectFailedError,
    MalformedResponseError,
    ProviderError,
    SystemicFaultError,
)
from studyllm_core.providers.http_status import with_fix
from studyllm_core.redaction import redact

MALFORMED_TRIP = 4  # unusable answers in a row (no success between) that stop a run, over >= 2 requests
BAD_REQUEST_TRIP = 3  # different requests rejected with the same unexplained 400
CONNECT_TRIP = 3  # attempts that could not connect at all ...
CONNECT_WINDOW_S = 5.0  # ... over at least this many seconds (a restarting server is back by then)

# What to do about an unusable answer, by MalformedResponseError.reason.
_MALFORMED_FIX = {
    "not_json": "the base URL may point at a web page, proxy or login portal instead of the API: check {where}",
    "truncated_json": "the server or a proxy cuts its answers short: check the server and anything between",
    "nan": "the model or server is broken (NaN/inf in its vectors): check the server's logs or use another model",
    "zero": "the model or server is broken (all-zero vectors): check the server's logs or use another model",
    "dimensions_ignored": "the server ignores `dimensions`: leave out --dimensions (the model's own size is used) "
                          "or use a server that supports it",
    "count": "the server drops inputs from its answers: try a smaller --batch-size or another server",
}
_PARAM_FIX = {
    "dimensions": "leave out --dimensions, or use a model that takes it",
    "temperature": "leave out --temperature, or use a model that takes it",
    "max_tokens": "leave out --max-tokens, or use a model that takes it",
    "max_completion_tokens": "leave out --max-tokens, or use a model that takes it",
    "encoding_format": "use a server that accepts encoding_format (or the openai-compatible provider)",
    "model": "check the model name",
}


@dataclass
class _Streak:
    """One kind of fault seen since the last success."""

    attempts: int = 0
    items: set[str] = field(default_factory=set)
    first_at: float = 0.0
    last: ProviderError | None = None


@dataclass
class SpendGuard:
    """The fault accounting of one run (see the module docstring). Not thread-safe: one event loop."""

    provider: str
    planned: int
    min_failure_budget: int = 20
    where: str = "--base-url"  # how the user sets the server, for messages
    proven: bool = False
    sent: int = 0
    failed: int = 0
    _streaks: dict[tuple[str, ...], _Streak] = field(default_factory=dict)

    @property
    def failure_budget(self) -> int:
        """Failed requests this run may make before it stops."""
        return max(self.min_failure_budget, self.planned)

    def add_planned(self, n: int) -> None:
        """The run needs `n` more requests than it thought (a batch was split)."""
        self.planned += n

    def attempt(self) -> None:
        """A request is about to be sent."""
        self.sent += 1

    def succeeded(self) -> None:
        """A request succeeded: the provider works, so repeated faults so far were chance."""
        self.proven = True
        self._streaks.clear()

    def failed_attempt(self, exc: BaseException, item: str) -> None:
        """Account for a failed attempt at `item` (a batch or request key); raise SystemicFaultError to stop the run."""
        if not isinstance(exc, ProviderError):
            return  # cancellations, database errors: not the provider's doing
        self.failed += 1
        if isinstance(exc, BadRequestError) and exc.cause == "parameter":
            fix = _PARAM_FIX.get(exc.param or "", "change or leave out that setting")
            self._stop(with_fix(exc.message, f"the request parameter '{exc.param}' is refused for every input: {fix}"))
        signature = _signature(exc)
        if signature is not None:
            streak = self._streaks.get(signature)
            if streak is None:
                streak = self._streaks[signature] = _Streak(first_at=time.monotonic())
            streak.attempts += 1
            streak.items.add(item)
            streak.last = exc
            self._check(signature, streak)
        if self.failed > self.failure_budget:
            self._stop(
                f"{self.provider}: {self.failed} failed requests for a run that needs {self.planned} "
                f"(the budget is one failure per request needed, at least {self.min_failure_budget}); "
                f"last error: {exc.message.rstrip('.')}; the provider keeps failing: try again later"
                + ("; rate limits: set --rpm/--tpm below the provider's limits" if exc.kind == "rate_limit" else "")
            )

    def _check(self, signature: tuple[str, ...], streak: _Streak) -> None:
        kind = signature[0]
        last = streak.last
        assert last is not None
        n, items = streak.attempts, len(streak.items)
        if kind == "malformed" and n >= MALFORMED_TRIP and items >= 2:
            fix = _MALFORMED_FIX.get(signature[1], "check the server").format(where=self.where)
            self._stop(with_fix(last.message, f"{n} times in a row over {items} requests, none answered well: {fix}"))
        if kind == "bad_request" and items >= BAD_REQUEST_TRIP:
            self._stop(with_fix(
                last.message, f"{items} different requests rejected in a row, none accepted: the requests, "
                "not single inputs, are refused: check the model and the options given"
            ))
        if kind == "connect" and n >= CONNECT_TRIP and time.monotonic() - streak.first_at >= CONNECT_WINDOW_S:
            seconds = time.monotonic() - streak.first_at
            self._stop(with_fix(last.message, f"for {seconds:.0f} s over {n} attempts: start the server or fix {self.where}"))

    def _stop(self, message: str) -> None:
        raise SystemicFaultError(redact(f"stopped after {self.sent} request(s): {message}"), provider=self.provider)


def _signature(exc: ProviderError) -> tuple[str, ...] | None:
    """The kind of a fault that may be systemic, or None for faults retrying is meant for."""
    if isinstance(exc, MalformedResponseError):
        return ("malformed", exc.reason)
    if isinstance(exc, ConnectFailedError):
        return ("connect",)
    if isinstance(exc, BadRequestError) and exc.cause is None:
        return ("bad_request",)
    return None
