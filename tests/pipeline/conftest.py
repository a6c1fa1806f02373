"""Pipeline fixtures: a Dagster test instance on Postgres (the session's server), resources on the test database."""

import os
import uuid

import dagster as dg
import psycopg
import pytest
from sqlalchemy.engine import make_url

from studyllm_pipeline.io_manager import ArtifactIOManagerFactory
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource
from support import TEST_API_KEY


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
    """A persistent test instance with Postgres storage, as dagster.yaml configures it."""
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster_home"),
        overrides={"storage": {"postgres": {"postgres_url": dagster_database_url}}},
    ) as inst:
        yield inst


@pytest.fixture
def pipeline_env(db_env, tmp_path, monkeypatch, stub):
    """This process runs assets against the test database, artifacts under tmp, embeddings from the stub."""
    monkeypatch.setenv("STUDYLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", TEST_API_KEY)
    return {**db_env, "STUDYLLM_HOME": str(tmp_path / "home")}


@pytest.fixture
def resources(pipeline_env, stub):
    database = StudyllmDatabase()
    return {
        "database": database,
        "embedder": EmbedderResource(provider="openai-compatible", model="stub-embedding", base_url=stub.base_url),
        "summarizer": SummarizerResource(spec="extractive"),
        "npy_io": ArtifactIOManagerFactory(database=database, extension=".npy"),
        "parquet_io": ArtifactIOManagerFactory(database=database, extension=".parquet"),
    }
