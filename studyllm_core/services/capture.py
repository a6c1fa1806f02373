"""Recording provider attempts: every attempt becomes a raw call and joins the run's group."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.engine import transaction
from studyllm_core.db.groups import GroupRepository
from studyllm_core.providers.errors import ProviderError, ProviderTimeoutError
from studyllm_core.redaction import redact


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
                self.groups.add_members(self.group_id, ids, conn=tx)
        return ids

    async def arecord(self, calls: Sequence[NewCall]) -> list[int]:
        """`record` off the event loop."""
        return await asyncio.to_thread(self.record, calls)


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


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Metadata every recorded call carries: who made it and when, plus the caller's fields."""
    return {"pid": os.getpid(), "recorded_at": datetime.now(timezone.utc).isoformat(), **extra}
