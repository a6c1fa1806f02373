"""`studyllm db ...`: migrate, inspect and stop the database."""

from __future__ import annotations

import argparse

from studyllm_core.output import emit
from studyllm_core.config import get_settings
from studyllm_core.redaction import mask_url_password


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database: upgrade, status, stop", description="Manage the studyllm database.")
    dbsub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)

    p = dbsub.add_parser("upgrade", help="apply schema migrations", description="Create or migrate the schema to the newest revision.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_upgrade)

    p = dbsub.add_parser("status", help="revision and row counts", description="Show the schema revision and the row count of each table.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_status)

    p = dbsub.add_parser("stop", help="stop the embedded server", description="Stop the embedded Postgres under $STUDYLLM_HOME/pg if it runs.")
    p.set_defaults(handler=cmd_stop)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import app_role_of, owner_engine
    from studyllm_core.db.migrate import current_revision, upgrade
    from studyllm_core.db.server import resolve_database

    target = resolve_database()
    engine = owner_engine(target)  # migrations run as the schema's owner
    before = current_revision(engine)
    after = upgrade(engine, app_role=app_role_of(target))
    payload = {"url": mask_url_password(target.url), "embedded": target.embedded, "from_revision": before, "revision": after}
    emit(payload, args.json, lambda p: f"database {p['url']} at revision {p['revision']}" + (
        "" if p["from_revision"] != p["revision"] else " (already current)"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import get_engine
    from studyllm_core.db.migrate import current_revision, head_revision, table_counts
    from studyllm_core.db.server import resolve_database

    target = resolve_database()
    engine = get_engine(target)
    rev, head = current_revision(engine), head_revision()
    payload = {
        "url": mask_url_password(target.url),
        "embedded": target.embedded,
        "revision": rev,
        "head": head,
        "up_to_date": rev == head,
        "tables": table_counts(engine),
    }

    def human(p: dict) -> str:
        lines = [f"database  {p['url']}", f"revision  {p['revision'] or '(empty: run `studyllm db upgrade`)'} (head {p['head']})"]
        lines += [f"  {name:<18} {count if count is not None else '-'}" for name, count in p["tables"].items()]
        return "\n".join(lines)

    emit(payload, args.json, human)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from studyllm_core.db.server import stop_embedded

    settings = get_settings()
    if settings.database_url:
        print("STUDYLLM_DATABASE_URL is set: the external server is not managed by studyllm")
        return 0
    stopped = stop_embedded(settings.pgdata)
    print("embedded Postgres stopped" if stopped else "embedded Postgres was not running")
    return 0
