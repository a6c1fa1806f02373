"""The one place that assembles studyllm's Dagster definitions (workspace.yaml loads `defs`).

Runs execute their steps in the run's own process (in_process_executor): the sweep graph is a
chain, so a process per step only paid Dagster's and torch's imports again for every step.
"""

import dagster as dg

from studyllm_core.config import (
    ENV_EMBED_BASE_URL,
    ENV_EMBED_MODEL,
    ENV_EMBED_PROVIDER,
    ENV_SUMMARIZER,
    set_pipeline_defaults,
)
from studyllm_core.process_policy import apply_process_policy
from studyllm_pipeline.assets.analytics import ANALYTICS_ASSETS
from studyllm_pipeline.assets.clustering import sweep_k
from studyllm_pipeline.assets.dataset import dataset_snapshot
from studyllm_pipeline.assets.embeddings import embeddings
from studyllm_pipeline.assets.projection import pca
from studyllm_pipeline.assets.prompts import prompt_run
from studyllm_pipeline.assets.report import sweep_report
from studyllm_pipeline.io_manager import ArtifactIOManagerFactory
from studyllm_pipeline.jobs import prepare_job, report_job, sweep_k_job
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource
from studyllm_pipeline.schedules import nightly_sweep
from studyllm_pipeline.sensors import new_dataset_files

# The code location is an entry point: its processes (code server, run workers) load the model offline
# and pause the collector around heavy imports, and the pipeline's settings left unset get their
# defaults (so every dg.EnvVar below resolves). Nothing imported above reads them at import.
apply_process_policy()
set_pipeline_defaults()


def build_resources() -> dict:
    """Resources configured from the environment when a run starts (dg.EnvVar: the UI shows the variables'
    names): STUDYLLM_EMBED_PROVIDER/MODEL/BASE_URL and STUDYLLM_SUMMARIZER pick the models."""
    database = StudyllmDatabase()
    return {
        "database": database,
        "embedder": EmbedderResource(
            provider=dg.EnvVar(ENV_EMBED_PROVIDER),
            model=dg.EnvVar(ENV_EMBED_MODEL),
            base_url=dg.EnvVar(ENV_EMBED_BASE_URL),
        ),
        "summarizer": SummarizerResource(spec=dg.EnvVar(ENV_SUMMARIZER)),
        "npy_io": ArtifactIOManagerFactory(database=database, extension=".npy"),
        "parquet_io": ArtifactIOManagerFactory(database=database, extension=".parquet"),
    }


SWEEP_ASSETS = [dataset_snapshot, embeddings, pca, sweep_k, sweep_report]

defs = dg.Definitions(
    assets=[*SWEEP_ASSETS, prompt_run, *ANALYTICS_ASSETS],
    jobs=[prepare_job, sweep_k_job, report_job],
    schedules=[nightly_sweep],
    sensors=[
        new_dataset_files,
        dg.AutomationConditionSensorDefinition(
            "report_automation", target=[sweep_report], default_status=dg.DefaultSensorStatus.RUNNING
        ),
    ],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
