"""GroupRepository: groups, their member calls, the links between groups, and recorded artifacts.

Every write is idempotent through a unique constraint (ON CONFLICT), so re-running a step reuses
what exists instead of duplicating it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import transaction, translate_db_errors
from studyllm_core.db.jsonutil import dumps, jsonb
from studyllm_core.db.vocabulary import LINK_TYPES
from studyllm_core.errors import NotFoundError


@dataclass(frozen=True)
class GroupRow:
    id: int
    group_type: str
    name: str
    description: str | None
    metadata_json: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class LinkRow:
    id: int
    parent_group_id: int
    child_group_id: int
    link_type: str
    position: int | None
    metadata_json: dict[str, Any] | None


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    call_id: int | None
    group_id: int | None
    uri: str
    content_type: str
    byte_size: int
    sha256: str
    metadata_json: dict[str, Any] | None
    created_at: datetime


_GROUP_COLS = "id, group_type, name, description, metadata_json, created_at"
_LINK_COLS = "id, parent_group_id, child_group_id, link_type, position, metadata_json"
_ARTIFACT_COLS = "id, call_id, group_id, uri, content_type, byte_size, sha256, metadata_json, created_at"


class GroupRepository:
    """Provenance storage: groups, members, links, artifacts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- groups ---------------------------------------------------------------------------------

    def ensure_group(
        self,
        group_type: str,
        name: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Id of the group (type, name), created on first use; later metadata is merged in."""
        sql = text(
            "INSERT INTO groups (group_type, name, description, metadata_json) "
            "VALUES (:t, :n, :d, :m) "
            "ON CONFLICT (group_type, name) DO UPDATE SET "
            "  metadata_json = coalesce(groups.metadata_json, '{}'::jsonb) || coalesce(EXCLUDED.metadata_json, '{}'::jsonb), "
            "  description = coalesce(EXCLUDED.description, groups.description) "
            "RETURNING id"
        )
        with translate_db_errors(f"saving group {group_type}:{name}"), transaction(self.engine, conn) as tx:
            return int(tx.execute(sql, {"t": group_type, "n": name, "d": description, "m": jsonb(metadata)}).scalar_one())

    def ensure_groups(
        self,
        group_type: str,
        names: Sequence[str],
        *,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        conn: Connection | None = None,
    ) -> dict[str, int]:
        """Ids of many groups of one type by name, created where missing, in one statement (`ensure_group` in bulk)."""
        if not names:
            return {}
        if len(set(names)) != len(names):
            raise ValueError("ensure_groups needs distinct names")
        metas = [None if m is None else dumps(m) for m in (metadata or [None] * len(names))]
        sql = text(
            "INSERT INTO groups (group_type, name, metadata_json) "
            "SELECT :t, u.n, CAST(u.m AS jsonb) FROM unnest(CAST(:names AS text[]), CAST(:metas AS text[])) AS u(n, m) "
            "ON CONFLICT (group_type, name) DO UPDATE SET "
            "  metadata_json = coalesce(groups.metadata_json, '{}'::jsonb) || coalesce(EXCLUDED.metadata_json, '{}'::jsonb) "
            "RETURNING name, id"
        )
        with translate_db_errors(f"saving {len(names)} {group_type} groups"), transaction(self.engine, conn) as tx:
            return {name: int(gid) for name, gid in tx.execute(sql, {"t": group_type, "names": list(names), "metas": metas})}

    def get_group(self, group_id: int) -> GroupRow | None:
        with translate_db_errors("reading a group"), self.engine.connect() as conn:
            row = conn.execute(text(f"SELECT {_GROUP_COLS} FROM groups WHERE id = :id"), {"id": group_id}).first()
        return GroupRow(*row) if row else None

    def lookup(self, group_type: str, name: str) -> GroupRow | None:
        """The group (type, name) exactly, or None; unlike `find_group`, a numeric name is never read as an id."""
        sql = f"SELECT {_GROUP_COLS} FROM groups WHERE group_type = :t AND name = :n"
        with translate_db_errors("finding a group"), self.engine.connect() as conn:
            row = conn.execute(text(sql), {"t": group_type, "n": name}).first()
        return GroupRow(*row) if row else None

    def find_group(self, id_or_name: str | int, group_type: str | None = None) -> GroupRow:
        """A group by id or by name (the newest when several types share a name); NotFoundError otherwise."""
        if isinstance(id_or_name, int) or str(id_or_name).isdigit():
            found = self.get_group(int(id_or_name))
            if found:
                return found
        sql = f"SELECT {_GROUP_COLS} FROM groups WHERE name = :n"
        params: dict[str, Any] = {"n": str(id_or_name)}
        if group_type:
            sql += " AND group_type = :t"
            params["t"] = group_type
        with translate_db_errors("finding a group"), self.engine.connect() as conn:
            row = conn.execute(text(sql + " ORDER BY id DESC LIMIT 1"), params).first()
        if row is None:
            raise NotFoundError(f"no group with id or name {id_or_name!r}; list groups with `studyllm groups`")
        return GroupRow(*row)

    def list_groups(self, group_type: str | None = None, *, limit: int = 100) -> list[GroupRow]:
        sql = f"SELECT {_GROUP_COLS} FROM groups"
        params: dict[str, Any] = {"limit": limit}
        if group_type:
            sql += " WHERE group_type = :t"
            params["t"] = group_type
        with translate_db_errors("listing groups"), self.engine.connect() as conn:
            return [GroupRow(*r) for r in conn.execute(text(sql + " ORDER BY id DESC LIMIT :limit"), params)]

    def with_prefix(self, group_type: str, prefix: str) -> list[GroupRow]:
        """Groups of one type whose name starts with `prefix`, oldest first."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = f"SELECT {_GROUP_COLS} FROM groups WHERE group_type = :t AND name LIKE :p ORDER BY id"
        with translate_db_errors("listing groups"), self.engine.connect() as conn:
            return [GroupRow(*r) for r in conn.execute(text(sql), {"t": group_type, "p": pattern})]

    # -- members --------------------------------------------------------------------------------

    def add_members(
        self, group_id: int, call_ids: Sequence[int], *, role: str | None = None, conn: Connection | None = None
    ) -> int:
        """Add calls to a group in one statement (positions follow `call_ids`); returns how many were new."""
        if not call_ids:
            return 0
        sql = text(
            "INSERT INTO group_members (group_id, call_id, role, position) "
            "SELECT :g, c.id, :role, c.pos - 1 FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS c(id, pos) "
            "ON CONFLICT (group_id, call_id) DO NOTHING"
        )
        with translate_db_errors("adding group members"), transaction(self.engine, conn) as tx:
            return tx.execute(sql, {"g": group_id, "ids": list(call_ids), "role": role}).rowcount

    def add_memberships(
        self, group_ids: Sequence[int], call_ids: Sequence[int], *, role: str | None = None, conn: Connection | None = None
    ) -> int:
        """Add call_ids[i] to group_ids[i] for every i, in one statement; returns how many were new."""
        if len(group_ids) != len(call_ids):
            raise ValueError("add_memberships needs as many group ids as call ids")
        if not call_ids:
            return 0
        sql = text(
            "INSERT INTO group_members (group_id, call_id, role) "
            "SELECT u.g, u.c, :role FROM unnest(CAST(:groups AS bigint[]), CAST(:calls AS bigint[])) AS u(g, c) "
            "ON CONFLICT (group_id, call_id) DO NOTHING"
        )
        with translate_db_errors("adding group members"), transaction(self.engine, conn) as tx:
            return tx.execute(sql, {"groups": list(group_ids), "calls": list(call_ids), "role": role}).rowcount

    def member_counts(self, group_ids: Sequence[int]) -> dict[int, int]:
        """Number of member calls of each group (0 for none), in one query."""
        sql = (
            "SELECT g, count(m.call_id) FROM unnest(CAST(:ids AS bigint[])) AS g "
            "LEFT JOIN group_members m ON m.group_id = g GROUP BY g"
        )
        with translate_db_errors("counting group members"), self.engine.connect() as conn:
            return {int(g): int(n) for g, n in conn.execute(text(sql), {"ids": list(group_ids)})}

    def member_ids(self, group_id: int) -> list[int]:
        """Call ids of a group, in position order."""
        sql = "SELECT call_id FROM group_members WHERE group_id = :g ORDER BY position NULLS LAST, id"
        with translate_db_errors("reading group members"), self.engine.connect() as conn:
            return [int(r) for r in conn.execute(text(sql), {"g": group_id}).scalars()]

    # -- links ----------------------------------------------------------------------------------

    def link(
        self,
        parent_id: int,
        child_id: int,
        link_type: str,
        *,
        position: int | None = None,
        metadata: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Id of the edge parent -> child of `link_type`, created on first use."""
        if link_type not in LINK_TYPES:
            raise ValueError(f"link_type must be one of {', '.join(LINK_TYPES)}, not {link_type!r}")
        if parent_id == child_id:
            raise ValueError("a group cannot link to itself")
        sql = text(
            "INSERT INTO group_links (parent_group_id, child_group_id, link_type, position, metadata_json) "
            "VALUES (:p, :c, :t, :pos, :m) "
            "ON CONFLICT (parent_group_id, child_group_id, link_type) DO UPDATE SET "
            "  position = coalesce(EXCLUDED.position, group_links.position) "
            "RETURNING id"
        )
        with translate_db_errors("linking groups"), transaction(self.engine, conn) as tx:
            return int(
                tx.execute(sql, {"p": parent_id, "c": child_id, "t": link_type, "pos": position, "m": jsonb(metadata)}).scalar_one()
            )

    def link_positions(
        self, parent_ids: Sequence[int], child_ids: Sequence[int], positions: Sequence[int | None], link_type: str,
        *, conn: Connection | None = None,
    ) -> None:
        """Edges parent -> child of `link_type`, each with its position (`link` in bulk: one statement; an
        existing edge keeps its position where the new one is None)."""
        if link_type not in LINK_TYPES:
            raise ValueError(f"link_type must be one of {', '.join(LINK_TYPES)}, not {link_type!r}")
        if any(p == c for p, c in zip(parent_ids, child_ids, strict=True)):
            raise ValueError("a group cannot link to itself")
        if not parent_ids:
            return
        sql = text(
            "INSERT INTO group_links (parent_group_id, child_group_id, link_type, position) "
            "SELECT e.p, e.c, :t, e.pos FROM unnest(CAST(:parents AS bigint[]), CAST(:children AS bigint[]), "
            "  CAST(:positions AS integer[])) AS e(p, c, pos) "
            "ON CONFLICT (parent_group_id, child_group_id, link_type) DO UPDATE SET "
            "  position = coalesce(EXCLUDED.position, group_links.position)"
        )
        params = {"parents": list(parent_ids), "children": list(child_ids), "positions": list(positions), "t": link_type}
        with translate_db_errors("linking groups"), transaction(self.engine, conn) as tx:
            tx.execute(sql, params)

    def link_many(
        self, parent_id: int, child_ids: Sequence[int], link_type: str, *, conn: Connection | None = None
    ) -> int:
        """Edges parent -> each child of `link_type` in one statement (existing ones kept); returns how many were new."""
        return self._link_pairs([parent_id] * len(child_ids), list(child_ids), link_type, conn)

    def link_parents(
        self, parent_ids: Sequence[int], child_id: int, link_type: str, *, conn: Connection | None = None
    ) -> int:
        """Edges each parent -> child of `link_type` in one statement (existing ones kept); returns how many were new."""
        return self._link_pairs(list(parent_ids), [child_id] * len(parent_ids), link_type, conn)

    def link_pairs(
        self, parent_ids: Sequence[int], child_ids: Sequence[int], link_type: str, *, conn: Connection | None = None
    ) -> int:
        """Edges parent -> child of `link_type` for each pair, in one statement (existing ones kept); how many were new."""
        return self._link_pairs(list(parent_ids), list(child_ids), link_type, conn)

    def _link_pairs(self, parents: list[int], children: list[int], link_type: str, conn: Connection | None) -> int:
        if link_type not in LINK_TYPES:
            raise ValueError(f"link_type must be one of {', '.join(LINK_TYPES)}, not {link_type!r}")
        if any(p == c for p, c in zip(parents, children, strict=True)):
            raise ValueError("a group cannot link to itself")
        if not parents:
            return 0
        sql = text(
            "INSERT INTO group_links (parent_group_id, child_group_id, link_type) "
            "SELECT e.p, e.c, :t FROM unnest(CAST(:parents AS bigint[]), CAST(:children AS bigint[])) AS e(p, c) "
            "ON CONFLICT (parent_group_id, child_group_id, link_type) DO NOTHING"
        )
        with translate_db_errors("linking groups"), transaction(self.engine, conn) as tx:
            return tx.execute(sql, {"parents": parents, "children": children, "t": link_type}).rowcount

    def parent_groups(self, child_id: int, link_type: str) -> list[GroupRow]:
        """The groups linked to `child_id` as parents by `link_type`, in link order (one query)."""
        cols = ", ".join(f"g.{c.strip()}" for c in _GROUP_COLS.split(","))
        sql = (
            f"SELECT {cols} FROM group_links l JOIN groups g ON g.id = l.parent_group_id "
            "WHERE l.child_group_id = :c AND l.link_type = :t ORDER BY l.position NULLS LAST, l.id"
        )
        with translate_db_errors("reading group links"), self.engine.connect() as conn:
            return [GroupRow(*row) for row in conn.execute(text(sql), {"c": child_id, "t": link_type})]

    def children(self, parent_id: int, link_type: str | None = None) -> list[LinkRow]:
        return self._links("parent_group_id", parent_id, link_type)

    def parents(self, child_id: int, link_type: str | None = None) -> list[LinkRow]:
        return self._links("child_group_id", child_id, link_type)

    def _links(self, column: str, group_id: int, link_type: str | None) -> list[LinkRow]:
        sql = f"SELECT {_LINK_COLS} FROM group_links WHERE {column} = :g"
        params: dict[str, Any] = {"g": group_id}
        if link_type:
            sql += " AND link_type = :t"
            params["t"] = link_type
        with translate_db_errors("reading group links"), self.engine.connect() as conn:
            return [LinkRow(*r) for r in conn.execute(text(sql + " ORDER BY position NULLS LAST, id"), params)]

    def get_run_step_sequence(self, run_id: int) -> list[GroupRow]:
        """The step groups of a run in execution order (links of type 'step', by position)."""
        sql = (
            "SELECT g.id, g.group_type, g.name, g.description, g.metadata_json, g.created_at "
            "FROM group_links l JOIN groups g ON g.id = l.child_group_id "
            "WHERE l.parent_group_id = :r AND l.link_type = 'step' ORDER BY l.position NULLS LAST, l.id"
        )
        with translate_db_errors("reading run steps"), self.engine.connect() as conn:
            return [GroupRow(*r) for r in conn.execute(text(sql), {"r": run_id})]

    # -- artifacts ------------------------------------------------------------------------------

    def record_artifact(
        self,
        *,
        uri: str,
        content_type: str,
        byte_size: int,
        sha256: str,
        group_id: int | None = None,
        call_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Record a file and its checksum; returns the artifact id."""
        sql = text(
            "INSERT INTO call_artifacts (call_id, group_id, uri, content_type, byte_size, sha256, metadata_json) "
            "VALUES (:call, :g, :uri, :ct, :size, :sha, :m) RETURNING id"
        )
        params = {"call": call_id, "g": group_id, "uri": uri, "ct": content_type, "size": byte_size, "sha": sha256, "m": jsonb(metadata)}
        with translate_db_errors("recording an artifact"), self.engine.begin() as conn:
            return int(conn.execute(sql, params).scalar_one())

    def artifacts(
        self, *, group_id: int | None = None, uri: str | None = None, limit: int | None = None
    ) -> list[ArtifactRow]:
        """Artifacts of a group or at a URI, newest first (at most `limit`)."""
        clauses, params = [], {}
        if group_id is not None:
            clauses.append("group_id = :g")
            params["g"] = group_id
        if uri is not None:
            clauses.append("uri = :uri")
            params["uri"] = uri
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        if limit is not None:
            where += " ORDER BY id DESC LIMIT :limit"
            params["limit"] = int(limit)
        else:
            where += " ORDER BY id DESC"
        with translate_db_errors("reading artifacts"), self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {_ARTIFACT_COLS} FROM call_artifacts{where}"), params)
            return [ArtifactRow(*r) for r in rows]
