"""The one place that assembles studyllm's Dagster definitions (workspace.yaml loads `defs`).

Runs execute their steps in the run's own process (in_process_executor): the sweep graph is a
chain, so a process per step only paid Dagster's and torch's imports again for every step.
"""

import inspect
import warnings

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
from studyllm_pipeline.assets.capture import CAPTURE_ASSETS
from studyllm_pipeline.assets.clustering import sweep_k
from studyllm_pipeline.assets.comparison import study_comparison
from studyllm_pipeline.assets.dataset import dataset_snapshot
from studyllm_pipeline.assets.embeddings import embeddings
from studyllm_pipeline.assets.projection import pca
from studyllm_pipeline.assets.prompts import prompt_run
from studyllm_pipeline.assets.report import sweep_report
from studyllm_pipeline.io_manager import NpyArtifacts, ParquetArtifacts
from studyllm_pipeline.jobs import prepare_job, report_job, sweep_k_job
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource
from studyllm_pipeline.schedules import nightly_sweep
from studyllm_pipeline.sensors import INTERVAL_S, new_dataset_files, replies_to_prepare, replies_to_sweep

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
        "npy_io": NpyArtifacts(database=database),
        "parquet_io": ParquetArtifacts(database=database),
    }


SWEEP_ASSETS = [dataset_snapshot, embeddings, pca, sweep_k, sweep_report]


def with_code_references(assets: list) -> list:
    """The assets with a link to the function that computes them (the Definition panel's "Source code").

    Like `dg.with_source_code_references`, but through `user_errors_as_failures` to the asset's own
    function (Dagster's helper would point every asset at that wrapper in common.py). The code
    reference classes are a beta API of Dagster 1.13: their warnings are silenced for this call only.
    """

    def located(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
        compute = assets_def.op.compute_fn
        fn = inspect.unwrap(getattr(compute, "decorated_fn", compute))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=dg.BetaWarning)
            where = dg.CodeReferencesMetadataValue(code_references=[
                dg.LocalFileCodeReference(file_path=inspect.getsourcefile(fn), line_number=inspect.getsourcelines(fn)[1])])
        return dg.map_asset_specs(lambda spec: spec.merge_attributes(metadata={"dagster/code_references": where}),
                                  [assets_def])[0]

    return [located(a) for a in assets]


# Its condition reads the event log (studyllm_pipeline/automation.py), so it is evaluated on the code server: a beta
# parameter of Dagster 1.13, whose warning is silenced for this call only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    report_automation = dg.AutomationConditionSensorDefinition(
        "report_automation", target=[sweep_report, study_comparison], default_status=dg.DefaultSensorStatus.RUNNING,
        use_user_code_server=True, minimum_interval_seconds=INTERVAL_S,
        description="Re-materialises a dataset's sweep_report when new K results arrive (also after a sweep "
                    "that stopped part-way) and no sweep of it is running, then its study_comparison (the models "
                    "of a reply dataset compared by cluster). On by default: both only read stored results and "
                    "call no API.",
    )


defs = dg.Definitions(
    assets=[*with_code_references([*SWEEP_ASSETS, study_comparison, prompt_run, *ANALYTICS_ASSETS]), *CAPTURE_ASSETS],
    jobs=[prepare_job, sweep_k_job, report_job],
    schedules=[nightly_sweep],
    sensors=[
        new_dataset_files,
        replies_to_prepare,
        replies_to_sweep,
        report_automation,
        dg.AutomationConditionSensorDefinition(
            "analytics_automation", target=ANALYTICS_ASSETS, default_status=dg.DefaultSensorStatus.RUNNING,
            description="Refreshes the analytics (provider comparison, calls over time, failures, usage) every hour. "
                        "On by default: they only read raw_calls and call no API.",
        ),
    ],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
