"""dataset_snapshot: the usable texts (and labels) of one dataset, frozen as Parquet."""

from typing import Optional

import dagster as dg
import pandas as pd

from studyllm_core.quality import MAX_DROPPED_RATIO, snapshot_verdict
from studyllm_core.services.datasets import DEMO, DatasetRegistry, DatasetSource
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.assets.common import sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.checks import quality_result, quality_spec
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.tables import as_table, table_asset_metadata
from studyllm_pipeline.lineage import check_links, record_materialization
from studyllm_pipeline.resources import StudyllmDatabase


class DatasetConfig(dg.Config):
    """Register or change where this dataset's texts come from (leave empty to use what is registered)."""

    source_path: Optional[str] = None
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    no_header: bool = False


PROMPT_RUN = dg.AssetKey("prompt_run")
USABLE = "usable_rows"
CHECKS = [quality_spec(
    "dataset_snapshot", USABLE, partitions_def=datasets,
    description=f"The snapshot has rows; at most {MAX_DROPPED_RATIO:.0%} of the file's rows were dropped as unusable "
                "(empty, invalid UTF-8, too long: more means the wrong text column or a broken export); and when the "
                "dataset names a label column, every row has a label. Blocking: embeddings are not paid for otherwise.",
)]


@dg.asset(deps=["prompt_run"], **sweep_asset_args("dataset_snapshot", io="parquet", partitions_def=datasets, checks=CHECKS))
@user_errors_as_failures
def dataset_snapshot(context: dg.AssetExecutionContext, config: DatasetConfig, database: StudyllmDatabase):
    """Texts of the dataset, with unusable rows (empty, invalid UTF-8, too long) dropped and counted."""
    engine = database.engine()
    registry = DatasetRegistry(engine)
    name = context.partition_key
    if config.source_path:
        registry.register(
            DatasetSource(
                name=name,
                path=config.source_path,
                text_column=config.text_column,
                label_column=config.label_column,
                header=not config.no_header,
            )
        )
    elif name == DEMO:
        registry.register_demo()
    source = registry.get(name)
    data = registry.load(source)
    source_group = ProvenanceService(engine).lookup("dataset", name)
    # A dataset of replies is made from its prompt_run partition; a file or the demo from nothing Dagster makes.
    replies = source.kind == "prompt_run"
    group_id = record_materialization(context, engine, config=source.to_dict(), extra_inputs=[source_group.id],
                                      upstream={(PROMPT_RUN.to_user_string(), name): "prompt_run"} if replies else {})
    frame = pd.DataFrame({"row": data.source_rows, "text": data.texts})
    if data.labels is not None:
        frame["label"] = data.labels
    yield dg.Output(
        frame,
        metadata={
            **table_asset_metadata(frame),
            "dropped_rows": len(data.dropped),
            "labelled": data.labels is not None,
            "source": dg.MetadataValue.json(source.to_dict()),
            "preview": as_table(frame, max_rows=10),
            "group_id": dg.MetadataValue.text(str(group_id)),
        },
    )
    yield check_links(context, engine, group_id, extra_inputs=[source_group.name], within={name} if replies else set())
    yield quality_result(snapshot_verdict(len(frame), len(data.dropped), data.labels, label_column=source.labels_from),
                         asset="dataset_snapshot", name=USABLE)
