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
    "raw_calls", "embedding_vectors", "groups", "group_members", "group_links", "call_artifacts", "embedding_sets",
    "embedding_set_items", "group_embedding_sets", "materializations", "materialization_inputs",
)
# The newest revision in migrations/versions; tests/core/db/test_migrations.py checks it against
# Alembic's own head, so a new migration without a bump here fails there.
SCHEMA_HEAD = "0006_h18e_member_sets"


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


# What the application role may do: read everything; add raw calls but never change or remove them (with
# the triggers, which it cannot switch off as it owns no table); keep the cache, leases and provenance.
_APP_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT ON raw_calls TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON embedding_vectors, embedding_leases, groups, group_members, "
    "group_links, call_artifacts, group_embeddings, embedding_sets, embedding_set_items, group_embedding_sets, "
    "materializations, materialization_inputs TO {role}",
    "GRANT SELECT ON alembic_version TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


def grant_app_privileges(conn, role: str) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
    """Give the application role `role` what it needs on the schema (run as the owner; idempotent)."""
    quoted = conn.dialect.identifier_preparer.quote(role)
    for statement in _APP_GRANTS:
        conn.execute(text(statement.format(role=quoted)))


def upgrade(engine: Engine, revision: str = "head", *, app_role: str | None = None) -> str:
    """Apply migrations up to `revision` (serialised across processes) and return the new revision; with
    `app_role`, `engine` is the owner's and the application role gets its privileges afterwards."""
    from alembic import command
    from alembic.util import CommandError

    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            # Two processes upgrading at once would race on CREATE TABLE: take a lock for the duration.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('studyllm.migrate'))"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            if app_role:
                grant_app_privileges(conn, app_role)
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


def ensure_schema(engine: Engine, *, app_role: str | None = None) -> None:
    """Upgrade to head when the database is behind; cheap when it is current (one query). With `app_role`,
    `engine` is the owner's, and the application role gets its privileges when it lacks them."""
    if current_revision(engine) != head_revision():
        upgrade(engine, app_role=app_role)
    elif app_role and not _app_role_ready(engine, app_role):
        with engine.begin() as conn:
            grant_app_privileges(conn, app_role)


def _app_role_ready(engine: Engine, role: str) -> bool:
    sql = text("SELECT has_table_privilege(:r, 'raw_calls', 'INSERT') AND has_table_privilege(:r, 'group_embedding_sets', 'INSERT')")
    with engine.connect() as conn:
        return bool(conn.execute(sql, {"r": role}).scalar())


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
