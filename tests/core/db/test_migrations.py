"""Migrations build the whole schema from an empty database, and are idempotent."""

from sqlalchemy import inspect, text

from studyllm_core.db.engine import make_engine
from studyllm_core.db.migrate import MIGRATIONS_DIR, TABLES, current_revision, head_revision, table_counts, upgrade


def test_upgrade_from_empty_creates_every_table_and_the_vector_column(empty_database_url):
    engine = make_engine(empty_database_url)
    assert current_revision(engine) is None
    assert table_counts(engine) == {t: None for t in TABLES}

    assert upgrade(engine) == head_revision()
    assert set(TABLES) <= set(inspect(engine).get_table_names())
    assert table_counts(engine) == {t: 0 for t in TABLES}
    with engine.connect() as conn:
        udt = conn.execute(
            text("SELECT udt_name FROM information_schema.columns WHERE table_name='embedding_vectors' AND column_name='vector'")
        ).scalar_one()
        triggers = set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'raw_calls'::regclass")).scalars())
    assert udt == "vector"
    assert {"raw_calls_immutable", "raw_calls_no_truncate"} <= triggers

    # A second upgrade is a no-op.
    assert upgrade(engine) == head_revision()
    engine.dispose()


def test_schema_head_is_alembics_head_and_the_revision_query_agrees_with_alembic(engine):
    """SCHEMA_HEAD (what `open_database` compares against without importing Alembic) is the newest
    migration on disk, and the one-query revision read gives what Alembic itself reads."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        assert current_revision(engine) == MigrationContext.configure(conn).get_current_revision() == head_revision()


def test_models_match_the_migration(engine):
    """The ORM models and the hand-written migration describe the same tables and columns."""
    from studyllm_core.db.models import Base

    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        db_cols = {c["name"] for c in insp.get_columns(table.name)}
        assert db_cols == {c.name for c in table.columns}, table.name
        db_checks = {c["name"] for c in insp.get_check_constraints(table.name)}
        model_checks = {c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"}
        assert model_checks == db_checks, table.name
