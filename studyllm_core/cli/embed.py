"""`studyllm embed`: embed the texts of a file through the cache, recording every call."""

from __future__ import annotations

import argparse
import sys

from studyllm_core.cli.common import (
    add_input_args,
    add_max_attempts_arg,
    add_provider_args,
    add_rate_args,
    positive_int,
    read_input,
)
from studyllm_core.output import emit
from studyllm_core.files import atomic_write, check_output_path
from studyllm_core.progress import Progress
from studyllm_core.services.capture.retry import RetryPolicy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed the texts of a file (cached, de-duplicated, recorded)",
        description="Embed every text of INPUT. Texts already embedded with the same provider, model and "
        "dimensions come from the cache; the rest go to the API in batches, each attempt recorded.",
    )
    add_input_args(p)
    add_provider_args(p, operation="embed")
    p.add_argument("--dimensions", type=positive_int, metavar="N", help="ask the model for N dimensions")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="texts per request (default 256)")
    p.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="requests in flight (default 8)")
    add_rate_args(p)
    add_max_attempts_arg(p)
    p.add_argument("--group", metavar="NAME", help="name of the embedding_batch group the calls join")
    p.add_argument("--out", metavar="PATH", help="write vectors as .npy (float32; rows of failed texts are NaN)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from studyllm_core.services.capture.embedding import EmbeddingService
    from studyllm_core.services.capture.ratelimit import RateLimit

    out_path = check_output_path(args.out) if args.out else None  # like file problems: before any API call
    table = read_input(args)  # file problems stop here, before any API call
    service = EmbeddingService.from_name(  # missing keys stop here, before the database starts
        args.provider,
        base_url=args.base_url,
        timeout=args.timeout,
        model=args.model,
        dimensions=args.dimensions,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        rate_limit=RateLimit(args.rpm, args.tpm),
        retry=RetryPolicy(max_attempts=args.max_attempts),
    )
    progress = Progress("embedding", quiet=args.json)
    try:
        # Without --out no vector is needed here: they go to the cache only, and cached ones are not read.
        outcome = service.embed(table.texts, group_name=args.group, progress=progress, keep_vectors=out_path is not None)
    finally:
        progress.close()
    if out_path is not None:  # whole or not at all: a full disk leaves no half-written .npy
        atomic_write(out_path, lambda handle: np.save(handle, outcome.vectors, allow_pickle=False))
    payload = {**outcome.summary(), "out": str(out_path) if out_path else None}

    def human(p: dict) -> str:
        lines = [
            f"texts {p['texts']:,}  unique {p['unique']:,}  cached {p['cached']:,}  embedded {p['embedded']:,}  "
            f"failed {p['failed']:,}  api_requests {p['api_requests']:,}  group {p['group_id']}"
        ]
        if p["out"]:
            lines.append(f"vectors written to {p['out']}")
        return "\n".join(lines)

    emit(payload, args.json, human)
    for index, reason in list(outcome.failures.items())[:10]:
        print(f"warning: row {index}: {reason}", file=sys.stderr)
    if outcome.failed > 10:
        print(f"warning: {outcome.failed - 10:,} more rows failed", file=sys.stderr)
    return 0 if outcome.failed < outcome.texts else 1
