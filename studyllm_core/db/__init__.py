"""Storage: the Postgres server (embedded or external), schema v2, migrations and repositories."""

from studyllm_core.db.calls import CallFilter, NewCall, RawCallRepository, StoredCall
from studyllm_core.db.engine import get_engine, make_engine, open_database
from studyllm_core.db.groups import ArtifactRow, GroupRepository, GroupRow, LinkRow
from studyllm_core.db.server import DatabaseTarget, resolve_database

__all__ = [
    "ArtifactRow", "CallFilter", "DatabaseTarget", "GroupRepository", "GroupRow", "LinkRow", "NewCall",
    "RawCallRepository", "StoredCall", "get_engine", "make_engine", "open_database", "resolve_database",
]
