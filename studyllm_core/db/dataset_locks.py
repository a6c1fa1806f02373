"""One sweep of a (dataset, K) at a time, whoever started it: a Postgres advisory lock per (dataset, K).

A run takes the locks of all its K (in ascending K, so two runs never wait for each other in a
circle) before it sweeps them, so two runs whose K overlap take turns while runs of other K of the
same dataset (the per-K runs of a cluster) or of other datasets go on. The locks are session-level
advisory locks held by one database connection kept open while the K are swept; they end with that session, so a crashed or killed process frees it as soon as
its connection closes (no timeout, no row to clean up). The holder names itself in the session's
`application_name`, so a run that waits can say which run and process it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from studyllm_core.db.embedding_cache import db_errors

NAMESPACE = "studyllm sweep results"  # the first key of a lock: hashtext of this, then of "<dataset>|<K>"
HOLDER_PREFIX = "studyllm sweep "
_KEYS = "hashtext(:namespace), hashtext(:key)"


@db_errors("naming the session of the dataset's sweep lock")
def _name_session(conn: Connection, holder: str) -> None:
    conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": (HOLDER_PREFIX + holder)[:63]})


def _key(dataset: str, k: int) -> str:
    return f"{dataset}|{k}"


@db_errors("taking a sweep lock")
def _try_lock(conn: Connection, dataset: str, k: int) -> bool:
    return bool(conn.execute(text(f"SELECT pg_try_advisory_lock({_KEYS})"),
                             {"namespace": NAMESPACE, "key": _key(dataset, k)}).scalar_one())


@db_errors("reading who holds a sweep lock")
def lock_holder(conn: Connection, dataset: str, k: int) -> str | None:
    """Who holds the lock of (`dataset`, `k`) ("run <id> (pid N)"), or None when it is free."""
    row = conn.execute(text(f"""
        SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.classid = hashtext(:namespace)::oid AND l.objid = hashtext(:key)::oid
        LIMIT 1"""), {"namespace": NAMESPACE, "key": _key(dataset, k)}).first()
    if row is None:
        return None
    name, pid = row
    who = name.removeprefix(HOLDER_PREFIX) if name and name.startswith(HOLDER_PREFIX) else "another process"
    return f"{who} (database pid {pid})"


@contextmanager
def dataset_lock(
    engine: Engine,
    dataset: str,
    ks: Iterable[int],
    *,
    holder: str,
    notice: Callable[[str], None] | None = None,
    poll_seconds: float = 1.0,
    notice_every_seconds: float = 30.0,
) -> Iterator[None]:
    """Hold the sweep locks of `dataset` at every K of `ks` for the block, waiting (with a line to
    `notice` when the wait starts and every `notice_every_seconds`) while another process holds one.
    `holder` (e.g. "run <id>") is what a waiting process is told."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")  # no transaction stays open while held
        _name_session(conn, holder)
        try:
            started = time.monotonic()
            said = None
            for k in sorted(set(ks)):  # one order for every run: no two runs wait for each other
                while not _try_lock(conn, dataset, k):
                    now = time.monotonic()
                    if notice is not None and (said is None or now - said >= notice_every_seconds):
                        waited = f" (waited {now - started:.0f} s)" if said is not None else ""
                        notice(f"dataset {dataset!r} K={k} is being swept by {lock_holder(conn, dataset, k) or 'another run'}: "
                               f"waiting for it to finish{waited}")
                        said = now
                    time.sleep(poll_seconds)
            if said is not None and notice is not None:
                notice(f"dataset {dataset!r} is free after {time.monotonic() - started:.0f} s: sweeping")
            yield
        finally:
            # The connection goes back to the pool: nothing of the lock may stay on it. A session that
            # cannot be reached any more holds nothing either: drop it.
            try:
                conn.execute(text("SELECT pg_advisory_unlock_all(), set_config('application_name', 'studyllm', false)"))
            except Exception:  # noqa: BLE001 - the block's own error, if any, is what the caller sees
                raw.invalidate()
