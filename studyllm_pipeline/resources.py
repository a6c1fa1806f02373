"""Resources: the studyllm database and the providers, as typed, configurable Dagster resources.

Keys never pass through run config: providers read them from the environment (or `.env`) when
built, and a resource field set with `dg.EnvVar("NAME")` shows only the variable's name in the UI.
A resource names another variable to read its key from (`api_key_env`), never the key itself, so
nothing typed in the Launchpad can put a key in the run's stored config. A resource owns the
services it builds: they are closed when the run's execution ends (`teardown_after_execution`,
which Dagster calls even when the run fails).
"""

import re
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr, field_validator
from sqlalchemy import Engine

from studyllm_core.config import get_settings, variable
from studyllm_core.db.engine import open_database
from studyllm_core.providers.errors import ConfigurationError
from studyllm_core.services.artifacts import ArtifactService
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.capture.ratelimit import RateLimit
from studyllm_core.services.capture.summarization import SummarizationService, summarizer_from_spec
from studyllm_core.services.sweep.result_store import SweepResults

_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class StudyllmDatabase(dg.ConfigurableResource):
    """The studyllm database: STUDYLLM_DATABASE_URL, or the embedded server under STUDYLLM_HOME."""

    def engine(self) -> Engine:
        return open_database()

    def artifacts(self) -> ArtifactService:
        return ArtifactService(self.engine(), get_settings().artifacts_dir)

    def sweep_results(self) -> SweepResults:
        """The per-K results of the datasets' sweeps (stored under the artifacts folder)."""
        return SweepResults(self.engine(), get_settings().artifacts_dir)


class OwnsServices(dg.ConfigurableResource):
    """A resource that builds services for a run's steps and closes them (their background loops
    and HTTP clients) when the run's execution ends, even when it fails."""

    _built: list = PrivateAttr(default_factory=list)

    def _own(self, service):  # noqa: ANN001, ANN202 - any service with close()
        self._built.append(service)
        return service

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        while self._built:
            self._built.pop().close()


class EmbedderResource(OwnsServices):
    """Which provider and model embed texts, and how hard to push it."""

    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None  # the variable holding the key (e.g. EMBED_API_KEY); unset: the provider's own
    dimensions: Optional[int] = None
    batch_size: int = 256
    concurrency: int = 4
    requests_per_minute: Optional[float] = None

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("api_key_env names an environment variable (e.g. EMBED_API_KEY), never the key itself")
        return value

    def _api_key(self) -> Optional[str]:
        """The key read from the variable `api_key_env` names (None: the provider reads its own)."""
        if not self.api_key_env:
            return None
        key = variable(self.api_key_env)
        if key is None:
            raise ConfigurationError(f"embedder.api_key_env names {self.api_key_env}, which is not set: "
                                     "set it in the environment or in .env")
        return key

    def service(self, engine: Engine) -> EmbeddingService:
        """An embedding service for this run; closed when the run's execution ends."""
        return self._own(EmbeddingService.from_name(
            self.provider,
            engine=engine,
            base_url=self.base_url or None,  # empty (STUDYLLM_EMBED_BASE_URL unset): the provider's default
            api_key=self._api_key(),
            model=self.model,
            dimensions=self.dimensions,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            rate_limit=RateLimit(self.requests_per_minute, None),
        ))


class SummarizerResource(OwnsServices):
    """The summariser of clusters: `extractive` (offline) or `PROVIDER:MODEL`."""

    spec: str = "extractive"
    base_url: Optional[str] = None

    def service(self, engine: Engine) -> SummarizationService:
        """A summariser for this run; closed (its background loop stopped) when the run's execution ends."""
        return self._own(summarizer_from_spec(self.spec, engine, base_url=self.base_url))
