"""`studyllm export`: a group's raw calls (and its descendants') as Parquet, CSV or JSONL, embeddings as NPY."""

from __future__ import annotations

import argparse
from typing import Any

from studyllm_core.cli.output import emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a group's calls and embeddings to files",
        description="Write the raw calls of GROUP and of every group below it (depends_on, step and contains links) "
        "into the folder OUT: calls.FORMAT, plus embeddings.npy and embeddings_index.FORMAT for the vectors its "
        "embedding calls produced. Streams in chunks; writes nothing if anything fails.",
    )
    p.add_argument("group", metavar="GROUP", help="group id or name (see `studyllm groups`)")
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet", help="file format (default parquet)")
    p.add_argument("--out", required=True, metavar="PATH", help="folder to write into (new or empty)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.export import ExportService

    from studyllm_core.files import check_output_path

    check_output_path(args.out, folder=True)
    result = ExportService(open_database()).export(args.group, args.out, args.format)
    emit(result.summary(), args.json, _human)
    return 0


def _human(p: dict[str, Any]) -> str:
    g = p["group"]
    lines = [f"group {g['name']} (id {g['id']}, {g['type']}) and {p['groups'] - 1} groups below it",
             f"{p['calls']['rows']:,} calls -> {p['calls']['path']}"]
    for e in p["embeddings"]:
        lines.append(f"{e['vectors']['rows']:,} vectors {e['provider']}/{e['model']} ({e['dimension']}-d) -> "
                     f"{e['vectors']['path']} + {e['index']['path']}")
    return "\n".join(lines)
