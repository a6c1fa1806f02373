"""Schema v2: immutable capture of every provider attempt, the embedding cache, and provenance.

`raw_calls` is append-only (a trigger rejects UPDATE, DELETE and TRUNCATE). Groups, members, links
and artifacts describe what the calls and files belong to; they may grow but are written
idempotently through unique constraints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from studyllm_core.db.vocabulary import (
    CALL_STATUSES,
    LINK_TYPES,
    MODALITIES,
    PROMPT_TSVECTOR_SQL,
    TOKEN_COLUMNS,
)


def token_column_sql(key: str) -> str:
    """The generation expression of a token column (the same text as in migration 0003)."""
    value = f"(tokens_json->'{key}')"
    return (
        f"CASE WHEN jsonb_typeof{value} = 'number' AND {value}::numeric BETWEEN 0 AND 1e15 "
        f"THEN round({value}::numeric)::bigint END"
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class RawCall(Base):
    """One provider attempt, successful or not. Never updated or deleted."""

    __tablename__ = "raw_calls"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    modality: Mapped[str] = mapped_column(String(32), server_default="text")
    status: Mapped[str] = mapped_column(String(16))
    request_json: Mapped[dict[str, Any]] = mapped_column(JSONB)
    response_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tokens_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Read-only, for analytics: the covering index below lets per-model statistics skip the table.
    prompt_tokens: Mapped[int | None] = mapped_column(BigInteger, Computed(token_column_sql("prompt_tokens"), persisted=True))
    completion_tokens: Mapped[int | None] = mapped_column(
        BigInteger, Computed(token_column_sql("completion_tokens"), persisted=True)
    )
    total_tokens: Mapped[int | None] = mapped_column(BigInteger, Computed(token_column_sql("total_tokens"), persisted=True))

    __table_args__ = (
        CheckConstraint(_in("status", CALL_STATUSES), name="ck_raw_calls_status"),
        CheckConstraint(_in("modality", MODALITIES), name="ck_raw_calls_modality"),
        CheckConstraint("latency_ms IS NULL OR latency_ms >= 0", name="ck_raw_calls_latency"),
        CheckConstraint("status = 'success' OR error_json IS NOT NULL", name="ck_raw_calls_failure_has_error"),
        Index("ix_raw_calls_created_at", "created_at"),
        Index(
            "ix_raw_calls_provider_model_created", "provider", "model", "created_at",
            postgresql_include=["status", "latency_ms", *TOKEN_COLUMNS, "id"],
        ),
        Index("ix_raw_calls_status_created", "status", "created_at"),
        Index("ix_raw_calls_modality_created", "modality", "created_at"),
        Index("ix_raw_calls_request_hash", "request_hash"),
        Index("ix_raw_calls_prompt_fts", text(PROMPT_TSVECTOR_SQL), postgresql_using="gin"),
    )


class EmbeddingVector(Base):
    """The embedding cache: one vector per request hash, tied to the successful call that produced it."""

    __tablename__ = "embedding_vectors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    dimension: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    vector: Mapped[Any] = mapped_column(Vector())
    norm: Mapped[float] = mapped_column(Float)
    raw_call_id: Mapped[int] = mapped_column(ForeignKey("raw_calls.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The server, when it is part of the embedding space ('' for a vendor's API or older vectors).
    server: Mapped[str] = mapped_column(String(512), server_default="")

    __table_args__ = (
        CheckConstraint("dimension > 0", name="ck_embedding_vectors_dimension"),
        CheckConstraint("vector_dims(vector) = dimension", name="ck_embedding_vectors_dims_match"),
        Index("ix_embedding_vectors_space", "provider", "model", "server", "dimension"),
        Index("ix_embedding_vectors_raw_call", "raw_call_id"),
    )


class EmbeddingSet(Base):
    """A set of cached embeddings runs used; `digest` (sha256 of its members' sorted request hashes) once it is
    complete, so a run that uses exactly these embeddings references the set instead of copying it."""

    __tablename__ = "embedding_sets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    digest: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, server_default="0")
    call_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ux_embedding_sets_digest", "digest", unique=True, postgresql_where=text("digest IS NOT NULL")),
    )


class EmbeddingSetItem(Base):
    """A member of an embedding set (the `group_embeddings` view joins these to the groups using the set)."""

    __tablename__ = "embedding_set_items"

    set_id: Mapped[int] = mapped_column(ForeignKey("embedding_sets.id", ondelete="CASCADE"), primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("embedding_vectors.id"), primary_key=True)

    __table_args__ = (Index("ix_embedding_set_items_embedding", "embedding_id"),)


class GroupEmbeddingSet(Base):
    """A set of embeddings a group's run used: the group's items (`group_embeddings`) are the union of its sets."""

    __tablename__ = "group_embedding_sets"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("embedding_sets.id"), primary_key=True)

    __table_args__ = (Index("ix_group_embedding_sets_set", "set_id"),)


class EmbeddingLease(Base):
    """A claim on a text being embedded now, held by a live database session (UNLOGGED table)."""

    __tablename__ = "embedding_leases"

    request_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_pid: Mapped[int] = mapped_column(Integer)
    owner_started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Group(Base):
    """A named collection: a dataset, a batch of calls, a run, a step, a metrics bundle, ..."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    group_type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("group_type", "name", name="uq_groups_type_name"),
        Index("ix_groups_name", "name"),
    )


class GroupMember(Base):
    """A raw call's membership in a group (with an optional role and position)."""

    __tablename__ = "group_members"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    call_id: Mapped[int] = mapped_column(ForeignKey("raw_calls.id"))
    role: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("group_id", "call_id", name="uq_group_members_group_call"),
        Index("ix_group_members_call", "call_id"),
    )


class GroupLink(Base):
    """A directed edge between groups: a run's steps, data dependencies, containment, generation."""

    __tablename__ = "group_links"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parent_group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    child_group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    link_type: Mapped[str] = mapped_column(String(32))
    position: Mapped[int | None] = mapped_column(Integer)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("parent_group_id", "child_group_id", "link_type", name="uq_group_links_edge"),
        CheckConstraint("parent_group_id <> child_group_id", name="ck_group_links_no_self"),
        CheckConstraint(_in("link_type", LINK_TYPES), name="ck_group_links_type"),
        Index("ix_group_links_child", "child_group_id"),
    )


class Materialization(Base):
    """One time a group was made: by which run, with which config, code and library versions (its history)."""

    __tablename__ = "materializations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(128))
    asset_key: Mapped[str] = mapped_column(String(512))
    partition: Mapped[str | None] = mapped_column(String(512))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    code_version: Mapped[str | None] = mapped_column(String(128))
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_materializations_run", "run_id"),
        Index("ix_materializations_group", "group_id", "id"),
        Index("ix_materializations_asset", "asset_key", "partition", "id"),
    )


class MaterializationInput(Base):
    """A group a materialisation read, and the record that group had when it was read."""

    __tablename__ = "materialization_inputs"

    materialization_id: Mapped[int] = mapped_column(ForeignKey("materializations.id", ondelete="CASCADE"), primary_key=True)
    input_group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    input_materialization_id: Mapped[int | None] = mapped_column(ForeignKey("materializations.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_materialization_inputs_input", "input_materialization_id"),)


class CallArtifact(Base):
    """A file produced by a call or a group's step, with its checksum for verification on load."""

    __tablename__ = "call_artifacts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("raw_calls.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("byte_size >= 0", name="ck_call_artifacts_size"),
        CheckConstraint("char_length(sha256) = 64", name="ck_call_artifacts_sha256"),
        Index("ix_call_artifacts_group", "group_id"),
        Index("ix_call_artifacts_call", "call_id"),
        Index("ix_call_artifacts_uri", "uri"),
    )
