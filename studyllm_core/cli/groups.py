"""`studyllm groups` and `studyllm provenance`: list groups, and show where one came from and what came of it."""

from __future__ import annotations

import argparse
from typing import Any

from studyllm_core.cli.common import positive_int
from studyllm_core.output import emit, table, when


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("groups", help="list groups (datasets, batches, runs, steps, ...)",
                       description="List groups, newest first, with their member counts.")
    p.add_argument("--type", metavar="T", help="only groups of this type (dataset, batch, run, step, embedding_batch, ...)")
    p.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N groups (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_groups)

    p = sub.add_parser(
        "provenance",
        help="a group's ancestors, descendants, steps, members and artifacts",
        description="Show where GROUP came from (ancestors through depends_on links), what was made from it "
        "(descendants), a run's steps in order, the runs it is a step of, its member count and its artifacts. "
        "GROUP is one group; the groups it lists as descendants and steps are every group below it, whose calls "
        "`stats --group` and `export` cover.",
    )
    p.add_argument("group", metavar="GROUP", help="group id or name (see `studyllm groups`)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_provenance)


def cmd_groups(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.provenance import ProvenanceService

    found = ProvenanceService(open_database()).list_groups(args.type, limit=args.limit)
    payload = {
        "groups": [
            {"id": g.id, "type": g.group_type, "name": g.name, "members": members,
             "created_at": g.created_at.isoformat(), "description": g.description}
            for g, members in found
        ]
    }
    emit(payload, args.json, lambda p: table(
        [{**g, "created_at": when(g["created_at"])} for g in p["groups"]], ["id", "type", "name", "members", "created_at"]))
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.provenance import ProvenanceService

    payload = ProvenanceService(open_database()).provenance(args.group).to_dict()
    emit(payload, args.json, _human)
    return 0


def _human(p: dict[str, Any]) -> str:
    def name(g: dict[str, Any]) -> str:
        return f"{g['type']}:{g['name']} (id {g['id']})"

    g = p["group"]
    lines = [f"group     {name(g)}", f"created   {when(g['created_at'])}", f"members   {p['members']:,}"]
    if p["runs"]:
        lines.append("step of   " + ", ".join(name(r) for r in p["runs"]))
    sections = [
        ("ancestors", [f"{'  ' * a['distance']}{name(a)}" for a in p["ancestors"]]),
        ("descendants", [f"{'  ' * d['distance']}{name(d)}" for d in p["descendants"]]),
        ("steps", [f"  {i}. {name(s)}" for i, s in enumerate(p["steps"], 1)]),
        ("artifacts", [f"  {a['uri']}  {a['content_type']}  {a['byte_size']:,} B  sha256 {a['sha256'][:12]}" for a in p["artifacts"]]),
    ]
    for title, body in sections:
        if body:
            lines += ["", f"{title}:", *body]
    return "\n".join(lines)
