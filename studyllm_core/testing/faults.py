"""The test server's switchboard: which faults to inject, and what it has seen (stdlib only, thread-safe).

`Faults` holds the run-time configuration (latency, random fault mix with a seeded RNG, a queue
of "the next N requests fail with X", valid keys, known models); `Stats` counts requests,
injected faults and how often each text reached /embeddings, and tracks how many API requests are
in flight now and at most at once. Both serialise to plain JSON, the format of the server's
/_admin endpoints.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Every fault the server can inject. Embedding-only kinds (nan, wrong_dim, fewer_vectors) make a
# chat request answer 200 with an empty `choices` list: malformed for the client all the same.
FAULT_KINDS = (
    "rate_limit",      # 429 with Retry-After (seconds, or an HTTP date if retry_after_http_date)
    "server_error",    # 500
    "unavailable",     # 503
    "hang",            # no answer for hang_s seconds (set it longer than the client's timeout)
    "unauthorized",    # 401 whose body echoes the key it received
    "unknown_model",   # 404 model_not_found
    "content_filter",  # 400 with code content_filter
    "malformed_json",  # 200 with a truncated JSON body
    "nan",             # 200, one embedding holds NaN
    "wrong_dim",       # 200, the first embedding has one value too many
    "fewer_vectors",   # 200, the last embedding is missing
    "zero_vectors",    # 200, every embedding is all zeros
    "html",            # 200 with an HTML page (a proxy or captive portal in front of the API)
    "insufficient_quota",  # 429 insufficient_quota: the account is out of credit (OpenAI's wording)
    "context_length",  # 400 context_length_exceeded naming the input
    "bad_request",     # 400 that names neither a parameter nor the input
    "slow_drip",       # 200 with a valid body sent one byte every drip_s seconds
)
EMBEDDING_ONLY_KINDS = frozenset({"nan", "wrong_dim", "fewer_vectors", "zero_vectors"})
KIND_ALIASES = {"429": "rate_limit", "500": "server_error", "503": "unavailable", "401": "unauthorized", "404": "unknown_model"}

# The mix used when `rate` > 0 and no `kinds` are given: the transient faults a client must survive.
DEFAULT_RANDOM_KINDS = {"rate_limit": 1.0, "server_error": 1.0, "unavailable": 1.0, "malformed_json": 1.0}


def normalize_kind(kind: str) -> str:
    """A fault kind by name or HTTP status alias ("429" is "rate_limit"); ValueError if unknown."""
    k = KIND_ALIASES.get(str(kind), str(kind))
    if k not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    return k


@dataclass
class FaultConfig:
    """What the server does to each API request; every field can be changed at run time."""

    latency_s: float = 0.0
    rate: float = 0.0
    kinds: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after_s: float = 1.0
    retry_after_http_date: bool = False
    hang_s: float = 30.0
    shuffle: bool = False
    valid_keys: list[str] | None = None
    known_models: list[str] | None = None
    drip_s: float = 1.0  # seconds between the bytes of a slow_drip answer
    reject_dimensions: bool = False  # 400 (param "dimensions") for any request that names dimensions
    ignore_dimensions: bool = False  # answer with the server's own dimension whatever was asked
    max_input_chars: int | None = None  # 400 context_length_exceeded for an embedding input longer than this
    # model -> canned replies: a chat with that model answers one of them, picked by a hash of the last user
    # message (so two models can be made to answer differently, or alike, for a study of replies)
    replies: dict[str, list[str]] | None = None


_FIELDS = {f.name for f in fields(FaultConfig)}


class Faults:
    """Thread-safe fault switchboard of one server (`srv.faults`)."""

    def __init__(self, **initial: Any) -> None:
        self._lock = threading.Lock()
        self._initial = dict(initial)
        self._config = FaultConfig()
        self._rng = random.Random(0)
        self._queue: deque[tuple[str, str | None]] = deque()
        self.set(**initial)

    def set(self, **changes: Any) -> dict[str, Any]:
        """Change some fields of the configuration (see FaultConfig) and return the whole of it.

        `kinds` takes a list (equal weights) or a {kind: weight} dict; `seed` reseeds the RNG;
        `fail_next` takes {"n": 3, "kind": "rate_limit", "endpoint": "embeddings"|"chat"|None}
        (or a list of those) and queues them like `fail_next()`.
        """
        queued = changes.pop("fail_next", None)
        unknown = set(changes) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(_FIELDS | {'fail_next'})}")
        if "kinds" in changes:
            kinds = changes["kinds"] or {}
            if isinstance(kinds, list | tuple | set):
                kinds = {k: 1.0 for k in kinds}
            changes["kinds"] = {normalize_kind(k): float(w) for k, w in dict(kinds).items()}
        if "rate" in changes and not 0.0 <= float(changes["rate"]) <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        for key in ("valid_keys", "known_models"):
            if key in changes and changes[key] is not None:
                changes[key] = sorted(set(changes[key]))
        with self._lock:
            for key, value in changes.items():
                setattr(self._config, key, value)
            if "seed" in changes:
                self._rng = random.Random(int(changes["seed"]))
        if queued:
            for item in queued if isinstance(queued, list) else [queued]:
                self.fail_next(int(item.get("n", 1)), item["kind"], endpoint=item.get("endpoint"))
        return self.snapshot()

    def fail_next(self, n: int, kind: str, *, endpoint: str | None = None) -> None:
        """Make the next `n` API requests (to `endpoint` only, if given: "chat" or "embeddings") fail with `kind`."""
        kind = normalize_kind(kind)
        if endpoint not in (None, "chat", "embeddings"):
            raise ValueError("endpoint must be 'chat', 'embeddings' or None")
        with self._lock:
            self._queue.extend([(kind, endpoint)] * int(n))

    def reset(self) -> None:
        """Back to the configuration the server started with; the queue is emptied."""
        with self._lock:
            self._config = FaultConfig()
            self._rng = random.Random(0)
            self._queue.clear()
        self.set(**self._initial)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return FaultConfig(**asdict(self._config))

    def snapshot(self) -> dict[str, Any]:
        """The configuration as JSON, plus the queued faults."""
        with self._lock:
            out = asdict(self._config)
            out["queued"] = [{"kind": k, "endpoint": e} for k, e in self._queue]
        return out

    def draw(self, endpoint: str) -> str | None:
        """The fault for the next request to `endpoint` ("chat"/"embeddings"): queued first, then random."""
        with self._lock:
            for i, (kind, target) in enumerate(self._queue):
                if target is None or target == endpoint:
                    del self._queue[i]
                    return kind
            cfg = self._config
            if cfg.rate <= 0:
                return None
            hit = self._rng.random() < cfg.rate
            kinds = cfg.kinds or DEFAULT_RANDOM_KINDS
            if endpoint != "embeddings":
                kinds = {k: w for k, w in kinds.items() if k not in EMBEDDING_ONLY_KINDS}
            if not hit or not kinds or sum(kinds.values()) <= 0:
                return None
            names = sorted(kinds)
            return self._rng.choices(names, weights=[kinds[k] for k in names])[0]


class Stats:
    """Thread-safe counters of one server (`srv.stats`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0  # a live gauge: reset() leaves it alone, requests still running will end
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._peak_in_flight = self._in_flight
            self._total = 0
            self._by_endpoint: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._text_total: Counter[str] = Counter()
            self._text_ok: Counter[str] = Counter()
            self._dropped = 0

    def record_request(self, endpoint: str) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[endpoint] += 1

    def start_request(self) -> Callable[[], None]:
        """Count an API request as in flight (and update the peak); call the result to end it (once).

        The server ends it just before it writes the answer, so a client that waits for one answer
        before it sends the next request never has two in flight.
        """
        ended = False

        def end() -> None:
            nonlocal ended
            with self._lock:
                if not ended:
                    ended = True
                    self._in_flight -= 1

        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        return end

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def record_dropped(self) -> None:
        """Count an answer the client hung up on before it was complete (it gave up waiting)."""
        with self._lock:
            self._dropped += 1

    @property
    def answers_dropped(self) -> int:
        with self._lock:
            return self._dropped

    def record_texts_sent(self, texts: list[str]) -> None:
        """Count texts that reached /embeddings, whatever the answer."""
        with self._lock:
            self._text_total.update(texts)

    def record_texts_ok(self, texts: list[str]) -> None:
        """Count texts that /embeddings answered correctly (no fault injected)."""
        with self._lock:
            self._text_ok.update(texts)

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._total

    @property
    def requests_in_flight(self) -> int:
        """API requests received and not answered yet (latency, hangs and all)."""
        with self._lock:
            return self._in_flight

    @property
    def requests_in_flight_peak(self) -> int:
        """The most API requests that were in flight (received, not yet answered) at once since the last reset."""
        with self._lock:
            return self._peak_in_flight

    def text_count(self, text: str) -> dict[str, int]:
        """How many times `text` was sent to /embeddings: {"ok": ..., "total": ...}."""
        with self._lock:
            return {"ok": self._text_ok[text], "total": self._text_total[text]}

    def snapshot(self, *, include_texts: bool = True) -> dict[str, Any]:
        """All counters as JSON (the body of GET /_admin/stats)."""
        with self._lock:
            out: dict[str, Any] = {
                "requests_total": self._total,
                "requests_by_endpoint": dict(self._by_endpoint),
                "requests_in_flight": self._in_flight,
                "requests_in_flight_peak": self._peak_in_flight,
                "faults_injected": dict(self._faults),
                "answers_dropped": self._dropped,
                "embedding_texts_unique": len(self._text_total),
                "embedding_texts_sent": sum(self._text_total.values()),
                "embedding_texts_ok": sum(self._text_ok.values()),
                "embedding_texts_max_ok_per_text": max(self._text_ok.values(), default=0),
            }
            if include_texts:
                out["embedding_text_counts"] = {
                    t: {"ok": self._text_ok[t], "total": n} for t, n in self._text_total.items()
                }
        return out
