"""Apply and inspect schema migrations (Alembic), without an alembic.ini on disk.

Alembic is imported only to migrate: checking that a database is current is one query against
its `alembic_version` table, so commands do not pay Alembic's import (about 0.1 s) at every start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from studyllm_core.errors import DatabaseError
from studyllm_core.logging_config import get_logger

if TYPE_CHECKING:
    from alembic.config import Config

log = get_logger("db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
TABLES = (
    "raw_calls", "embedding_vectors", "groups", "group_members", "group_links", "call_artifacts", "group_embeddings",
)
# The newest revision in migrations/versions; tests/core/db/test_migrations.py checks it against
# Alembic's own head, so a new migration without a bump here fails there.
SCHEMA_HEAD = "0004_server_group_embeddings"


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of studyllm."""
    return SCHEMA_HEAD


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply migrations up to `revision` (serialised across processes) and return the new revision."""
    from alembic import command
    from alembic.util import CommandError

    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            # Two processes upgrading at once would race on CREATE TABLE: take a lock for the duration.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('studyllm.migrate'))"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except DBAPIError as exc:
        raise DatabaseError(f"migration failed: {str(exc.orig).strip().splitlines()[0]}") from None
    except CommandError as exc:
        # Mostly a database migrated by a newer studyllm: its revision is not among ours.
        raise DatabaseError(
            f"cannot migrate the database at revision {current_revision(engine)!r} (this studyllm's newest is "
            f"{SCHEMA_HEAD}): {exc}; upgrade studyllm, or use another database (STUDYLLM_DATABASE_URL or STUDYLLM_HOME)"
        ) from None
    rev = current_revision(engine) or ""
    log.info("database at revision %s", rev)
    return rev


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head when the database is behind; cheap when it is current."""
    if current_revision(engine) != head_revision():
        upgrade(engine)


def table_counts(engine: Engine) -> dict[str, int | None]:
    """Row count of each schema table (None for a table that does not exist yet)."""
    existing = set(inspect(engine).get_table_names())
    present = [t for t in TABLES if t in existing]
    counts: dict[str, int | None] = {t: None for t in TABLES}
    if present:
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in present)
        with engine.connect() as conn:
            counts.update({name: int(n) for name, n in conn.execute(text(sql))})
    return counts
