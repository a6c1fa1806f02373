"""prompt_run: send a file of prompts to a chat model from the Launchpad; the replies become a dataset.

Partitioned by dataset: the partition is the dataset the replies become, so each run keeps its own
table and lineage leads from prompt_run[<name>] to dataset_snapshot[<name>].
"""

from typing import Optional

from pydantic import Field

import dagster as dg
import pandas as pd

from studyllm_core.errors import InputError
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.inputs import read_texts
from studyllm_core.services.provenance import ProvenanceService, RunStamp
from studyllm_pipeline.assets.common import API_POOL, PARQUET, SPENDS_MONEY, user_errors_as_failures
from studyllm_pipeline.lineage import group_name
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase
from studyllm_pipeline.tables import as_table, table_asset_metadata


class PromptRunConfig(dg.Config):
    """What to ask, whom, and how often; the replies are registered as the dataset named by the partition."""

    prompts_path: str
    provider: str
    model: str
    other_models: list[str] = Field(
        default=[], description="more models of the same provider asked the same prompts: their replies join the same "
                                "dataset, so study_comparison can say whether the models answer differently")
    base_url: Optional[str] = None
    text_column: Optional[str] = None
    samples: int = 1
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    concurrency: int = 8


@dg.asset(
    partitions_def=datasets,
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
    name = context.partition_key
    registry = DatasetRegistry(engine)
    if registry.kind_of(name) not in (None, "prompt_run"):
        raise InputError(f"dataset {name!r} is a {registry.kind_of(name)} dataset: add a new partition for the replies "
                         "(the partition names the dataset they become)")
    prompts = read_texts(config.prompts_path, text_column=config.text_column).texts
    models = list(dict.fromkeys([config.model, *config.other_models]))
    batches, group_id = {}, None
    for model in models:  # one batch per model, all in one group: the dataset's replies
        service = InferenceService.from_name(
            config.provider,
            engine=engine,
            base_url=config.base_url,
            model=model,
            concurrency=config.concurrency,
        )
        try:
            batches[model] = service.run_batch(
                prompts,
                samples=config.samples,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                group_id=group_id,
                group_name=f"prompt_run:{context.run.run_id}",
                metadata={"dagster_run_id": context.run.run_id},
            )
        finally:
            service.close()
        group_id = batches[model].group_id
    result = batches[config.model]
    dataset_group = registry.register(DatasetSource(name=name, kind="prompt_run", prompt_group_id=result.group_id))
    # Provenance: this materialization's group contains the run's calls; the replies' dataset is made from them.
    provenance = ProvenanceService(engine)
    materialization = provenance.ensure_group("prompt_run", group_name(context.asset_key, name),
                                              metadata={"last_run_id": context.run.run_id})
    provenance.link(materialization, result.group_id, "contains")
    provenance.link(result.group_id, dataset_group, "depends_on")
    provenance.add_record(materialization, RunStamp(context.run.run_id, config.model_dump()),
                          asset=context.asset_key.to_user_string(), partition=name)
    frame = pd.concat([pd.DataFrame(
        {
            "model": model,
            "prompt_index": [i // batch.samples for i in range(batch.calls)],  # BatchResult's input order
            "sample": [r.sample_index for r in batch.results],
            "reply": batch.texts,
            "error": [r.error for r in batch.results],
            "raw_call_id": [r.raw_call_id for r in batch.results],
        }
    ) for model, batch in batches.items()], ignore_index=True)
    totals = {name: sum(b.summary()[name] for b in batches.values())
              for name in ("calls", "succeeded", "failed", "skipped", "api_requests")}
    return dg.Output(frame, metadata={**totals, "models": ", ".join(models),
                                      "group_id": dg.MetadataValue.text(str(result.group_id)),
                                      "dataset": name, **table_asset_metadata(frame),
                                      "preview": as_table(frame, max_rows=20)})
