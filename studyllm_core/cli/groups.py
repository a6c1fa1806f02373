"""`studyllm groups` and `studyllm provenance`: list groups, and show where one came from and what came of it."""

from __future__ import annotations

import argparse
import json
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
        help="a group's lineage and history, one run's lineage, or an asset partition's history",
        description="Show where GROUP came from (ancestors through depends_on links), what was made from it "
        "(descendants), a run's steps in order, the runs it is a step of, its member calls by role (output: made "
        "by it, input: reused from other runs), its artifacts and its materialisations (newest first). "
        "GROUP is one group; the groups it lists as descendants and steps are every group below it, whose calls "
        "`stats --group` and `export` cover. With --run: every asset partition one run (a Dagster run id, or a "
        "CLI run's cli-... id) made, the records of its inputs, its config and versions. With --asset (and "
        "--partition): every materialisation of that asset partition, newest first, with its run, time, config "
        "hash, what changed in the config since the one before, and versions.",
    )
    p.add_argument("group", metavar="GROUP", nargs="?", help="group id or name (see `studyllm groups`)")
    p.add_argument("--run", metavar="RUN_ID", help="one run's lineage: what it made and read")
    p.add_argument("--asset", metavar="ASSET", help="the history of an asset (e.g. clusters)")
    p.add_argument("--partition", metavar="P", help="with --asset: its partition (e.g. 'demo|10')")
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
    from studyllm_core.errors import InputError

    chosen = [flag for flag, value in (("GROUP", args.group), ("--run", args.run), ("--asset", args.asset)) if value]
    if len(chosen) != 1:
        raise InputError("give exactly one of GROUP, --run RUN_ID or --asset ASSET [--partition P]"
                         + (f" (got {' and '.join(chosen)})" if chosen else ""))
    if args.partition and not args.asset:
        raise InputError("--partition needs --asset: e.g. --asset clusters --partition 'demo|10'")

    from studyllm_core.db.engine import open_database
    from studyllm_core.services.provenance import ProvenanceService, with_changes

    service = ProvenanceService(open_database())
    if args.run:
        records = service.run_lineage(args.run)
        emit({"run_id": args.run, "records": [r.to_dict() for r in records]}, args.json, _human_run)
    elif args.asset:
        records = service.history(args.asset, args.partition)
        payload = {"asset": args.asset, "partition": args.partition, "history": with_changes(records)}
        emit(payload, args.json, _human_history)
    else:
        emit(service.provenance(args.group).to_dict(), args.json, _human)
    return 0


def _record_name(r: dict[str, Any]) -> str:
    return f"{r['asset']}[{r['partition']}]" if r["partition"] else r["asset"]


def _versions(r: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((r["versions"] or {}).items())) or "-"


def _input_line(i: dict[str, Any]) -> str:
    made = "this run" if i["same_run"] else (f"run {i['run_id']} at {when(i['created_at'])}" if i["record_id"] else "no record")
    return f"      <- {i['group']} (record {i['record_id'] or '-'}, {made})"


def _human_run(p: dict[str, Any]) -> str:
    records = p["records"]
    first = records[0]
    lines = [f"run       {p['run_id']}", f"records   {len(records)}", f"started   {when(first['created_at'])}",
             f"code      {first['code_version'] or '-'}", f"versions  {_versions(first)}", ""]
    shared = first["versions"] or {}
    for r in records:
        lines.append(f"  {when(r['created_at'])}  {_record_name(r)}  ({r['group_type']}, record {r['record_id']}, "
                     f"config {r['config_hash']})")
        own = {k: v for k, v in (r["versions"] or {}).items() if shared.get(k) != v}  # e.g. the embedding model
        if own or r["code_version"] != first["code_version"]:
            lines.append(f"      code {r['code_version'] or '-'}; {_versions({'versions': own})}")
        lines += [_input_line(i) for i in r["inputs"]]
    configs = {r["config_hash"]: r["config"] for r in records if r["config"]}
    if configs:
        lines += ["", "config:"] + [f"  {h}  {json.dumps(c, sort_keys=True, default=str)}" for h, c in configs.items()]
    return "\n".join(lines)


def _human_history(p: dict[str, Any]) -> str:
    name = f"{p['asset']}[{p['partition']}]" if p["partition"] else p["asset"]
    lines = [f"history of {name}: {len(p['history'])} materialisation(s), newest first", ""]
    for r in p["history"]:
        changes = r["config_changes"]
        changed = ("first record" if changes is None else
                   "; ".join(f"{k}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}" for k, (a, b) in changes.items())
                   or "config unchanged")
        lines += [f"  {when(r['created_at'])}  run {r['run_id']}  record {r['record_id']}  config {r['config_hash']}",
                  f"      {changed}", f"      code {r['code_version'] or '-'}; {_versions(r)}"]
        lines += [_input_line(i) for i in r["inputs"]]
    return "\n".join(lines)


def _human(p: dict[str, Any]) -> str:
    def name(g: dict[str, Any]) -> str:
        return f"{g['type']}:{g['name']} (id {g['id']})"

    g = p["group"]
    roles = ", ".join(f"{n:,} {role}" for role, n in p["member_roles"].items())
    lines = [f"group     {name(g)}", f"created   {when(g['created_at'])}",
             f"members   {p['members']:,}" + (f" ({roles})" if roles else "")]
    if p["runs"]:
        lines.append("step of   " + ", ".join(name(r) for r in p["runs"]))
    sections = [
        ("ancestors", [f"{'  ' * a['distance']}{name(a)}" for a in p["ancestors"]]),
        ("descendants", [f"{'  ' * d['distance']}{name(d)}" for d in p["descendants"]]),
        ("steps", [f"  {i}. {name(s)}" for i, s in enumerate(p["steps"], 1)]),
        ("artifacts", [f"  {a['uri']}  {a['content_type']}  {a['byte_size']:,} B  sha256 {a['sha256'][:12]}" for a in p["artifacts"]]),
        ("history (newest first)", [f"  {when(r['created_at'])}  run {r['run_id']}  config {r['config_hash']}  "
                                    f"{r['code_version'] or '-'}" for r in p["history"]]),
    ]
    for title, body in sections:
        if body:
            lines += ["", f"{title}:", *body]
    return "\n".join(lines)
