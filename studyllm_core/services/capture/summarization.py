"""SummarizationService: one chat call per list of texts (a cluster), each recorded through InferenceService.

The prompt is the instructions followed by the texts written with the extractive provider's
`format_texts` (one "- " bullet per text), so the same call works with an LLM and with the
offline `extractive` provider. Calls of a run join a `summarization_batch` group; a list that
cannot be summarised is reported in `failures`, never dropped silently, and errors that doom
every call (bad key, unknown model) stop the run at once.

`as_summarize_fn` gives the synchronous `summarize(texts) -> str` the clustering code calls once
per cluster per round; `summarizer_from_spec` builds a service from a CLI spec.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from studyllm_core.db.engine import open_database
from studyllm_core.errors import InputError
from studyllm_core.providers.base import Provider
from studyllm_core.providers.extractive import BULLET, format_texts
from studyllm_core.providers.extractive import DEFAULT_MODEL as EXTRACTIVE_MODEL
from studyllm_core.providers.registry import create_provider, normalize_name
from studyllm_core.providers.settings import provider_from_env
from studyllm_core.services.capture.recording import ensure_run_group
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.capture.ratelimit import RateLimit
from studyllm_core.services.capture.retry import RetryPolicy

GROUP_TYPE = "summarization_batch"
DEFAULT_INSTRUCTIONS = (
    "Summarise what the following texts have in common in one short sentence. "
    "Answer with the summary only. The texts, one per bullet:"
)
NO_TEXTS = "no texts to summarise"


@dataclass
class SummarizationResult:
    """Summaries in input order (None where a list failed), their raw calls, and the failures."""

    summaries: list[str | None]
    raw_call_ids: list[int | None]
    failures: dict[int, str]
    group_id: int | None = None
    api_requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


class SummarizationService:
    """Summaries of text lists by one provider and model, every call recorded and grouped."""

    def __init__(
        self,
        engine: Engine,
        provider: Provider,
        *,
        provider_name: str,
        model: str,
        instructions: str = DEFAULT_INSTRUCTIONS,
        temperature: float | None = None,
        max_tokens: int | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        concurrency: int = 8,
    ) -> None:
        check_instructions(instructions)
        self.instructions = instructions
        self.temperature = temperature
        self.max_tokens = max_tokens
        # No preprocessing: whitespace cleaning would strip the bullets' continuation indent, and
        # truncation would drop whole texts from a large cluster.
        self.inference = InferenceService(
            engine, provider, provider_name=provider_name, model=model, retry=retry, rate_limit=rate_limit,
            concurrency=concurrency, preprocess=None,
        )

    @property
    def engine(self) -> Engine:
        return self.inference.engine

    def build_prompt(self, texts: Sequence[str], instructions: str | None = None) -> str:
        """Instructions, a blank line, then one bullet per non-blank text; "" when there is no text."""
        kept = [t for t in texts if isinstance(t, str) and t.strip()]
        if not kept:
            return ""
        return f"{instructions or self.instructions}\n\n{format_texts(kept)}"

    async def asummarize_batch(
        self,
        text_lists: Sequence[Sequence[str]],
        *,
        instructions: str | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
    ) -> SummarizationResult:
        """One summary per text list; calls join a `summarization_batch` group (given, named, or made now)."""
        if instructions is not None:
            check_instructions(instructions)
        prompts = [self.build_prompt(texts, instructions) for texts in text_lists]
        if group_id is None:
            group_id = self.ensure_group(group_name, lists=len(prompts))
        batch = await self.inference.arun_batch(
            prompts, temperature=self.temperature, max_tokens=self.max_tokens, group_id=group_id,
            metadata={"task": "summarize"},
        )
        failures = {
            i: (NO_TEXTS if not prompts[i] else r.error or "")
            for i, r in enumerate(batch.results) if not r.ok
        }
        return SummarizationResult(
            summaries=[r.text if r.ok else None for r in batch.results],
            raw_call_ids=[r.raw_call_id for r in batch.results],
            failures=failures,
            group_id=group_id,
            api_requests=batch.api_requests,
        )

    def summarize_batch(
        self,
        text_lists: Sequence[Sequence[str]],
        *,
        instructions: str | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
    ) -> SummarizationResult:
        """Synchronous `asummarize_batch`."""
        return self.inference.call_sync(
            self.asummarize_batch(text_lists, instructions=instructions, group_id=group_id, group_name=group_name)
        )

    def as_summarize_fn(
        self, *, instructions: str | None = None, group_id: int | None = None, group_name: str | None = None
    ) -> SummarizeFn:
        """A synchronous `summarize(texts) -> str` for `k_llmmeans(summarize=...)`; its calls share one group."""
        if instructions is not None:
            check_instructions(instructions)
        return SummarizeFn(self, instructions=instructions, group_id=group_id, group_name=group_name)

    def ensure_group(self, name: str | None = None, **metadata: Any) -> int:
        """The `summarization_batch` group named `name` (or a new auto-named one)."""
        inf = self.inference
        meta = {"provider": inf.provider_name, "model": inf.model, "temperature": self.temperature, **metadata}
        return ensure_run_group(self.engine, GROUP_TYPE, name, label=f"summarize:{inf.provider_name}:{inf.model}", metadata=meta)

    def close(self) -> None:
        """Stop the background loop of the synchronous methods (see `InferenceService.close`)."""
        self.inference.close()


@dataclass
class SummarizeFn:
    """`fn(texts) -> summary` (and `fn.many(groups)` for several at once), callable from synchronous
    code; raises the provider's error when a call fails.

    Its calls join one `summarization_batch` group (created on the first call unless given);
    `raw_call_ids` lists them in call order, for provenance.
    """

    service: SummarizationService
    instructions: str | None = None
    group_id: int | None = None
    group_name: str | None = None
    raw_call_ids: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, texts: list[str]) -> str:
        return self.many([texts])[0]

    def many(self, groups: list[list[str]]) -> list[str]:
        """One summary per group of texts, the calls sent concurrently (k-LLMmeans summarises all
        clusters of a round through this); raises the first failed call's error."""
        prompts = [self.service.build_prompt(texts, self.instructions) for texts in groups]
        for texts, prompt in zip(groups, prompts, strict=True):
            if not prompt:
                raise InputError(f"summarize got {len(texts)} texts and none has content: pass at least one non-blank text")
        with self._lock:
            if self.group_id is None:
                self.group_id = self.service.ensure_group(self.group_name, purpose="summarize_fn")
        batch = self.service.inference.run_batch(
            prompts, temperature=self.service.temperature, max_tokens=self.service.max_tokens, group_id=self.group_id,
            metadata={"task": "summarize"},
        )
        self.raw_call_ids.extend(r.raw_call_id for r in batch.results if r.raw_call_id is not None)
        for result in batch.results:
            result.raise_for_error()
        return [r.text or "" for r in batch.results]


def check_instructions(instructions: str) -> None:
    """InputError when a line of `instructions` starts with "- ", which would read as a text to summarise."""
    if any(line.startswith(BULLET) for line in instructions.splitlines()):
        raise InputError(
            f"summary instructions must not have lines starting with {BULLET!r} (that marks a text): use '* ' for lists"
        )


def summarizer_from_spec(
    spec: str,
    engine: Engine | None = None,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    **service_options: Any,
) -> SummarizationService:
    """A service from "extractive" (offline, no key) or "PROVIDER:MODEL" (keys from the environment)."""
    name, sep, model = spec.strip().partition(":")
    key = normalize_name(name) if name else ""
    if key == "extractive":
        provider: Provider = create_provider("extractive")
        model = model or EXTRACTIVE_MODEL
    elif not sep or not key or not model:
        raise InputError(f"summarizer {spec!r} must be 'extractive' or PROVIDER:MODEL, e.g. openai:gpt-4o-mini")
    else:
        provider = provider_from_env(key, base_url=base_url, timeout=timeout)
    if engine is None:
        engine = open_database()
    return SummarizationService(engine, provider, provider_name=key, model=model, **service_options)
