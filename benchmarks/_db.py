"""A throwaway migrated database on a temporary embedded server, for benchmarks."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from studyllm_core.db.engine import make_engine
from studyllm_core.db.migrate import upgrade
from studyllm_core.db.server import start_embedded, stop_embedded


@contextmanager
def scratch_database() -> Iterator[tuple[Engine, str]]:
    """Yield (engine, url) of a fresh migrated database; the server and its files go afterwards."""
    home = Path(tempfile.mkdtemp(prefix="sl-bench-"))
    os.environ["STUDYLLM_HOME"] = str(home)
    os.environ.pop("STUDYLLM_DATABASE_URL", None)
    try:
        target = start_embedded(home / "pg")
        engine = make_engine(target.owner_url)  # benchmarks inspect and index everything: the owner's role
        upgrade(engine)
        yield engine, target.owner_url
        engine.dispose()
    finally:
        stop_embedded(home / "pg")
        shutil.rmtree(home, ignore_errors=True)
