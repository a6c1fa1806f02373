"""EmbeddingService: embed texts once, ever, and record every attempt.

The cache key is `cache_key.embedding_request_hash` (provider, model, dimensions, format and the
normalised text). A run:

1. normalises the texts and sets aside unusable ones (empty, invalid UTF-8, too long): each is
   recorded as a failed raw call and reported, never sent;
2. looks up the unique hashes in the cache, one query per chunk;
3. sends the rest in batches with bounded concurrency, a rate limit and retries. Before sending a
   batch it leases the batch's texts, so concurrent runs (other processes, other threads) never
   send the same text twice; texts leased by a live peer are waited for, texts leased by a dead
   one are taken over;
4. stores each successful batch's vectors together with its raw call in one transaction, written behind
   the requests (`GroupCommit`): the answers that arrived while the previous write ran go into the next
   transaction, so requests keep going while the database writes, and a busy run commits once per few
   batches instead of once per batch. Bounded: at most 2 x `concurrency` batches are sent or paid for
   and not yet stored (what a killed run may pay for again), and so held in memory.

A batch rejected because of one input (a 400 that names the input, such as a context-length
error, or a content filter) is split in halves until the offending text stands alone, so one bad
text costs only itself; no other error splits a batch. Errors that doom every batch (bad key,
unknown model, out of quota, a refused parameter, a dimension that contradicts the cache) stop
the run at once, and faults that keep coming back stop it after a few requests (`SpendGuard`):
until one batch has succeeded, batches go out one at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine

from studyllm_core.db.calls import NewCall
from studyllm_core.db.engine import translate_db_errors
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, KnownSet, NewVectors, set_digest
from studyllm_core.db.leases import EmbeddingLeases
from studyllm_core.db.vocabulary import ROLE_INPUT
from studyllm_core.logging_config import get_logger
from studyllm_core.providers.base import EmbeddingResponse, Provider
from studyllm_core.providers.registry import require_operation
from studyllm_core.redaction import redact_data_many
from studyllm_core.providers.errors import (
    BadRequestError,
    ContentFilterError,
    MalformedResponseError,
    PermanentError,
    ProviderError,
)
from studyllm_core.services.capture.by_name import BuiltByName
from studyllm_core.services.capture.cache_key import (
    DEFAULT_MAX_CHARS,
    already_prepared,
    content_hash,
    embedding_hasher,
    prepare_text,
)
from studyllm_core.services.capture.recording import (
    CallRecorder,
    GroupCommit,
    ensure_run_group,
    error_json,
    input_error_json,
    run_metadata,
    shown_input,
    status_for,
)
from studyllm_core.services.capture.loop_thread import LoopThread
from studyllm_core.services.capture.ratelimit import RateLimit, estimate_tokens, limiter_for
from studyllm_core.services.capture.retry import RetryPolicy, call_with_retries
from studyllm_core.services.capture.spend import SpendGuard
from studyllm_core.services.capture.tasks import gather_or_cancel
from studyllm_core.services.provenance import ProvenanceService, RunStamp, new_run_id

log = get_logger("services.embedding")

WAIT_POLL_S = 0.25
UNSTORED_PER_REQUEST = 2  # batches sent or answered but not yet stored, per request in flight

# (provider, model, dimensions) -> vector dimension of models that answered in this process: no lone
# probe batch, and no look-up of the cached dimension, is needed for them.
_validated_models: dict[tuple[str, str, int | None], int] = {}

ProgressFn = Callable[[int, int], None]


class DimensionMismatchError(PermanentError):
    """The provider's vectors contradict the dimension already cached for this model."""

    kind = "dimension_mismatch"


@dataclass
class EmbedOutcome:
    """Vectors in input order (rows of failed texts are NaN) plus the run's accounting."""

    vectors: np.ndarray
    failures: dict[int, str]
    texts: int
    unique: int
    cached: int
    embedded: int
    api_requests: int
    group_id: int | None
    waited_for_peers: int = 0
    raw_call_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(self.texts, dtype=bool)
        mask[list(self.failures)] = False
        return mask

    def summary(self) -> dict[str, Any]:
        """The counts the CLI prints with --json."""
        return {
            "texts": self.texts,
            "unique": self.unique,
            "cached": self.cached,
            "embedded": self.embedded,
            "failed": self.failed,
            "api_requests": self.api_requests,
            "group_id": self.group_id,
        }


@dataclass(slots=True)
class _Answer:
    """A successful batch waiting to be written: its raw call and its vectors go in one transaction."""

    batch: list[_Item]
    call: NewCall
    vectors: np.ndarray  # (len(batch), d) float32


@dataclass(slots=True)
class _Item:
    """One unique usable text of a batch: `text` goes to the provider, `stored` (secrets masked) to the
    database; `index` is its row in the run's matrix of unique vectors. Made when its batch is leased: the
    run keeps its unique texts as columns (`_Run.hashes`, ...) and its work as arrays of indices, so a
    million texts are not a million long-lived objects for the garbage collector to walk."""

    request_hash: str
    text: str
    stored: str
    index: int


class EmbeddingService(BuiltByName):
    """Cached, de-duplicated, recorded embeddings for one provider and model."""

    def __init__(
        self,
        engine: Engine,
        provider: Provider,
        *,
        provider_name: str,
        model: str,
        dimensions: int | None = None,
        encoding_format: str = "float",
        batch_size: int = 256,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        require_operation(provider, provider_name, "embed")  # refused here: nothing sent, nothing recorded
        self.engine = engine
        self.provider = provider
        self.provider_name = provider_name
        self.model = model
        self.dimensions = dimensions
        self.encoding_format = encoding_format
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.limiter = limiter_for(provider_name, rate_limit)
        self.max_chars = max_chars
        self.vectors = EmbeddingCache(engine)
        # The server belongs to the embedding space when the provider says so (see Provider.embedding_server).
        self.server = provider.embedding_server() or ""
        self._sync = LoopThread(f"studyllm-embedding-{provider_name}")
        self._hasher = embedding_hasher(
            provider=provider_name, model=model, dimensions=dimensions, encoding_format=encoding_format,
            server=self.server,
        )

    # -- public API -----------------------------------------------------------------------------

    def request_hash(self, normalized_text: str) -> str:
        """The cache key of one normalised text for this provider, model and dimensions."""
        return self._hasher(normalized_text)

    def embed(
        self,
        texts: Sequence[str],
        *,
        group_id: int | None = None,
        group_name: str | None = None,
        progress: ProgressFn | None = None,
        keep_vectors: bool = True,
    ) -> EmbedOutcome:
        """Synchronous `aembed`, run on the service's background loop (`LoopThread`): works in scripts, threads
        and inside a running event loop (Jupyter); async code awaits `aembed` instead."""
        return self._sync.run(
            self.aembed(texts, group_id=group_id, group_name=group_name, progress=progress, keep_vectors=keep_vectors)
        )

    def close(self) -> None:
        """Stop the background loop of `embed`, closing the HTTP client the provider opened on it.

        The service stays usable: the next `embed` starts a new loop.
        """
        self._sync.shutdown(self.provider.aclose)

    def __enter__(self) -> EmbeddingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        group_id: int | None = None,
        group_name: str | None = None,
        progress: ProgressFn | None = None,
        keep_vectors: bool = True,
    ) -> EmbedOutcome:
        """Embed `texts`; every call joins an `embedding_batch` group (named, given, or made for this run).

        With `keep_vectors=False` the outcome's `vectors` has no columns: cached vectors are not even read,
        and new ones go to the cache only, so memory does not grow with the vectors (`studyllm embed`
        without --out).
        """
        if group_id is None:
            group_id = await asyncio.to_thread(self._ensure_group, group_name)
        run = _Run(self, list(texts), group_id, progress, keep_vectors=keep_vectors)
        return await run.execute()

    def _ensure_group(self, name: str | None) -> int:
        """The run's own embedding_batch group, with a record of this run (`cli-...` id) in its history."""
        meta = {"provider": self.provider_name, "model": self.model, "dimensions": self.dimensions,
                "base_url": self.provider.endpoint()}
        group_id = ensure_run_group(
            self.engine, "embedding_batch", name, label=f"embed:{self.provider_name}:{self.model}", metadata=meta
        )
        stamp = RunStamp(new_run_id(), meta, versions={"embedding": f"{self.provider_name}:{self.model}"})
        ProvenanceService(self.engine).add_record(group_id, stamp)
        return group_id


class _Run:
    """The state of one `aembed` call."""

    def __init__(
        self, service: EmbeddingService, texts: list[str], group_id: int | None, progress: ProgressFn | None,
        *, keep_vectors: bool = True,
    ):
        self.s = service
        self.keep_vectors = keep_vectors
        self.texts = texts
        self.group_id = group_id
        self.progress = progress
        self.recorder = CallRecorder(service.engine, group_id)
        self.failures: dict[int, str] = {}
        # Vectors of the unique texts, row `_Item.index`, filled as they come (cache or provider): held once.
        self.unique_vectors: np.ndarray | None = None
        self.have = np.zeros(0, dtype=bool)
        self.item_failures: dict[int, str] = {}  # _Item.index -> why it was not embedded
        self.api_requests = 0
        self.embedded = 0
        self.total = 0  # unique usable texts, known after _prepare
        # The unique usable texts as columns, index i for each: cache key, text sent, text stored.
        self.hashes: list[str] = []
        self.sendable: list[str] = []
        self.stored: list[str] = []
        self.waited = 0
        self.used_call_ids: set[int] = set()
        self.reused_ids: list[np.ndarray] = []  # embedding ids found cached (they join the run's set at the end)
        self.set_id: int | None = None  # the run's own embedding set (the group's items), filled as it goes
        self.lease_conn: Connection | None = None
        # Answers are written behind the requests, several per transaction. A slot is held from before a
        # batch is sent until its answers are stored: requests in flight plus answers waiting stay bounded.
        self.writer: GroupCommit[_Answer, int] = GroupCommit(self._store)
        self.unstored = asyncio.Semaphore(UNSTORED_PER_REQUEST * service.concurrency)
        self.write_error: BaseException | None = None  # the first failed write stops the run
        self.lease_lock = asyncio.Lock()
        self.model_key = (service.provider_name, service.server, service.model, service.dimensions)
        self.expected_dim: int | None = service.dimensions or _validated_models.get(self.model_key)
        endpoint = service.provider.endpoint()
        self.guard = SpendGuard(
            service.provider_name, planned=0, min_failure_budget=service.retry.min_failure_budget,
            where=f"the base URL {endpoint} (--base-url)" if endpoint else "the provider's settings",
        )

    # -- orchestration --------------------------------------------------------------------------

    async def execute(self) -> EmbedOutcome:
        item_of_row, self.hashes, self.sendable, self.stored = await asyncio.to_thread(self._prepare)
        unique = self.total = len(self.hashes)
        self.have = np.zeros(unique, dtype=bool)
        digest = set_digest(self.hashes) if self.group_id is not None and unique else None
        known = await asyncio.to_thread(self.s.vectors.find_set, digest, unique) if digest else None
        if known is not None and not self.keep_vectors:
            # The texts are exactly a complete set's members: each is cached, and no vector is wanted.
            self.have[:] = True
            cached = unique
        elif known is None and unique and not await asyncio.to_thread(self._space_has_vectors):
            cached = 0  # a new space: nothing to look up (what a peer stores meanwhile, the lease claims find)
        else:
            cached = await asyncio.to_thread(self._absorb_cached, np.arange(unique, dtype=np.int64))
        todo = np.flatnonzero(~self.have)
        self._report()
        if known is not None and not len(todo):
            await asyncio.to_thread(self._use_known_set, known)
            return self._outcome(item_of_row, unique, cached)
        if self.group_id is not None and unique:
            self.set_id = await asyncio.to_thread(self.s.vectors.new_set, self.group_id)
            await self._add_reused_to_set()  # before any API call: a run stopped part way keeps these too
        if len(todo):
            await self._embed_uncached(todo)
        if self.group_id is not None and self.used_call_ids:
            # Cached vectors belong to this run's provenance too: their producing calls join the group,
            # and the embeddings themselves join its set (export writes exactly those).
            await asyncio.to_thread(  # the calls it made joined as outputs when recorded; the rest it reused (inputs)
                GroupRepository(self.s.engine).add_members, self.group_id, sorted(self.used_call_ids), role=ROLE_INPUT)
        if self.set_id is not None:
            await self._add_reused_to_set()  # found meanwhile, stored by peers
            if digest is not None and self.have.all():  # complete: later runs of these texts reference it
                await asyncio.to_thread(self.s.vectors.seal_set, self.set_id, digest, unique, sorted(self.used_call_ids))
        return self._outcome(item_of_row, unique, cached)

    async def _add_reused_to_set(self) -> None:
        if self.reused_ids and self.set_id is not None:
            ids, self.reused_ids = np.concatenate(self.reused_ids), []
            await asyncio.to_thread(self.s.vectors.add_ids_to_set, self.set_id, ids)

    def _use_known_set(self, known: KnownSet) -> None:
        """Record a run whose embeddings are exactly a complete set: one reference to the set, and the calls
        that produced its members as the group's input calls (one transaction)."""
        self.used_call_ids.update(known.call_ids)
        with translate_db_errors("recording the group's embeddings"), self.s.engine.begin() as conn:
            EmbeddingCache.use_set(conn, self.group_id, known.id)
            GroupRepository(self.s.engine).add_members(self.group_id, known.call_ids, role=ROLE_INPUT, conn=conn)

    def _space_has_vectors(self) -> bool:
        """Whether any vector of this provider, model and server is cached (one index probe); keeps its dimension."""
        dim = self.s.vectors.known_dimension(self.s.provider_name, self.s.model, self.s.server)
        self.expected_dim = self.expected_dim or dim
        return dim is not None

    def _absorb_cached(self, indices: np.ndarray) -> int:
        """Take the vectors of the unique texts `indices` found in the cache (ours or a peer's), a chunk at a time;
        returns how many. Their calls join the group, their embedding ids join its items at the end of the run.
        """
        found = 0
        every = len(indices) == self.total  # the first look-up: all of them, in order
        hashes = self.hashes if every else [self.hashes[i] for i in indices.tolist()]
        for chunk in self.s.vectors.lookup_chunks(hashes, vectors=self.keep_vectors):
            rows = indices[chunk.positions]
            if chunk.vectors is None:
                self.have[rows] = True
                self.expected_dim = self.expected_dim or chunk.dimension
            else:
                self._put(rows, chunk.vectors)
            self.used_call_ids.update(np.unique(chunk.call_ids).tolist())
            self.reused_ids.append(chunk.ids)
            found += len(rows)
        return found

    def _put(self, rows: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Write vectors into the rows of the unique-vector matrix (allocated at the first vectors' dimension);
        only mark the rows done when the run keeps no vectors."""
        if not self.keep_vectors:
            self.have[rows] = True
            return
        if self.unique_vectors is None:
            self.unique_vectors = np.empty((self.total, vectors.shape[1]), dtype=np.float32)
        if vectors.shape[1] != self.unique_vectors.shape[1]:
            raise DimensionMismatchError(
                f"{self.s.provider_name} model {self.s.model!r}: {vectors.shape[1]}-dimensional vectors where "
                f"{self.unique_vectors.shape[1]} dimensions are expected (cached or returned)"
            )
        self.unique_vectors[rows] = vectors
        self.have[rows] = True

    def _prepare(self) -> tuple[np.ndarray, list[str], list[str], list[str]]:
        """Normalise, reject unusable texts (recorded as failed calls), and de-duplicate.

        Returns the unique text of each input row (-1 for a rejected text), and the unique texts' cache keys,
        texts to send and texts to store (secrets masked).
        """
        if already_prepared(self.texts, self.s.max_chars):  # the usual file: every text clean, all distinct
            hashes = list(map(self.s.request_hash, self.texts))
            if len(set(hashes)) == len(hashes):
                return np.arange(len(hashes), dtype=np.int64), hashes, self.texts, redact_data_many(self.texts)
        item_of_row = np.full(len(self.texts), -1, dtype=np.int64)
        unique: dict[str, int] = {}  # request_hash -> index among the unique texts
        texts: list[str] = []
        rejected: list[NewCall] = []
        for i, raw in enumerate(self.texts):
            problem, text = prepare_text(raw, self.s.max_chars)
            if problem:
                self.failures[i] = problem
                rejected.append(self._rejected_call(raw, problem, i))
                continue
            h = self.s.request_hash(text)
            index = unique.setdefault(h, len(texts))
            if index == len(texts):
                texts.append(text)
            item_of_row[i] = index
        if rejected:
            self.recorder.record(rejected)
        stored = redact_data_many(texts)  # a configured key pasted into a text is sent as given but never stored
        return item_of_row, list(unique), texts, stored

    def _rejected_call(self, raw: object, problem: str, index: int) -> NewCall:
        return NewCall(
            provider=self.s.provider_name,
            model=self.s.model,
            modality="embedding",
            status="failed",
            request_json={
                "input": [shown_input(raw)], "input_chars": len(raw) if isinstance(raw, str) else None, **self._params()
            },
            error_json=input_error_json(problem),
            metadata_json=run_metadata(input_index=index, sent=False),
        )

    async def _embed_uncached(self, todo: np.ndarray) -> None:
        self.guard.add_planned(-(-len(todo) // self.s.batch_size))
        if self.expected_dim is None:
            self.expected_dim = await asyncio.to_thread(
                self.s.vectors.known_dimension, self.s.provider_name, self.s.model, self.s.server
            )
        self.lease_conn = await asyncio.to_thread(self._open_lease_connection)
        try:
            pending = todo
            while len(pending):
                waiting = await self._process(pending)
                if not len(waiting):
                    break
                await self._drained()
                self.waited = max(self.waited, len(waiting))
                await asyncio.sleep(WAIT_POLL_S)
                await asyncio.to_thread(self._absorb_cached, waiting)
                self._report()
                pending = waiting[~self.have[waiting]]
            await self._drained()
        finally:
            await self.writer.drain()  # answers already paid for are stored, however the run ends
            conn, self.lease_conn = self.lease_conn, None
            await asyncio.to_thread(self._close_lease_connection, conn)

    async def _drained(self) -> None:
        """Wait for every queued answer to be written; raise the first write's failure."""
        await self.writer.drain()
        if self.write_error is not None:
            raise self.write_error

    def _close_lease_connection(self, conn: Connection) -> None:
        """Free leases still held (batches cut short by an error) and return the connection."""
        try:
            EmbeddingLeases.release_all(conn)
        except Exception:  # noqa: BLE001 - the session is gone, and its leases with it
            conn.invalidate()
        finally:
            conn.close()

    def _open_lease_connection(self) -> Connection:
        with translate_db_errors("opening the lease connection"):
            return self.s.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    async def _process(self, indices: np.ndarray) -> np.ndarray:
        """Embed what we can lease among the unique texts `indices`; return the indices a live peer holds."""
        size = self.s.batch_size
        batches = deque(indices[i : i + size].tolist() for i in range(0, len(indices), size))
        waiting: list[int] = []
        leased: deque[list[_Item]] = deque()

        async def next_batch(count: int) -> list[_Item] | None:
            # Leases are taken for up to `count` batches in one query, then handed out one by one.
            async with self.lease_lock:
                while not leased and batches:
                    chunk = [batches.popleft() for _ in range(min(count, len(batches)))]
                    hashes = [self.hashes[i] for batch in chunk for i in batch]
                    mine = await asyncio.to_thread(EmbeddingLeases.claim, self.lease_conn, hashes)
                    for batch in chunk:
                        waiting.extend(i for i in batch if self.hashes[i] not in mine)
                        ours = [self._item(i) for i in batch if self.hashes[i] in mine]
                        if ours:
                            leased.append(ours)
                return leased.popleft() if leased else None

        while not self.guard.proven:
            # One batch at a time until one succeeds: a provider broken from the start (wrong key,
            # model or URL, a proxy's HTML page) costs a few requests, not `concurrency` of them.
            if not await self._send_next(lambda: next_batch(1)):
                break

        async def worker() -> None:
            while await self._send_next(lambda: next_batch(self.s.concurrency)):
                pass

        await gather_or_cancel(
            [asyncio.create_task(worker()) for _ in range(min(self.s.concurrency, len(batches) + len(leased)))]
        )
        return np.asarray(waiting, dtype=np.int64)

    def _item(self, i: int) -> _Item:
        return _Item(self.hashes[i], self.sendable[i], self.stored[i], i)

    async def _send_next(self, take: Callable[[], Awaitable[list[_Item] | None]]) -> bool:
        """Send the next leased batch once a slot is free (the writer is not too far behind); False when none is
        left. The slot is given back when the answers of the batch (two if it was split, none if it failed)
        are stored."""
        await self.unstored.acquire()
        written: list[asyncio.Future[int]] = []
        try:
            if self.write_error is not None:
                raise self.write_error
            batch = await take()
            if batch is None:
                return False
            await self._send(batch, written)
            return True
        finally:
            if written:
                asyncio.gather(*written, return_exceptions=True).add_done_callback(lambda _: self.unstored.release())
            else:
                self.unstored.release()

    async def _send(self, batch: list[_Item], written: list[asyncio.Future[int]]) -> None:
        """Embed a leased batch, splitting it only when the provider blames one of its inputs; the writes of
        its answers join `written`."""
        if not batch:
            return
        try:
            await self._call_with_retries(batch, written)
        except (BadRequestError, ContentFilterError) as exc:
            one_input = isinstance(exc, ContentFilterError) or exc.cause == "input"
            if one_input and len(batch) > 1:
                half = len(batch) // 2
                self.guard.add_planned(1)
                await self._send(batch[:half], written)
                await self._send(batch[half:], written)
                return
            await self._give_up(batch, exc)
            return
        except MalformedResponseError as exc:  # tried max_malformed_attempts times; repeats across batches stop the run
            await self._give_up(batch, exc)
            return
        except ProviderError as exc:
            if not exc.retryable:  # auth, unknown model, dimension mismatch: every batch would fail
                await self._release_quietly(batch)
                raise
            await self._give_up(batch, exc)  # retryable, but the policy gave up
        except BaseException:
            await self._release_quietly(batch)
            raise

    async def _give_up(self, batch: list[_Item], exc: BaseException) -> None:
        for it in batch:
            self.item_failures[it.index] = f"{type(exc).__name__}: {exc}"
        await self._release(batch)
        self._report()

    async def _release_quietly(self, batch: list[_Item]) -> None:
        """Release on the way out of a failure: a database error here must not hide the failure itself
        (leases of a session that is gone are free anyway)."""
        try:
            await self._release(batch)
        except Exception:  # noqa: BLE001
            log.debug("could not release %d leases after a failure", len(batch), exc_info=True)

    async def _release(self, batch: list[_Item]) -> None:
        if self.lease_conn is not None:
            async with self.lease_lock:
                await asyncio.to_thread(EmbeddingLeases.release, self.lease_conn, [it.request_hash for it in batch])

    async def _call_with_retries(self, batch: list[_Item], written: list[asyncio.Future[int]]) -> None:
        texts = [it.text for it in batch]
        request = {"input": [it.stored for it in batch], **self._params()}
        batch_hash = content_hash(*(it.request_hash for it in batch))

        async def attempt(n: int) -> None:
            if self.s.limiter is not None:
                await self.s.limiter.acquire(sum(estimate_tokens(t) for t in texts))
            self.api_requests += 1
            self.guard.attempt()
            started = time.perf_counter()
            try:
                response = await self.s.provider.embed(texts, model=self.s.model, dimensions=self.s.dimensions)
                self._check_response(response, len(texts))
            except BaseException as exc:
                latency = (time.perf_counter() - started) * 1000
                usage = getattr(exc, "usage", None)  # tokens of a billed but unusable answer
                call = NewCall(
                    provider=self.s.provider_name,
                    model=self.s.model,
                    modality="embedding",
                    status=status_for(exc),
                    request_json=request,
                    error_json=error_json(exc, n),
                    latency_ms=latency,
                    tokens_json=usage.as_dict() if usage is not None else None,
                    metadata_json=run_metadata(attempt=n, batch_size=len(texts), group_id=self.group_id),
                    request_hash=batch_hash,
                )
                await asyncio.shield(self.recorder.arecord([call]))
                log.info("embedding attempt %d of %d texts failed: %s", n, len(texts), exc)
                self.guard.failed_attempt(exc, batch_hash)  # raises SystemicFaultError to stop the run
                raise
            self.guard.succeeded()
            latency = (time.perf_counter() - started) * 1000
            call = NewCall(
                provider=self.s.provider_name,
                model=self.s.model,
                modality="embedding",
                status="success",
                request_json=request,
                response_json={"count": len(batch), "dimension": int(response.vectors.shape[1]), "model": response.model},
                latency_ms=latency,
                tokens_json=response.usage.as_dict(),
                metadata_json=run_metadata(attempt=n, batch_size=len(batch), group_id=self.group_id),
                request_hash=batch_hash,
            )
            answer = _Answer(batch, call, np.ascontiguousarray(response.vectors, dtype=np.float32))
            # Queued before any await (a cancellation cannot lose it); the worker goes on to its next request.
            future = self.writer.submit(answer)
            future.add_done_callback(lambda done: self._written(answer, done))
            written.append(future)

        await call_with_retries(attempt, self.s.retry, what=f"an embedding batch of {len(texts)} texts")

    def _check_response(self, response: EmbeddingResponse, n: int) -> None:
        """The checks every provider's vectors pass before they are cached (the HTTP ones are also
        checked while parsing): count, finite values, a direction (not all zeros), the dimension."""
        vectors = response.vectors
        name = self.s.provider_name
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise MalformedResponseError(
                f"{name} returned an array of shape {vectors.shape} for {n} texts", reason="count"
            ).with_usage(response.usage)
        if not np.isfinite(vectors).all():
            raise MalformedResponseError(
                f"{name} returned vectors with NaN or infinite values", reason="nan"
            ).with_usage(response.usage)
        if vectors.shape[1] and not vectors.any(axis=1).all():
            raise MalformedResponseError(
                f"{name} returned all-zero vectors, which have no direction", reason="zero"
            ).with_usage(response.usage)
        dim = int(vectors.shape[1])
        if self.expected_dim is None:
            self.expected_dim = dim
        if dim != self.expected_dim:
            raise DimensionMismatchError(
                f"{self.s.provider_name} model {self.s.model!r} returned {dim}-dimensional vectors, but "
                f"{self.expected_dim} dimensions are expected (cached or requested); the model behind this name "
                "changed: use a new model name or pass --dimensions"
            )
        _validated_models[self.model_key] = dim

    def _store(self, answers: list[_Answer]) -> list[int]:
        """Record the answers' successful calls and their vectors in one transaction (which also drops their
        leases); returns the call ids in order. Runs in the writer's thread."""
        with translate_db_errors("storing embeddings"), self.s.engine.begin() as conn:
            call_ids = self.recorder.record([a.call for a in answers], conn=conn)
            EmbeddingCache.store(conn, *(
                NewVectors(
                    request_hashes=[it.request_hash for it in a.batch],
                    texts=[it.stored for it in a.batch],
                    vectors=a.vectors,
                    provider=self.s.provider_name,
                    model=self.s.model,
                    raw_call_id=call_id,
                    server=self.s.server,
                    set_id=self.set_id,
                )
                for a, call_id in zip(answers, call_ids, strict=True)
            ))
        return call_ids

    def _written(self, answer: _Answer, written: asyncio.Future[int]) -> None:
        """Account for a written answer (on the loop), or keep the write's failure to stop the run."""
        if written.cancelled():
            return
        if written.exception() is not None:
            self.write_error = self.write_error or written.exception()
            return
        self.used_call_ids.add(written.result())
        try:
            self._put([it.index for it in answer.batch], answer.vectors)
        except Exception as exc:  # noqa: BLE001 - a callback's exception would only be logged: the run stops with it
            self.write_error = self.write_error or exc
            return
        self.embedded += len(answer.batch)
        self._report()

    def _params(self) -> dict[str, Any]:
        """Request fields recorded with every call, the server it went to included."""
        return {
            "model": self.s.model, "dimensions": self.s.dimensions, "encoding_format": self.s.encoding_format,
            "base_url": self.s.provider.endpoint(),
        }

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(int(self.have.sum()) + len(self.item_failures), self.total)

    def _outcome(self, item_of_row: np.ndarray, unique: int, cached: int) -> EmbedOutcome:
        """Vectors in input order: the unique-vector matrix itself when every row is its own text and was
        embedded (no copy), else one gather with NaN rows where a text failed."""
        dim = self.expected_dim or (self.unique_vectors.shape[1] if self.unique_vectors is not None else 0)
        if not self.keep_vectors:
            dim = 0
        vectors = self.unique_vectors if self.unique_vectors is not None else np.empty((unique, dim), np.float32)
        usable = item_of_row >= 0
        ok = usable.copy()
        ok[usable] = self.have[item_of_row[usable]]
        for i in np.flatnonzero(usable & ~ok).tolist():
            self.failures[i] = self.item_failures.get(int(item_of_row[i]), "not embedded")
        if ok.all() and unique == len(item_of_row) and np.array_equal(item_of_row, np.arange(unique)):
            out = vectors
        else:
            out = np.full((len(self.texts), dim), np.nan, dtype=np.float32)
            if ok.any():
                out[ok] = vectors[item_of_row[ok]]
        # The outcome is now the vectors' only holder: a caller that drops them (the sweep, once projected)
        # frees them at once, whatever cycles keep this run object alive until the next collection.
        self.unique_vectors = None
        return EmbedOutcome(
            vectors=out,
            failures=dict(sorted(self.failures.items())),
            texts=len(self.texts),
            unique=unique,
            cached=cached,
            embedded=self.embedded,
            api_requests=self.api_requests,
            group_id=self.group_id,
            waited_for_peers=self.waited,
            raw_call_ids=sorted(self.used_call_ids),
        )
