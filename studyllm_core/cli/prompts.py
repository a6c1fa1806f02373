"""`studyllm prompts run`: send every prompt of a file to a chat model, recording every attempt."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studyllm_core.cli.common import (
    add_input_args,
    add_max_attempts_arg,
    add_provider_args,
    add_rate_args,
    build_provider,
    finite_float,
    positive_int,
    read_input,
)
from studyllm_core.cli.output import emit
from studyllm_core.files import atomic_write, check_output_path
from studyllm_core.cli.progress import Progress
from studyllm_core.providers.registry import normalize_name
from studyllm_core.services.capture.preprocess import DEFAULT_MAX_CHARS, Preprocessor

if TYPE_CHECKING:
    from studyllm_core.services.capture.inference import BatchResult

MAX_WARNINGS = 10


def register(sub: argparse._SubParsersAction) -> None:
    prompts = sub.add_parser("prompts", help="prompts: run a file of prompts through a chat model",
                             description="Send prompts to chat models; every attempt is recorded in raw_calls.")
    psub = prompts.add_subparsers(dest="prompts_command", metavar="SUBCOMMAND", required=True)
    p = psub.add_parser(
        "run",
        help="send every prompt of a file (N samples each), recorded and grouped",
        description="Send every prompt of INPUT to the model, N samples each, with retries, a rate limit and "
        "bounded concurrency. Empty prompts are skipped, counted as failed and recorded; a bad key or an "
        "unknown model stops the run at once. Re-run with the same --group to resume: only the (prompt, sample) "
        "pairs without a recorded success are sent.",
    )
    add_input_args(p)
    add_provider_args(p)
    p.add_argument("--samples", type=positive_int, default=1, metavar="N", help="independent samples per prompt (default 1)")
    p.add_argument("--temperature", type=finite_float, metavar="T", help="sampling temperature (default: the model's)")
    p.add_argument("--max-tokens", type=positive_int, metavar="N", help="at most N tokens per reply")
    p.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="requests in flight (default 8)")
    add_rate_args(p)
    add_max_attempts_arg(p)
    p.add_argument("--group", metavar="NAME",
                   help="name of the batch group the calls join (default: a new one); an existing group resumes")
    p.add_argument("--template", metavar="TEXT", help="wrap each prompt: TEXT with {prompt} where the prompt goes")
    p.add_argument("--max-chars", type=positive_int, default=DEFAULT_MAX_CHARS, metavar="N",
                   help=f"cut each prompt to N characters before the template (default {DEFAULT_MAX_CHARS:,})")
    p.add_argument("--redact-pii", action="store_true", help="mask e-mail addresses and phone numbers before sending")
    p.add_argument("--keep-whitespace", action="store_true", help="send prompts as they are (default: clean whitespace)")
    p.add_argument("--out", metavar="PATH", help="write one JSON line per call: prompt, sample, text or error, raw_call_id")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.capture.inference import InferenceService
    from studyllm_core.services.capture.ratelimit import RateLimit
    from studyllm_core.services.capture.retry import RetryPolicy

    out_path = check_output_path(args.out) if args.out else None  # like file problems: before any API call
    table = read_input(args)  # file problems stop here, before any API call
    preprocess = Preprocessor(
        clean_whitespace=not args.keep_whitespace, redact_pii=args.redact_pii, max_chars=args.max_chars, template=args.template
    )
    provider = build_provider(args.provider, args.base_url, args.timeout)
    service = InferenceService(
        open_database(),
        provider,
        provider_name=normalize_name(args.provider),
        model=args.model,
        rate_limit=RateLimit(args.rpm, args.tpm),
        retry=RetryPolicy(max_attempts=args.max_attempts),
        concurrency=args.concurrency,
        preprocess=preprocess,
    )
    progress = Progress("prompts")
    try:
        batch = service.run_batch(
            table.texts, samples=args.samples, temperature=args.temperature, max_tokens=args.max_tokens,
            group_name=args.group, progress=progress,
        )
    finally:
        progress.close()
        service.close()
    if out_path is not None:
        _write_out(batch, out_path)
    payload = {**batch.summary(), "prompts": len(table.texts), "samples": args.samples,
               "out": str(out_path) if out_path else None}

    def human(p: dict) -> str:
        line = (f"calls {p['calls']:,}  succeeded {p['succeeded']:,}  failed {p['failed']:,}  "
                f"skipped {p['skipped']:,}  api_requests {p['api_requests']:,}  group {p['group_id']}")
        return line + (f"\nreplies written to {p['out']}" if p["out"] else "")

    emit(payload, args.json, human)
    if batch.skipped:
        print(f"note: skipped {batch.skipped:,} of {batch.calls:,} calls already answered in this group "
              "(a resumed run sends only the rest)", file=sys.stderr)
    failures = [(i, r) for i, r in enumerate(batch.results) if not r.ok]
    for i, r in failures[:MAX_WARNINGS]:
        where = f"row {i // batch.samples}" + (f" sample {r.sample_index}" if batch.samples > 1 else "")
        print(f"warning: {where}: {r.error}", file=sys.stderr)
    if len(failures) > MAX_WARNINGS:
        print(f"warning: {len(failures) - MAX_WARNINGS:,} more calls failed", file=sys.stderr)
    return 0 if batch.failed < batch.calls else 1


def _write_out(batch: BatchResult, path: Path) -> None:
    """One JSON line per call, written whole or not at all, private to the user; a configured key pasted into a
    prompt or echoed in a reply is masked, as in the database."""
    from studyllm_core.redaction import redact_data

    def write(handle) -> None:  # noqa: ANN001 - a binary file
        for i, r in enumerate(batch.results):
            row = {"row": i // batch.samples, "sample": r.sample_index, "prompt": r.prompt, "text": r.text,
                   "error": r.error, "raw_call_id": r.raw_call_id}
            handle.write((redact_data(json.dumps(row, ensure_ascii=False)) + "\n").encode("utf-8"))

    atomic_write(path, write)
