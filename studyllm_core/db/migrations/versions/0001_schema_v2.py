"""Schema v2: raw_calls (immutable), embedding_vectors (pgvector), groups, members, links, artifacts.

Revision ID: 0001_schema_v2
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_schema_v2"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "('success', 'failed', 'timeout', 'cancelled')"
MODALITIES = "('text', 'chat', 'embedding', 'summarization', 'image', 'audio')"
LINK_TYPES = "('step', 'contains', 'depends_on', 'generates')"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "raw_calls",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("modality", sa.String(32), nullable=False, server_default="text"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request_json", JSONB, nullable=False),
        sa.Column("response_json", JSONB),
        sa.Column("error_json", JSONB),
        sa.Column("latency_ms", sa.Float),
        sa.Column("tokens_json", JSONB),
        sa.Column("metadata_json", JSONB),
        sa.Column("request_hash", sa.String(64)),
        _created_at(),
        sa.CheckConstraint(f"status IN {STATUSES}", name="ck_raw_calls_status"),
        sa.CheckConstraint(f"modality IN {MODALITIES}", name="ck_raw_calls_modality"),
        sa.CheckConstraint("latency_ms IS NULL OR latency_ms >= 0", name="ck_raw_calls_latency"),
        sa.CheckConstraint(
            "status = 'success' OR error_json IS NOT NULL", name="ck_raw_calls_failure_has_error"
        ),
    )
    op.create_index("ix_raw_calls_created_at", "raw_calls", ["created_at"])
    op.create_index("ix_raw_calls_provider_model_created", "raw_calls", ["provider", "model", "created_at"])
    op.create_index("ix_raw_calls_status_created", "raw_calls", ["status", "created_at"])
    op.create_index("ix_raw_calls_modality_created", "raw_calls", ["modality", "created_at"])
    op.create_index("ix_raw_calls_request_hash", "raw_calls", ["request_hash"])
    op.execute(
        "CREATE INDEX ix_raw_calls_prompt_fts ON raw_calls "
        "USING gin (to_tsvector('simple', coalesce(request_json->>'prompt', '')))"
    )
    op.execute(
        """
        CREATE FUNCTION studyllm_reject_raw_call_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'raw_calls is immutable: % is not allowed (record a new call instead)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER raw_calls_immutable BEFORE UPDATE OR DELETE ON raw_calls "
        "FOR EACH ROW EXECUTE FUNCTION studyllm_reject_raw_call_change()"
    )
    op.execute(
        "CREATE TRIGGER raw_calls_no_truncate BEFORE TRUNCATE ON raw_calls "
        "FOR EACH STATEMENT EXECUTE FUNCTION studyllm_reject_raw_call_change()"
    )

    op.create_table(
        "embedding_vectors",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("vector", Vector(), nullable=False),
        sa.Column("norm", sa.Float, nullable=False),
        sa.Column("raw_call_id", sa.BigInteger, sa.ForeignKey("raw_calls.id"), nullable=False),
        _created_at(),
        sa.UniqueConstraint("request_hash", name="uq_embedding_vectors_request_hash"),
        sa.CheckConstraint("dimension > 0", name="ck_embedding_vectors_dimension"),
        sa.CheckConstraint("vector_dims(vector) = dimension", name="ck_embedding_vectors_dims_match"),
    )
    op.create_index("ix_embedding_vectors_model_dimension", "embedding_vectors", ["provider", "model", "dimension"])
    op.create_index("ix_embedding_vectors_raw_call", "embedding_vectors", ["raw_call_id"])

    op.create_table(
        "groups",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("group_type", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("metadata_json", JSONB),
        _created_at(),
        sa.UniqueConstraint("group_type", "name", name="uq_groups_type_name"),
    )
    op.create_index("ix_groups_name", "groups", ["name"])

    op.create_table(
        "group_members",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("group_id", sa.BigInteger, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("call_id", sa.BigInteger, sa.ForeignKey("raw_calls.id"), nullable=False),
        sa.Column("role", sa.String(64)),
        sa.Column("position", sa.Integer),
        _created_at(),
        sa.UniqueConstraint("group_id", "call_id", name="uq_group_members_group_call"),
    )
    op.create_index("ix_group_members_call", "group_members", ["call_id"])

    op.create_table(
        "group_links",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("parent_group_id", sa.BigInteger, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("child_group_id", sa.BigInteger, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("link_type", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer),
        sa.Column("metadata_json", JSONB),
        _created_at(),
        sa.UniqueConstraint("parent_group_id", "child_group_id", "link_type", name="uq_group_links_edge"),
        sa.CheckConstraint("parent_group_id <> child_group_id", name="ck_group_links_no_self"),
        sa.CheckConstraint(f"link_type IN {LINK_TYPES}", name="ck_group_links_type"),
    )
    op.create_index("ix_group_links_child", "group_links", ["child_group_id"])

    op.create_table(
        "call_artifacts",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("call_id", sa.BigInteger, sa.ForeignKey("raw_calls.id")),
        sa.Column("group_id", sa.BigInteger, sa.ForeignKey("groups.id", ondelete="CASCADE")),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("byte_size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("metadata_json", JSONB),
        _created_at(),
        sa.CheckConstraint("byte_size >= 0", name="ck_call_artifacts_size"),
        sa.CheckConstraint("char_length(sha256) = 64", name="ck_call_artifacts_sha256"),
    )
    op.create_index("ix_call_artifacts_group", "call_artifacts", ["group_id"])
    op.create_index("ix_call_artifacts_call", "call_artifacts", ["call_id"])
    op.create_index("ix_call_artifacts_uri", "call_artifacts", ["uri"])


def downgrade() -> None:
    for table in ("call_artifacts", "group_links", "group_members", "groups", "embedding_vectors"):
        op.drop_table(table)
    op.execute("DROP TRIGGER IF EXISTS raw_calls_no_truncate ON raw_calls")
    op.execute("DROP TRIGGER IF EXISTS raw_calls_immutable ON raw_calls")
    op.drop_table("raw_calls")
    op.execute("DROP FUNCTION IF EXISTS studyllm_reject_raw_call_change()")
