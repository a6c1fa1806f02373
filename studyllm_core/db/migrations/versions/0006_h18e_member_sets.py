"""Content-addressed member sets: the embeddings a run used are stored once per distinct set.

A cached re-run of the same texts used to copy its whole member set into `group_embeddings` (a
million rows, each checked against two foreign keys, for a re-run of a million texts). Now:

- `embedding_sets`: one row per set of embeddings; `digest` (sha256 over its members' request
  hashes as 32-byte values in ascending order, see `embedding_cache.set_digest`) once the set is complete, NULL while a run
  is still filling it (or when it failed part of its texts); `size` its member count; `call_ids` the
  raw calls that produced its members (what a run that reuses the set records as its input calls).
- `embedding_set_items (set_id, embedding_id)`: the members, written batch by batch as a run goes
  (a killed run keeps what it stored).
- `group_embedding_sets (group_id, set_id)`: the sets a group's runs used; a run that uses exactly
  the members of a complete set adds one row here and copies nothing.
- `group_embeddings` becomes a view over the two (group_id, embedding_id), so its readers (export,
  provenance) read what they read before.

Data: every group's existing items become one set referenced by the group; the first group of each
distinct item set gives it its digest, computed here.

Revision ID: 0006_h18e_member_sets
Revises: 0005_h16a_runs
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006_h18e_member_sets"
down_revision = "0005_h16a_runs"
branch_labels = None
depends_on = None

VIEW = (
    "CREATE VIEW group_embeddings AS SELECT DISTINCT gs.group_id, si.embedding_id "
    "FROM group_embedding_sets gs JOIN embedding_set_items si ON si.set_id = gs.set_id"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE embedding_sets (
            id bigserial PRIMARY KEY,
            digest varchar(64),
            size bigint NOT NULL DEFAULT 0,
            call_ids bigint[] NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX ux_embedding_sets_digest ON embedding_sets (digest) WHERE digest IS NOT NULL")
    op.execute(
        """
        CREATE TABLE embedding_set_items (
            set_id bigint NOT NULL REFERENCES embedding_sets (id) ON DELETE CASCADE,
            embedding_id bigint NOT NULL REFERENCES embedding_vectors (id),
            CONSTRAINT pk_embedding_set_items PRIMARY KEY (set_id, embedding_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_embedding_set_items_embedding ON embedding_set_items (embedding_id)")
    op.execute(
        """
        CREATE TABLE group_embedding_sets (
            group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            set_id bigint NOT NULL REFERENCES embedding_sets (id),
            CONSTRAINT pk_group_embedding_sets PRIMARY KEY (group_id, set_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_group_embedding_sets_set ON group_embedding_sets (set_id)")
    # Each group's items become one set; the first group of each digest gives it its content address
    # (hashes that are not hex sha256, which only hand-made rows have, leave the set unaddressed).
    op.execute(
        """
        CREATE TEMP TABLE _group_sets ON COMMIT DROP AS
        SELECT nextval('embedding_sets_id_seq') AS set_id, d.*,
               row_number() OVER (PARTITION BY d.digest ORDER BY d.group_id) AS nth
        FROM (
            SELECT ge.group_id,
                   CASE WHEN bool_and(v.request_hash ~ '^[0-9a-f]{64}$') THEN encode(sha256(string_agg(
                       decode(CASE WHEN v.request_hash ~ '^[0-9a-f]{64}$' THEN v.request_hash ELSE '' END, 'hex'),
                       ''::bytea ORDER BY v.request_hash COLLATE "C")), 'hex') END AS digest,
                   count(*) AS size,
                   array_agg(DISTINCT v.raw_call_id ORDER BY v.raw_call_id) AS call_ids
            FROM group_embeddings ge JOIN embedding_vectors v ON v.id = ge.embedding_id
            GROUP BY ge.group_id
        ) d
        """
    )
    op.execute(
        "INSERT INTO embedding_sets (id, digest, size, call_ids) "
        "SELECT set_id, CASE WHEN nth = 1 THEN digest END, size, call_ids FROM _group_sets"
    )
    op.execute("INSERT INTO group_embedding_sets (group_id, set_id) SELECT group_id, set_id FROM _group_sets")
    op.execute(
        "INSERT INTO embedding_set_items (set_id, embedding_id) "
        "SELECT s.set_id, ge.embedding_id FROM group_embeddings ge JOIN _group_sets s ON s.group_id = ge.group_id"
    )
    op.execute("DROP TABLE group_embeddings")
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("CREATE TABLE _group_embeddings_rows AS SELECT group_id, embedding_id FROM group_embeddings")
    op.execute("DROP VIEW group_embeddings")
    op.execute(
        """
        CREATE TABLE group_embeddings (
            group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            embedding_id bigint NOT NULL REFERENCES embedding_vectors (id),
            CONSTRAINT pk_group_embeddings PRIMARY KEY (group_id, embedding_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_group_embeddings_embedding ON group_embeddings (embedding_id)")
    op.execute("INSERT INTO group_embeddings SELECT group_id, embedding_id FROM _group_embeddings_rows")
    op.execute("DROP TABLE _group_embeddings_rows")
    op.execute("DROP TABLE group_embedding_sets")
    op.execute("DROP TABLE embedding_set_items")
    op.execute("DROP TABLE embedding_sets")
