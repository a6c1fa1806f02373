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


def test_0006_turns_each_groups_items_into_a_set_with_its_digest_and_the_view_reads_them_as_before(empty_database_url):
    """Existing `group_embeddings` rows become one set per group (the first group of equal items gives the set
    its content address, which is `set_digest`'s); the view reads exactly the rows there were; downgrade restores
    the table."""
    import hashlib

    from studyllm_core.db.embedding_cache import set_digest

    engine = make_engine(empty_database_url)
    upgrade(engine, "0005_h16a_runs")
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    rows = {1: [1, 2, 3], 2: [3, 2, 1], 3: [4, 5], 4: [6]}  # groups 1 and 2 used the same embeddings
    with engine.begin() as conn:
        call = conn.execute(text("INSERT INTO raw_calls (provider, model, modality, status, request_json) "
                                 "VALUES ('p', 'm', 'embedding', 'success', '{}') RETURNING id")).scalar_one()
        for i, h in enumerate(hashes + ["not-hex"], start=1):
            conn.execute(text("INSERT INTO embedding_vectors (id, request_hash, provider, model, dimension, text, vector, norm, "
                              "raw_call_id) VALUES (:i, :h, 'p', 'm', 2, 't', '[1,0]', 1, :c)"), {"i": i, "h": h, "c": call})
        for g, ids in rows.items():
            conn.execute(text("INSERT INTO groups (id, name, group_type) VALUES (:g, :n, 'embedding_batch')"), {"g": g, "n": f"g{g}"})
            for e in ids:
                conn.execute(text("INSERT INTO group_embeddings VALUES (:g, :e)"), {"g": g, "e": e})
    upgrade(engine)
    read = "SELECT group_id, embedding_id FROM group_embeddings ORDER BY 1, 2"
    expected = sorted((g, e) for g, ids in rows.items() for e in ids)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(read))] == expected
        sets = {g: (d, size, calls) for g, d, size, calls in conn.execute(text(
            "SELECT gs.group_id, s.digest, s.size, s.call_ids FROM group_embedding_sets gs JOIN embedding_sets s ON s.id = gs.set_id"))}
    assert sets[1] == (set_digest(hashes[:3]), 3, [call])
    assert sets[2][0] is None  # the same items as group 1: one content address for them
    assert sets[3][0] == set_digest(hashes[3:5]) and sets[4][0] is None  # "not-hex" is no sha256
    from alembic import command

    from studyllm_core.db.migrate import _alembic_config

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005_h16a_runs")
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(read))] == expected
        assert conn.execute(text("SELECT to_regclass('embedding_sets')")).scalar() is None
    engine.dispose()
