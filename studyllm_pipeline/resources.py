"""Resources: the studyllm database and the providers, as typed, configurable Dagster resources.

Keys never pass through run config: providers read them from the environment (or `.env`) when
built, and a resource field set with `dg.EnvVar("NAME")` shows only the variable's name in the UI.
"""

from typing import Optional

import dagster as dg
from sqlalchemy import Engine

from studyllm_core.config import get_settings
from studyllm_core.db.engine import open_database
from studyllm_core.providers.registry import normalize_name
from studyllm_core.providers.settings import provider_from_env
from studyllm_core.services.artifacts import ArtifactService
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.capture.ratelimit import RateLimit
from studyllm_core.services.capture.summarization import SummarizationService, summarizer_from_spec
from studyllm_core.services.sweep.result_store import SweepResults


class StudyllmDatabase(dg.ConfigurableResource):
    """The studyllm database: STUDYLLM_DATABASE_URL, or the embedded server under STUDYLLM_HOME."""

    def engine(self) -> Engine:
        return open_database()

    def artifacts(self) -> ArtifactService:
        return ArtifactService(self.engine(), get_settings().artifacts_dir)

    def sweep_results(self) -> SweepResults:
        """The per-K results of the datasets' sweeps (stored under the artifacts folder)."""
        return SweepResults(self.engine(), get_settings().artifacts_dir)


class EmbedderResource(dg.ConfigurableResource):
    """Which provider and model embed texts, and how hard to push it."""

    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    base_url: Optional[str] = None
    api_key: Optional[str] = None  # e.g. dg.EnvVar("OPENAI_API_KEY"); unset: read from the environment
    dimensions: Optional[int] = None
    batch_size: int = 256
    concurrency: int = 4
    requests_per_minute: Optional[float] = None

    def service(self, engine: Engine) -> EmbeddingService:
        overrides = {"api_key": self.api_key} if self.api_key else {}
        provider = provider_from_env(self.provider, base_url=self.base_url, **overrides)
        return EmbeddingService(
            engine,
            provider,
            provider_name=normalize_name(self.provider),
            model=self.model,
            dimensions=self.dimensions,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            rate_limit=RateLimit(self.requests_per_minute, None),
        )


class SummarizerResource(dg.ConfigurableResource):
    """The summariser of clusters: `extractive` (offline) or `PROVIDER:MODEL`."""

    spec: str = "extractive"
    base_url: Optional[str] = None

    def service(self, engine: Engine) -> SummarizationService:
        return summarizer_from_spec(self.spec, engine, base_url=self.base_url)
