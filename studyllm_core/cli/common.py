"""Arguments and helpers shared by several commands (provider selection, input columns)."""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone

from studyllm_core.errors import InputError
from studyllm_core.providers.base import Provider
from studyllm_core.providers.settings import provider_from_env
from studyllm_core.services.inputs import TextTable, read_texts


def add_provider_args(parser: argparse.ArgumentParser, *, prefix: str = "", required: bool = True) -> None:
    """--provider/--model/--base-url (or --embed-provider ... with prefix="embed-")."""
    parser.add_argument(f"--{prefix}provider", required=required, metavar="P",
                        help="provider name: openai, azure, hyperbolic, openai-compatible, local, or a plugin")
    parser.add_argument(f"--{prefix}model", required=required, metavar="M", help="model (Azure: deployment) name")
    parser.add_argument("--base-url", metavar="URL", help="server URL (Azure: the endpoint); overrides the environment")
    parser.add_argument("--timeout", type=positive_float, metavar="S",
                        help="seconds a whole request may take (default: STUDYLLM_REQUEST_TIMEOUT or 60)")


def add_input_args(parser: argparse.ArgumentParser, *, labels: bool = False) -> None:
    parser.add_argument("input", metavar="INPUT", help="CSV, TSV, Parquet, JSONL or TXT (one text per line)")
    parser.add_argument("--text-column", metavar="COL", help="column name or 0-based index (default: 'text' or the only column)")
    if labels:
        parser.add_argument("--label-column", metavar="COL", help="column of reference labels, for ACC/NMI/ARI")
    parser.add_argument("--no-header", action="store_true", help="CSV/TSV without a header row (columns are 0, 1, ...)")


def read_input(args: argparse.Namespace) -> TextTable:
    table = read_texts(
        args.input,
        text_column=args.text_column,
        label_column=getattr(args, "label_column", None),
        header=not args.no_header,
    )
    if not table.texts:
        raise InputError(f"{args.input} holds no texts")
    return table


def build_provider(name: str, base_url: str | None, timeout: float | None) -> Provider:
    """A provider from the environment plus command-line overrides (fails before any request if keys are missing)."""
    return provider_from_env(name, base_url=base_url, timeout=timeout)


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def positive_float(value: str) -> float:
    """An argparse type: a finite number above 0 (not nan, not inf)."""
    number = finite_float(value, "a number above 0")
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value!r}")
    return number


def finite_float(value: str, wanted: str = "a finite number") -> float:
    """An argparse type: a finite number (not nan, not inf)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {value!r}")
    return number


def add_rate_args(parser: argparse.ArgumentParser) -> None:
    """--rpm/--tpm: the client-side rate limits."""
    parser.add_argument("--rpm", type=positive_float, metavar="N", help="at most N requests per minute")
    parser.add_argument("--tpm", type=positive_float, metavar="N", help="at most about N tokens per minute")


def add_max_attempts_arg(parser: argparse.ArgumentParser) -> None:
    """--max-attempts: tries per request before it counts as failed."""
    from studyllm_core.services.capture.retry import RetryPolicy

    parser.add_argument("--max-attempts", type=positive_int, default=RetryPolicy.max_attempts, metavar="N",
                        help=f"tries per request before it counts as failed (default {RetryPolicy.max_attempts}); "
                        "faults that repeat on every request stop the run sooner")


def utc_time(value: str) -> datetime:
    """An argparse type: an ISO 8601 date or time (naive ones are UTC)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def add_call_filter_args(parser: argparse.ArgumentParser) -> None:
    """--since/--until/--provider/--model/--group: which recorded calls a study command looks at."""
    parser.add_argument("--since", type=utc_time, metavar="DATE", help="calls at or after DATE (ISO 8601; UTC unless given)")
    parser.add_argument("--until", type=utc_time, metavar="DATE", help="calls before DATE")
    parser.add_argument("--provider", metavar="P", help="only this provider")
    parser.add_argument("--model", metavar="M", help="only this model")
    parser.add_argument("--group", metavar="GROUP", help="only members of this group (id or name)")
