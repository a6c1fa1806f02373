"""The server of an embedding space, and the exact embeddings each group covers.

- `embedding_vectors.server`: the server that made a vector when the server is part of the
  embedding space (an `openai-compatible` base URL, or any non-default base URL; '' for a
  vendor's own API and for vectors stored before this revision). Two servers may serve different
  models under one name, so their vectors are neither shared through the cache nor searched together.
  The space index becomes (provider, model, server, dimension).
- `group_embeddings`: which cached embeddings a group used (the texts of its runs), so exporting
  a group writes exactly its items. Group membership of calls alone over-reached: a call that
  embedded 40 texts for one run belongs, through the cache, to a later run that used 5 of them.
  Filled here from the calls' membership (what export read until now).

Revision ID: 0004_server_group_embeddings
Revises: 0003_study_token_columns
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004_server_group_embeddings"
down_revision = "0003_study_token_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE embedding_vectors ADD COLUMN server varchar(512) NOT NULL DEFAULT ''")
    op.execute("DROP INDEX ix_embedding_vectors_model_dimension")
    op.execute("CREATE INDEX ix_embedding_vectors_space ON embedding_vectors (provider, model, server, dimension)")
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
    op.execute(
        "INSERT INTO group_embeddings (group_id, embedding_id) "
        "SELECT DISTINCT m.group_id, v.id FROM group_members m JOIN embedding_vectors v ON v.raw_call_id = m.call_id"
    )


def downgrade() -> None:
    op.execute("DROP TABLE group_embeddings")
    op.execute("DROP INDEX ix_embedding_vectors_space")
    op.execute("CREATE INDEX ix_embedding_vectors_model_dimension ON embedding_vectors (provider, model, dimension)")
    op.execute("ALTER TABLE embedding_vectors DROP COLUMN server")
