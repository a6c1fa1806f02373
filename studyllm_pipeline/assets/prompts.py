"""prompt_run: send a file of prompts to a chat model from the Launchpad; the replies become a dataset."""

from typing import Optional

import dagster as dg
import pandas as pd

from studyllm_core.providers.registry import normalize_name
from studyllm_core.providers.settings import provider_from_env
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource, dataset_name
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.inputs import read_texts
from studyllm_pipeline.assets.common import API_POOL, PARQUET, SPENDS_MONEY, user_errors_as_failures
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase
from studyllm_pipeline.tables import as_table, table_asset_metadata


class PromptRunConfig(dg.Config):
    """What to ask, whom, and how often; the replies are registered as dataset `dataset_name`."""

    prompts_path: str
    provider: str
    model: str
    base_url: Optional[str] = None
    text_column: Optional[str] = None
    samples: int = 1
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    concurrency: int = 8
    dataset_name: Optional[str] = None


@dg.asset(
    group_name="prompts",
    io_manager_key="parquet_io",
    pool=API_POOL,
    kinds=PARQUET | {"postgres"},
    **SPENDS_MONEY,
)
@user_errors_as_failures
def prompt_run(context: dg.AssetExecutionContext, config: PromptRunConfig, database: StudyllmDatabase):
    """Every prompt x sample as a recorded call (retries, rate limits, de-duplication); replies become a dataset."""
    engine = database.engine()
    prompts = read_texts(config.prompts_path, text_column=config.text_column).texts
    service = InferenceService(
        engine,
        provider_from_env(config.provider, base_url=config.base_url),
        provider_name=normalize_name(config.provider),
        model=config.model,
        concurrency=config.concurrency,
    )
    try:
        result = service.run_batch(
            prompts,
            samples=config.samples,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            group_name=f"prompt_run:{context.run.run_id}",
            metadata={"dagster_run_id": context.run.run_id},
        )
    finally:
        service.close()
    name = dataset_name(config.dataset_name or f"replies-{context.run.run_id[:8]}")
    registry = DatasetRegistry(engine)
    dataset_group = registry.register(DatasetSource(name=name, kind="prompt_run", prompt_group_id=result.group_id))
    context.instance.add_dynamic_partitions(datasets.name, [name])
    # Provenance: this asset's group contains the run's calls; the replies' dataset is made from them.
    materialization = registry.groups.ensure_group("prompt_run", "prompt_run", metadata={"last_run_id": context.run.run_id})
    registry.groups.link(materialization, result.group_id, "contains")
    registry.groups.link(result.group_id, dataset_group, "depends_on")
    frame = pd.DataFrame(
        {
            "prompt_index": [i // result.samples for i in range(result.calls)],  # BatchResult's input order
            "sample": [r.sample_index for r in result.results],
            "reply": result.texts,
            "error": [r.error for r in result.results],
            "raw_call_id": [r.raw_call_id for r in result.results],
        }
    )
    return dg.Output(frame, metadata={**result.summary(), "group_id": dg.MetadataValue.text(str(result.group_id)),
                                      "dataset": name, **table_asset_metadata(frame),
                                      "preview": as_table(frame, max_rows=20)})
