"""The `studyllm` command line: one module per command group, plugins through entry points.

Commands raise `StudyllmError` (or a permanent provider error) for problems the user can fix;
`main` prints those as one line and exits non-zero. Other exceptions are bugs and keep their
traceback.

Command modules import at their top only what building the parser needs; each handler imports
its services (SQLAlchemy, psycopg, numpy, pandas ...) when it runs, so `studyllm --help` and an
argument error answer at once and a command loads only its own stack (tests/core/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from importlib.metadata import entry_points

from studyllm_core.cli import db as db_commands
from studyllm_core.cli import embed as embed_commands
from studyllm_core.cli import export as export_commands
from studyllm_core.cli import groups as groups_commands
from studyllm_core.cli import legacy as legacy_commands
from studyllm_core.cli import prompts as prompts_commands
from studyllm_core.cli import similar as similar_commands
from studyllm_core.cli import study as study_commands
from studyllm_core.cli import sweep as sweep_commands
from studyllm_core.config import get_settings
from studyllm_core.errors import StudyllmError
from studyllm_core.logging_config import configure_logging, get_logger
from studyllm_core.process_policy import apply_process_policy
from studyllm_core.providers.errors import ProviderError
from studyllm_core.redaction import redact

COMMAND_MODULES = [db_commands, embed_commands, prompts_commands, study_commands, similar_commands, export_commands, groups_commands, legacy_commands, sweep_commands]
PLUGIN_GROUP = "studyllm.commands"  # value: a callable register(subparsers)

log = get_logger("cli")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: studyllm embed: argument --rpm: ... (see --help)`, exit 2."""

    def error(self, message: str):  # noqa: ANN201 - argparse's documented hook; never returns
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="studyllm",
        description="Study LLM outputs at scale: capture every call, embed with a cache, cluster, keep provenance.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `studyllm` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        level = {0: settings.log_level, 1: "INFO"}.get(args.verbose, "DEBUG")
        configure_logging(level, settings.logs_dir)
        log.info("command: %s", " ".join(sys.argv[1:] if argv is None else argv))
        return int(args.handler(args) or 0)
    except StudyllmError as exc:
        print(f"error: {one_line(redact(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except ProviderError as exc:
        print(f"error: {one_line(redact(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def one_line(message: str) -> str:
    """A message on one line (drivers' messages can span several)."""
    return " ".join(message.split())


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Errors Python can only ignore (in atexit callbacks, e.g. the embedded server's cleanup after Postgres
    was killed) go to the log file, not under the one error line the user reads."""
    log.info(
        "%s: %s", unraisable.err_msg or "exception ignored", unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


def run() -> None:
    """The console script: `main`, then a quick exit.

    `gc.freeze()` before exit keeps the interpreter's final garbage collections from walking every
    object a command left (after torch and Dagster, over a million: 1.2-1.6 s of `sweep` and `demo`
    exiting). atexit handlers, log flushing and stdio flushing run as usual; only cycles left at exit go
    uncollected, and the process is ending.
    """
    # Process policy, so here and not in main() (tests call main directly): files this process and its
    # children create (logs rolled over, outputs, Dagster's files under `studyllm dev`) are the user's only.
    os.umask(0o077)
    sys.unraisablehook = _log_unraisable
    apply_process_policy()  # offline Hugging Face libraries, the collector paused around heavy imports
    code = main()
    gc.freeze()
    sys.exit(code)
