"""Recording provider attempts: every attempt becomes a raw call and joins the run's group.

`CallRecorder` writes a list of calls in one transaction; `GroupCommit` puts a group commit in
front of a writer for services that record attempts one by one from many concurrent tasks, so a busy
run still writes one transaction per flush instead of one per call (`CallQueue` for raw calls; the
embedding service writes calls with their vectors through one).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.engine import transaction
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.vocabulary import ROLE_OUTPUT
from studyllm_core.providers.errors import ProviderError, ProviderTimeoutError
from studyllm_core.redaction import redact, redact_data

T = TypeVar("T")
R = TypeVar("R")


class CallRecorder:
    """Writes raw calls (in the caller's transaction when given) and their group membership."""

    def __init__(self, engine: Engine, group_id: int | None = None) -> None:
        self.engine = engine
        self.group_id = group_id
        self.calls = RawCallRepository(engine)
        self.groups = GroupRepository(engine)

    def record(self, calls: Sequence[NewCall], conn: Connection | None = None) -> list[int]:
        """Insert `calls` and add them to the group; returns their ids in order."""
        if not calls:
            return []
        with transaction(self.engine, conn) as tx:
            ids = self.calls.insert_many(calls, conn=tx)
            if self.group_id is not None:
                self.groups.add_members(self.group_id, ids, role=ROLE_OUTPUT, conn=tx)
        return ids

    async def arecord(self, calls: Sequence[NewCall]) -> list[int]:
        """`record` off the event loop."""
        return await asyncio.to_thread(self.record, calls)


class GroupCommit(Generic[T, R]):
    """Group commit for one event loop: items submitted while a write is in flight go out together next.

    `write` takes a list of items and returns one result per item, in order (it runs in a thread). A lone
    item is written at once (no added delay); under load, items pile up during each write and the next
    write takes them all, so N concurrent submitters cost about N / pile-size writes. Call `drain()`
    before the loop ends so nothing is left unwritten.
    """

    def __init__(self, write: Callable[[list[T]], list[R]]) -> None:
        self.write = write
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue `item` now (no await: a cancellation cannot lose it) and return the future of its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return future

    async def record(self, item: T) -> R:
        """Queue `item` and wait for its result; the write goes through even if the caller is cancelled."""
        return await asyncio.shield(self.submit(item))

    async def drain(self) -> None:
        """Wait until every submitted item is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await asyncio.to_thread(self.write, [item for item, _ in batch])
            except Exception as exc:  # e.g. the database went away: every submitter of this write sees it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # marks it seen: the submitter may have been cancelled meanwhile
                continue
            except BaseException:
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class CallQueue(GroupCommit[NewCall, int]):
    """Group commit of raw calls: each submitted call gets its id; ids follow submission order."""

    def __init__(self, recorder: CallRecorder) -> None:
        super().__init__(recorder.record)
        self.recorder = recorder


def ensure_run_group(
    engine: Engine, group_type: str, name: str | None, *, label: str, metadata: dict[str, Any] | None = None
) -> int:
    """Id of the group (`group_type`, `name`), or of a new one named `label:UTC-timestamp` when `name` is None."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return GroupRepository(engine).ensure_group(group_type, name or f"{label}:{stamp}", metadata=metadata)


def status_for(exc: BaseException) -> str:
    """The raw_calls status of a failed attempt."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, (ProviderTimeoutError, TimeoutError)):
        return "timeout"
    return "failed"


def error_json(exc: BaseException, attempt: int) -> dict[str, Any]:
    """What went wrong, for `raw_calls.error_json`: provider errors describe themselves; secrets are masked."""
    if isinstance(exc, ProviderError):
        info = exc.error_info()
        info["message"] = redact(str(info.get("message", "")))
    elif isinstance(exc, asyncio.CancelledError):
        info = {"type": "cancelled", "class": "CancelledError", "message": "the run was cancelled", "retryable": True}
    else:
        info = {"type": "unexpected", "class": type(exc).__name__, "message": redact(str(exc)), "retryable": False}
    info["attempt"] = attempt
    return info


def redact_json(value: Any) -> Any:
    """`value` with known secret values masked in all its strings (one `redact_data` pass over its JSON text).

    For JSON recorded from user content (prompts, replies, caller metadata): a configured key pasted
    into a prompt is never stored, and nothing else is changed (see `redaction`).
    """
    if value is None:
        return None
    raw = json.dumps(value, ensure_ascii=False, default=str)
    cleaned = redact_data(raw)
    return value if cleaned == raw else json.loads(cleaned)


RECORDED_INPUT_CHARS = 2_000  # how much of an unusable input its failed raw call keeps


def shown_input(raw: object) -> str:
    """An input rejected before sending, as its failed raw call keeps it: the text (or its repr),
    made valid UTF-8, cut to RECORDED_INPUT_CHARS, secrets masked."""
    text = raw if isinstance(raw, str) else repr(raw)
    # Surrogates and NUL (which JSONB cannot hold) become U+FFFD and "?": the record shows where they were.
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return redact_data(text[:RECORDED_INPUT_CHARS])


def input_error_json(message: str) -> dict[str, Any]:
    """`error_json` of an input rejected before it was sent (attempt 0: no API call was made)."""
    return {"type": "invalid_input", "message": redact(message), "retryable": False, "attempt": 0}


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Metadata every recorded call carries: who made it and when, plus the caller's fields."""
    return {"pid": os.getpid(), "recorded_at": datetime.now(timezone.utc).isoformat(), **extra}
