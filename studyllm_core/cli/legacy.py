"""`studyllm import-legacy`: bring a seed-era v1 database into raw_calls, once, and report parity."""

from __future__ import annotations

import argparse
from typing import Any

from studyllm_core.cli.common import positive_int
from studyllm_core.cli.output import emit

DEFAULT_SAMPLE = 1_000  # = legacy_import.SAMPLE (a test checks), kept here so --help loads no SQLAlchemy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-legacy",
        help="import a v1 database (inference_runs) and validate it",
        description="Read the v1 table inference_runs from URL (sqlite:///PATH or postgresql://...; opened read-only) "
        "into raw_calls, with each batch as a `batch` group. Rows already imported are skipped, so a second run "
        "imports nothing. Then compare v1 and v2: row counts, batch sizes, time ranges and a sample field by "
        "field. Exits 1 when they differ.",
    )
    p.add_argument("url", metavar="URL", help="the v1 database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB")
    p.add_argument("--sample", type=positive_int, default=DEFAULT_SAMPLE, metavar="N",
                   help=f"rows compared field by field (default {DEFAULT_SAMPLE:,})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.legacy_import import LegacyImporter

    report = LegacyImporter(open_database(), sample_size=args.sample).run(args.url)
    emit(report.to_dict(), args.json, _human)
    return 0 if report.parity else 1


def _human(p: dict[str, Any]) -> str:
    def ok(part: dict[str, Any]) -> str:
        return "ok" if part["match"] else "MISMATCH"

    src, rows, batches, times, sample = p["source"], p["rows"], p["batches"], p["time_range"], p["sample"]
    lines = [
        f"source    {src['url']} ({src['kind']}, fingerprint {src['fingerprint']}) -> group {p['group']['name']}",
        f"imported  {p['imported']:,} new rows, {p['already_present']:,} already present; "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(p["statuses"].items())),
        f"rows      v1 {rows['v1']:,}  v2 {rows['v2']:,}  {ok(rows)}",
        f"batches   v1 {batches['v1']:,}  v2 {batches['v2']:,}  without batch {batches['rows_without_batch']:,}  {ok(batches)}",
        f"time      v1 {times['v1'][0]} .. {times['v1'][1]}  v2 {times['v2'][0]} .. {times['v2'][1]}  {ok(times)}",
        f"sample    {sample['rows']:,} rows, {sum(sample['mismatches'].values()):,} field mismatches, "
        f"{sample['missing']:,} missing  {ok(sample)}",
    ]
    lines += [f"  batch {m['batch_id']}: v1 {m['v1']:,} rows, v2 {m['v2']:,}" for m in batches["mismatched"]]
    lines += [f"  v1 id {e['v1_id']}: {e['field']} differs" for e in sample["examples"]]
    lines += [f"note: {n}" for n in p["notes"]]
    lines.append("parity: full" if p["parity"] else "parity: NOT reached (see above)")
    return "\n".join(lines)
