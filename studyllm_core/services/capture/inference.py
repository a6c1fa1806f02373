"""InferenceService: chat completions with retries, rate limits, batching, sampling and in-flight
de-duplication, every attempt recorded in `raw_calls`.

A request is the processed chat messages, the model, the parameters and a sample index; its
`request_hash` (`content_hash` over provider, model, messages, parameters and sample index) is its
identity. A run (one prompt, a batch, or n samples of a prompt):

1. turns each input into chat messages and preprocesses its prompt (the last user message);
   unusable prompts (empty, invalid UTF-8, no user message) are recorded as failed raw calls in
   one insert and reported, never sent;
2. collapses identical requests of the run into one, and joins identical requests already in
   flight in this service: one API call and one raw call, shared by all of them. Samples of a
   prompt differ in their sample index, so they are never collapsed;
3. sends requests one at a time until one succeeds (a wrong key, model or URL fails once, not
   `concurrency` times), then the rest with bounded concurrency under the provider's rate limit,
   retrying transient errors; every attempt becomes a raw call, written by group commit (`CallQueue`);
4. continues past failures of single requests (reported in the result); an error that dooms
   every request (bad key, unknown model, out of quota, a refused parameter) stops the run at
   once and is raised, and so does a fault that keeps coming back or a run that used up its
   failure budget (`SpendGuard`); attempts still in flight are recorded as cancelled.

A run with a group that already holds successful answers sends only the requests without one
(`resume`): a killed `prompts run` re-run with the same `--group` picks up where it stopped.

Synchronous methods (`run`, `run_batch`, `run_samples`) run the async ones (`arun`, ...) on the
service's own background loop (`LoopThread`), so they work from plain scripts and from threads.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Engine

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.vocabulary import ROLE_INPUT
from studyllm_core.errors import InputError
from studyllm_core.logging_config import get_logger
from studyllm_core.providers.base import ChatMessage, ChatResponse, Provider, TokenUsage
from studyllm_core.providers.errors import MalformedResponseError, ProviderError
from studyllm_core.providers.registry import require_operation
from studyllm_core.redaction import redact
from studyllm_core.services.capture.by_name import BuiltByName
from studyllm_core.services.capture.cache_key import content_hash, invalid_text_reason, space_provider, unusable_reason
from studyllm_core.services.capture.recording import (
    CallQueue,
    CallRecorder,
    ensure_run_group,
    error_json,
    input_error_json,
    shown_input,
    redact_json,
    run_metadata,
    status_for,
)
from studyllm_core.services.capture.loop_thread import LoopThread
from studyllm_core.services.capture.preprocess import Preprocessor
from studyllm_core.services.capture.ratelimit import RateLimit, estimate_tokens, limiter_for
from studyllm_core.services.capture.retry import RetryPolicy, call_with_retries, is_fatal
from studyllm_core.services.capture.spend import SpendGuard
from studyllm_core.services.capture.tasks import gather_or_cancel

log = get_logger("services.inference")

REQUEST_KEY_VERSION = "chat-v1"  # bump when what makes two chat requests identical changes

Message = ChatMessage | Mapping[str, Any]
PromptInput = str | Sequence[Message]
ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class InferenceResult:
    """The outcome of one request: the reply, or the error after the last attempt.

    `raw_call_id` is the successful attempt's raw call (or the last failed one); every attempt's
    id is in `attempt_call_ids`. `shared` is True when the request joined an identical one;
    `resumed` when its answer was recorded in the group by an earlier run (nothing was sent).
    """

    text: str | None
    raw_call_id: int | None
    attempts: int
    usage: TokenUsage | None = None
    latency_ms: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_type: str | None = None
    prompt: str = ""
    sample_index: int = 0
    request_hash: str | None = None
    shared: bool = False
    resumed: bool = False
    attempt_call_ids: list[int] = field(default_factory=list)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> None:
        """Raise the provider error (or an InputError for a rejected prompt) if the request failed."""
        if self.exception is not None:
            raise self.exception
        if self.error is not None:
            raise InputError(self.error)


@dataclass
class BatchResult:
    """Results of a batch or sample run in input order: index = prompt_index * samples + sample_index."""

    results: list[InferenceResult]
    samples: int
    group_id: int | None
    api_requests: int

    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return self.calls - self.succeeded

    @property
    def skipped(self) -> int:
        """Requests answered by an earlier run in the same group, not sent again."""
        return sum(r.resumed for r in self.results)

    @property
    def failures(self) -> dict[int, str]:
        """Index -> error message of every failed request."""
        return {i: r.error for i, r in enumerate(self.results) if r.error is not None}

    @property
    def texts(self) -> list[str | None]:
        return [r.text for r in self.results]

    def result(self, prompt_index: int, sample_index: int = 0) -> InferenceResult:
        return self.results[prompt_index * self.samples + sample_index]

    def summary(self) -> dict[str, Any]:
        """The counts the CLI prints with --json."""
        return {
            "calls": self.calls,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "api_requests": self.api_requests,
            "group_id": self.group_id,
        }


@dataclass
class _Request:
    """One prepared request (or the reason it cannot be sent)."""

    messages: list[ChatMessage]
    original_prompt: str
    prompt: str
    sample_index: int
    input_index: int
    request_hash: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class _Settings:
    """Per-run request parameters and caller metadata."""

    temperature: float | None
    max_tokens: int | None
    params: dict[str, Any]
    metadata: dict[str, Any]


class InferenceService(BuiltByName):
    """Recorded, retried, rate-limited, de-duplicated chat completions for one provider and model."""

    def __init__(
        self,
        engine: Engine,
        provider: Provider,
        *,
        provider_name: str,
        model: str,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        concurrency: int = 8,
        preprocess: Preprocessor | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        require_operation(provider, provider_name, "chat")  # refused here: nothing sent, nothing recorded
        self.engine = engine
        self.provider = provider
        self.provider_name = provider_name
        self.model = model
        self.retry = retry or RetryPolicy()
        self.limiter = limiter_for(provider_name, rate_limit)
        self.concurrency = concurrency
        self.preprocess = preprocess
        self._sync = LoopThread(f"studyllm-inference-{provider_name}")
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        # (event loop, request_hash) -> the result of the identical request in flight
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[InferenceResult]] = {}

    # -- public API -----------------------------------------------------------------------------

    def request_hash(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        sample_index: int = 0,
        **params: Any,
    ) -> str:
        """The identity of a request: equal hashes are the same request (shared while in flight)."""
        wire = [{"role": m.role, "content": m.content} for m in messages]
        settings = {"temperature": temperature, "max_tokens": max_tokens, **params}
        return content_hash(
            REQUEST_KEY_VERSION,
            space_provider(self.provider_name, self.provider.embedding_server()),  # the server, where it names the model
            self.model,
            json.dumps(wire, ensure_ascii=False, separators=(",", ":")),
            json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":")),
            str(sample_index),
        )

    async def arun(
        self,
        prompt: PromptInput,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> InferenceResult:
        """One request (a prompt, or chat messages); failures, even fatal ones, come back in the result."""
        settings = _Settings(temperature, max_tokens, dict(params), dict(metadata or {}))
        request = self._prepare(prompt, 0, 0, settings)
        run = _Run(self, group_id, settings, None)
        [result] = await run.execute([request], stop_on_fatal=False)
        return result

    def run(
        self,
        prompt: PromptInput,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> InferenceResult:
        """Synchronous `arun`."""
        return self.call_sync(
            self.arun(prompt, temperature=temperature, max_tokens=max_tokens, group_id=group_id, metadata=metadata, **params)
        )

    async def arun_batch(
        self,
        prompts: Sequence[PromptInput],
        *,
        samples: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        resume: bool = True,
        **params: Any,
    ) -> BatchResult:
        """Every prompt (`samples` times each); calls join a `batch` group (given, named, or made for this run).

        With `resume`, requests that already have a successful call in the group are not sent again:
        their recorded answers come back (`resumed`), so a killed run re-run with its group finishes it.
        """
        return await self._run_many(
            list(prompts), samples=samples, group_type="batch", temperature=temperature, max_tokens=max_tokens,
            group_id=group_id, group_name=group_name, metadata=metadata, progress=progress, params=params,
            resume=resume,
        )

    def run_batch(
        self,
        prompts: Sequence[PromptInput],
        *,
        samples: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        resume: bool = True,
        **params: Any,
    ) -> BatchResult:
        """Synchronous `arun_batch`."""
        return self.call_sync(
            self.arun_batch(
                prompts, samples=samples, temperature=temperature, max_tokens=max_tokens, group_id=group_id,
                group_name=group_name, metadata=metadata, progress=progress, resume=resume, **params,
            )
        )

    async def arun_samples(
        self,
        prompt: PromptInput,
        n: int,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> BatchResult:
        """`n` independent samples of one prompt (never collapsed); calls join a `prompt_run` group."""
        return await self._run_many(
            [prompt], samples=n, group_type="prompt_run", temperature=temperature, max_tokens=max_tokens,
            group_id=group_id, group_name=group_name, metadata=metadata, progress=None, params=params, resume=True,
        )

    def run_samples(
        self,
        prompt: PromptInput,
        n: int,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        group_id: int | None = None,
        group_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> BatchResult:
        """Synchronous `arun_samples`."""
        return self.call_sync(
            self.arun_samples(
                prompt, n, temperature=temperature, max_tokens=max_tokens, group_id=group_id,
                group_name=group_name, metadata=metadata, **params,
            )
        )

    def call_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the service's background loop (the synchronous methods of this and related services)."""
        return self._sync.run(coro)

    def close(self) -> None:
        """Stop the background loop of the synchronous methods, closing the HTTP client the provider opened on it.

        The provider itself stays usable: on another event loop it opens a new client.
        """
        self._sync.shutdown(self.provider.aclose)

    def _slots(self) -> asyncio.Semaphore:
        """The semaphore bounding this service's API calls in flight on the running loop (all its runs together)."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return semaphore

    # -- preparation ----------------------------------------------------------------------------

    async def _run_many(
        self,
        prompts: list[PromptInput],
        *,
        samples: int,
        group_type: str,
        temperature: float | None,
        max_tokens: int | None,
        group_id: int | None,
        group_name: str | None,
        metadata: dict[str, Any] | None,
        progress: ProgressFn | None,
        params: dict[str, Any],
        resume: bool,
    ) -> BatchResult:
        if samples < 1:
            raise InputError(f"samples must be at least 1, got {samples}")
        settings = _Settings(temperature, max_tokens, dict(params), dict(metadata or {}))
        if group_id is None:
            group_id = await asyncio.to_thread(self._ensure_group, group_type, group_name, len(prompts), samples, settings)
        requests = [
            self._prepare(prompt, index, sample, settings) for index, prompt in enumerate(prompts) for sample in range(samples)
        ]
        answered: dict[str, InferenceResult] = {}
        if resume:
            hashes = sorted({r.request_hash for r in requests if r.problem is None})
            answered = await asyncio.to_thread(self._answered, group_id, hashes)
        run = _Run(self, group_id, settings, progress)
        results = await run.execute(requests, stop_on_fatal=True, answered=answered)
        return BatchResult(results=results, samples=samples, group_id=group_id, api_requests=run.api_requests)

    def _answered(self, group_id: int, hashes: list[str]) -> dict[str, InferenceResult]:
        """The recorded successful answer of each of `hashes` in the group, as results (`resumed`)."""
        found: dict[str, InferenceResult] = {}
        for request_hash, call in RawCallRepository(self.engine).successes_in_group(group_id, hashes).items():
            response, tokens = call.response_json or {}, call.tokens_json or {}
            found[request_hash] = InferenceResult(
                text=response.get("text"), raw_call_id=call.id, attempts=0,
                usage=TokenUsage(*(int(tokens.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))),
                latency_ms=call.latency_ms, finish_reason=response.get("finish_reason"), request_hash=request_hash,
                resumed=True, attempt_call_ids=[call.id],
            )
        return found

    def _ensure_group(self, group_type: str, name: str | None, prompts: int, samples: int, settings: _Settings) -> int:
        meta = {
            "provider": self.provider_name, "model": self.model, "base_url": self.provider.endpoint(),
            "prompts": prompts, "samples": samples,
            "temperature": settings.temperature, "max_tokens": settings.max_tokens, "params": settings.params,
            "preprocess": self.preprocess.describe() if self.preprocess else None,
        }
        label = f"{group_type}:{self.provider_name}:{self.model}"
        return ensure_run_group(self.engine, group_type, name, label=label, metadata=redact_json(meta))

    def _prepare(self, prompt: PromptInput, input_index: int, sample_index: int, settings: _Settings) -> _Request:
        """Messages with the prompt preprocessed, and the request's hash; or the reason it cannot be sent."""
        messages, problem = _to_messages(prompt)
        if problem is not None:
            shown = shown_input(prompt)
            return _Request([], shown, shown, sample_index, input_index, problem=problem)
        last_user = max(i for i, m in enumerate(messages) if m.role == "user")
        original = messages[last_user].content
        processed = self.preprocess.apply(original) if self.preprocess else original
        messages[last_user] = ChatMessage("user", processed)
        request = _Request(messages, original, processed, sample_index, input_index)
        request.request_hash = self.request_hash(
            messages, temperature=settings.temperature, max_tokens=settings.max_tokens, sample_index=sample_index,
            **settings.params,
        )
        return request


class _Run:
    """The state of one run: its group, its call queue, its counters."""

    def __init__(self, service: InferenceService, group_id: int | None, settings: _Settings, progress: ProgressFn | None) -> None:
        self.s = service
        self.group_id = group_id
        self.settings = settings
        self.progress = progress
        self.queue = CallQueue(CallRecorder(service.engine, group_id))
        self.api_requests = 0
        endpoint = service.provider.endpoint()
        self.guard = SpendGuard(
            service.provider_name, planned=0, min_failure_budget=service.retry.min_failure_budget,
            where=f"the base URL {endpoint} (--base-url)" if endpoint else "the provider's settings",
        )
        self.joined_call_ids: list[int] = []  # calls of other runs' requests that this run shared
        self.done = 0
        self.total = 0

    # -- orchestration --------------------------------------------------------------------------

    async def execute(
        self, requests: list[_Request], *, stop_on_fatal: bool, answered: dict[str, InferenceResult] | None = None
    ) -> list[InferenceResult]:
        """Results in request order; with `stop_on_fatal`, a fatal error is raised instead.

        Requests in `answered` (by hash) are not sent: their recorded results are used.
        """
        self.total = len(requests)
        answered = answered or {}
        try:
            rejected = await self._reject([r for r in requests if r.problem is not None])
            unique: dict[str, _Request] = {}
            for r in requests:
                if r.problem is None and r.request_hash not in answered:
                    unique.setdefault(r.request_hash, r)
            self._advance(sum(1 for r in requests if r.problem is None and r.request_hash in answered))
            sent = await self._send_all(list(unique.values()), stop_on_fatal)
            sent.update({h: result for h, result in answered.items() if h not in sent})
            if self.group_id is not None and self.joined_call_ids:
                await asyncio.to_thread(GroupRepository(self.s.engine).add_members, self.group_id, self.joined_call_ids, role=ROLE_INPUT)
        finally:
            await self.queue.drain()
        results: list[InferenceResult] = []
        seen: set[str] = set()
        for r in requests:
            if r.problem is not None:
                results.append(rejected[id(r)])
                continue
            result = sent[r.request_hash]
            if result.resumed:
                result = replace(result, prompt=r.prompt, sample_index=r.sample_index)
            results.append(replace(result, shared=True, sample_index=r.sample_index) if r.request_hash in seen else result)
            seen.add(r.request_hash)
        return results

    async def _reject(self, requests: list[_Request]) -> dict[int, InferenceResult]:
        """Record unusable requests as failed calls (one insert) and return their results by id()."""
        if not requests:
            return {}
        calls = [
            NewCall(
                provider=self.s.provider_name,
                model=self.s.model,
                modality="chat",
                status="failed",
                request_json=self._request_json(r),
                error_json=input_error_json(r.problem or ""),
                metadata_json=self._metadata(r, attempt=0, sent=False),
            )
            for r in requests
        ]
        ids = await self.queue.recorder.arecord(calls)
        self._advance(len(requests))
        return {
            id(r): InferenceResult(
                text=None, raw_call_id=call_id, attempts=0, error=r.problem, error_type="invalid_input",
                prompt=r.original_prompt, sample_index=r.sample_index, attempt_call_ids=[call_id],
            )
            for r, call_id in zip(requests, ids, strict=True)
        }

    async def _send_all(self, requests: list[_Request], stop_on_fatal: bool) -> dict[str, InferenceResult]:
        results: dict[str, InferenceResult] = {}
        if not requests:
            return results

        async def one(request: _Request) -> None:
            result = await self._shared(request)
            if result.ok and result.shared:
                self.guard.succeeded()  # joined another run's success: the provider works
            results[request.request_hash] = result
            self._advance(1)
            if stop_on_fatal and result.exception is not None and is_fatal(result.exception):
                raise result.exception

        self.guard.add_planned(len(requests))
        pending = list(requests)
        while pending and not self.guard.proven:
            await one(pending.pop(0))  # alone until one succeeds: a bad key or URL costs one request, not `concurrency`
        # API calls are bounded by the service's slots, so every request can be a task at once.
        await gather_or_cancel([asyncio.create_task(one(r)) for r in pending])
        return results

    # -- one request, shared while in flight ----------------------------------------------------

    async def _shared(self, request: _Request) -> InferenceResult:
        """The result of `request`: joins an identical request in flight in this service, else sends it."""
        loop = asyncio.get_running_loop()
        key = (loop, request.request_hash)
        while True:
            leader = self.s._inflight.get(key)
            if leader is None:
                break
            try:
                result = await asyncio.shield(leader)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if leader.cancelled() and task is not None and not task.cancelling():
                    continue  # the other run was cancelled, not this one: send it ourselves
                raise
            self.joined_call_ids.extend(result.attempt_call_ids)
            return replace(result, shared=True, sample_index=request.sample_index)
        future: asyncio.Future[InferenceResult] = loop.create_future()
        self.s._inflight[key] = future
        try:
            result = await self._attempts(request)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # followers re-raise it; mark it seen when there are none
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self.s._inflight[key]

    async def _attempts(self, request: _Request) -> InferenceResult:
        """Send `request` with retries, recording each attempt; provider errors come back in the result."""
        s = self.s
        call_ids: list[int] = []
        request_json = self._request_json(request)
        tokens = sum(estimate_tokens(m.content) for m in request.messages) + (self.settings.max_tokens or 0)

        async def attempt(n: int) -> tuple[ChatResponse, float]:
            failure: BaseException | None = None
            async with s._slots():
                if s.limiter is not None:
                    await s.limiter.acquire(tokens)
                self.api_requests += 1
                self.guard.attempt()
                started = time.perf_counter()
                try:
                    response = await s.provider.chat(
                        request.messages, model=s.model, temperature=self.settings.temperature,
                        max_tokens=self.settings.max_tokens, **self.settings.params,
                    )
                    if not isinstance(response.text, str):
                        raise MalformedResponseError(f"{s.provider_name} returned a reply of type {type(response.text).__name__}")
                except BaseException as exc:  # cancellation too: the attempt is recorded as cancelled
                    failure = exc
                    call = self._failed_call(request, request_json, exc, n, (time.perf_counter() - started) * 1000)
                else:
                    latency = (time.perf_counter() - started) * 1000
                    call = self._success_call(request, request_json, response, n, latency)
                written = self.queue.submit(call)  # queued before any await: nothing can lose it
            # The slot is free while the row is written: concurrency bounds API calls, not database writes.
            call_ids.append(await asyncio.shield(written))
            if failure is not None:
                log.info("chat attempt %d failed: %s", n, failure)
                self.guard.failed_attempt(failure, request.request_hash)  # raises SystemicFaultError to stop the run
                raise failure
            self.guard.succeeded()
            return response, latency

        what = f"the chat request of row {request.input_index}" + (f" sample {request.sample_index}" if request.sample_index else "")
        try:
            response, latency = await call_with_retries(attempt, s.retry, what=what)
        except ProviderError as exc:
            return InferenceResult(
                text=None, raw_call_id=call_ids[-1] if call_ids else None, attempts=len(call_ids),
                error=redact(str(exc)), error_type=exc.kind, prompt=request.prompt, sample_index=request.sample_index,
                request_hash=request.request_hash, attempt_call_ids=call_ids, exception=exc,
            )
        return InferenceResult(
            text=response.text, raw_call_id=call_ids[-1], attempts=len(call_ids), usage=response.usage,
            latency_ms=latency, finish_reason=response.finish_reason, prompt=request.prompt,
            sample_index=request.sample_index, request_hash=request.request_hash, attempt_call_ids=call_ids,
        )

    # -- what gets recorded ---------------------------------------------------------------------

    def _success_call(
        self, request: _Request, request_json: dict[str, Any], response: ChatResponse, attempt: int, latency: float
    ) -> NewCall:
        return NewCall(
            provider=self.s.provider_name,
            model=self.s.model,
            modality="chat",
            status="success",
            request_json=request_json,
            response_json=redact_json(
                {"text": response.text, "finish_reason": response.finish_reason, "model": response.model, "raw": response.raw}
            ),
            latency_ms=latency,
            tokens_json=response.usage.as_dict(),
            metadata_json=self._metadata(request, attempt=attempt),
            request_hash=request.request_hash,
        )

    def _failed_call(
        self, request: _Request, request_json: dict[str, Any], exc: BaseException, attempt: int, latency: float
    ) -> NewCall:
        usage = getattr(exc, "usage", None)  # tokens of a billed but unusable answer
        return NewCall(
            provider=self.s.provider_name,
            model=self.s.model,
            modality="chat",
            status=status_for(exc),
            request_json=request_json,
            error_json=error_json(exc, attempt),
            latency_ms=latency,
            tokens_json=usage.as_dict() if usage is not None else None,
            metadata_json=self._metadata(request, attempt=attempt),
            request_hash=request.request_hash,
        )

    def _request_json(self, request: _Request) -> dict[str, Any]:
        """What was asked, without secrets: `prompt` (the search index reads it), the original, messages, parameters."""
        return redact_json({
            "prompt": request.prompt,
            "original_prompt": request.original_prompt,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "model": self.s.model,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "params": self.settings.params,
            "preprocess": self.s.preprocess.describe() if self.s.preprocess else None,
            "base_url": self.s.provider.endpoint(),
        })

    def _metadata(self, request: _Request, *, attempt: int, **extra: Any) -> dict[str, Any]:
        """The caller's metadata plus ours (ours win on a clash): attempt, sample, input, hash, group."""
        ours = run_metadata(
            **extra, attempt=attempt, sample_index=request.sample_index, input_index=request.input_index,
            request_hash=request.request_hash or None, group_id=self.group_id,
        )
        return redact_json({**self.settings.metadata, **ours})

    def _advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _to_messages(prompt: PromptInput) -> tuple[list[ChatMessage], str | None]:
    """Chat messages for a prompt or a message list, or the reason the input cannot be sent."""
    if isinstance(prompt, str):
        messages = [ChatMessage("user", prompt)]
    elif isinstance(prompt, Sequence):
        messages = []
        for m in prompt:
            role = m.role if isinstance(m, ChatMessage) else m.get("role") if isinstance(m, Mapping) else None
            content = m.content if isinstance(m, ChatMessage) else m.get("content") if isinstance(m, Mapping) else None
            if not isinstance(role, str) or not isinstance(content, str):
                return [], f"chat message {m!r:.80} needs a string role and content"
            messages.append(ChatMessage(role, content))
        if not any(m.role == "user" for m in messages):
            return [], "the messages hold no user message"
    else:
        return [], f"not a prompt ({type(prompt).__name__})"
    for m in messages:
        invalid = invalid_text_reason(m.content) or invalid_text_reason(m.role)
        if invalid is not None:
            return [], invalid
    last_user = next(m for m in reversed(messages) if m.role == "user")
    problem = unusable_reason(last_user.content, max_chars=sys.maxsize)  # length is Preprocessor.max_chars' job
    return ([], problem) if problem is not None else (messages, None)
