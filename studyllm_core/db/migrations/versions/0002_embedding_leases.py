"""Embedding leases: which process is embedding which text right now.

A lease names the database session (pid and start time) that holds it; a lease whose session is
gone (the process crashed or was killed) may be taken over at once, with no timeout to wait for.
UNLOGGED: leases are only meaningful while their sessions live, so they need no crash safety.

Revision ID: 0002_embedding_leases
Revises: 0001_schema_v2
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002_embedding_leases"
down_revision = "0001_schema_v2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE UNLOGGED TABLE embedding_leases (
            request_hash varchar(64) PRIMARY KEY,
            owner_pid integer NOT NULL,
            owner_started timestamptz,
            claimed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE embedding_leases")
