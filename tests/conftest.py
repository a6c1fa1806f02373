"""Shared fixtures: one real embedded Postgres per test session, a fresh database per test.

The session's server lives in a temporary STUDYLLM_HOME, so tests never touch ~/.studyllm. A
migrated template database makes a fresh per-test database cost one CREATE DATABASE.
Set STUDYLLM_TEST_ADMIN_URL (a superuser URL to any Postgres with pgvector) to run the suite
against another server instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from support import STUDYLLM_EXE, TEST_API_KEY, dagster_instance_config

TEMPLATE_DB = f"studyllm_test_template{os.environ.get('PYTEST_XDIST_WORKER', '')}"  # one per xdist worker


def pytest_configure(config: pytest.Config) -> None:
    # Isolate every test (and every subprocess a test starts) from the user's own home and keys.
    home = Path(tempfile.mkdtemp(prefix="sl-test-"))
    os.environ["STUDYLLM_HOME"] = str(home)
    os.environ.pop("STUDYLLM_DATABASE_URL", None)
    os.environ.setdefault("STUDYLLM_LOG_LEVEL", "WARNING")
    config._studyllm_home = home  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests first (a stable sort): with `-n 2 --dist loadfile --no-loadscope-reorder` (addopts) their files are
    # handed out first, so the UI test (about a third of the suite's time) runs beside the rest instead of last.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    # The `local` extra (torch, sentence-transformers) is optional: without it, its tests are skipped.
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        skip = pytest.mark.skip(reason="the `local` extra is not installed: pip install 'studyllm[local]'")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = getattr(config, "_studyllm_home", None)
    if home is not None:
        from studyllm_core.db.server import stop_embedded

        stop_embedded(home / "pg")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def studyllm_home() -> Path:
    return Path(os.environ["STUDYLLM_HOME"])


@pytest.fixture(scope="session")
def admin_url(studyllm_home: Path) -> str:
    """libpq URL of the `postgres` database on the session's server, with the template ready."""
    external = os.environ.get("STUDYLLM_TEST_ADMIN_URL")
    if external:
        admin = make_url(external)
    else:
        from studyllm_core.db.server import start_embedded

        target = start_embedded(studyllm_home / "pg")
        # Tests create databases and inspect everything: they connect as the server's owner (superuser). The
        # application role's limits are tested on their own (tests/reliability/test_least_privilege.py).
        admin = make_url(target.owner_url).set(database="postgres")
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    _create_template(admin)
    return libpq


def _create_template(admin) -> None:
    from studyllm_core.db.engine import make_engine
    from studyllm_core.db.migrate import upgrade

    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    engine = make_engine(admin.set(drivername="postgresql+psycopg", database=TEMPLATE_DB).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()


@pytest.fixture
def database_url(admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated database for this test only."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield make_url(admin_url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    from studyllm_core.db.engine import dispose_engines

    dispose_engines()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database with no schema at all."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(admin_url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    from studyllm_core.db.engine import dispose_engines

    dispose_engines()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    from studyllm_core.db.engine import make_engine

    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def db_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing this process and CLI subprocesses at the test's database."""
    monkeypatch.setenv("STUDYLLM_DATABASE_URL", database_url)
    return {**os.environ, "STUDYLLM_DATABASE_URL": database_url}


@pytest.fixture
def cli():
    """Run the real `studyllm` console script in a subprocess: cli(args, env, timeout=...)."""

    def run(args: list[str], env: dict[str, str] | None = None, *, timeout: float = 180, cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [STUDYLLM_EXE, *args], env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout, cwd=cwd
        )

    return run


# -- the loopback OpenAI-compatible server ----------------------------------------------------

@pytest.fixture
def stub():
    """A fresh loopback OpenAI-compatible server (16-dim embeddings) that accepts TEST_API_KEY only."""
    from studyllm_core.testing import OpenAIStubServer

    with OpenAIStubServer(dim=16, api_keys=[TEST_API_KEY]) as srv:
        yield srv


# -- Dagster --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dagster_database_url(admin_url):
    """A Postgres database for Dagster's own storage, shared by the session's pipeline tests."""
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(admin_url).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def instance(dagster_database_url, tmp_path):
    """A persistent Dagster test instance with Postgres storage, as dagster.yaml configures it."""
    import dagster as dg

    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster_home"),
        overrides=dagster_instance_config(dagster_database_url),
    ) as inst:
        inst.wipe()  # the database is the session's: start from no runs, events or partitions of earlier tests
        yield inst


@pytest.fixture
def pipeline_env(db_env, tmp_path, monkeypatch, stub):
    """Assets in this process use the test database, artifacts under tmp, embeddings from the stub."""
    monkeypatch.setenv("STUDYLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", TEST_API_KEY)
    return {**db_env, "STUDYLLM_HOME": str(tmp_path / "home")}


@pytest.fixture
def resources(pipeline_env, stub):
    """The pipeline's resources on the test database, with the stub server as the embedder."""
    from studyllm_pipeline.io_manager import NpyArtifacts, ParquetArtifacts
    from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource

    database = StudyllmDatabase()
    return {
        "database": database,
        "embedder": EmbedderResource(provider="openai-compatible", model="stub-embedding", base_url=stub.base_url),
        "summarizer": SummarizerResource(spec="extractive"),
        "npy_io": NpyArtifacts(database=database),
        "parquet_io": ParquetArtifacts(database=database),
    }
