"""embeddings: one vector per text of the snapshot, through the cached, recorded EmbeddingService."""

import dagster as dg
import numpy as np
import pandas as pd

from studyllm_core.quality import embeddings_verdict
from studyllm_pipeline.assets.common import API_POOL, SPENDS_MONEY, sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.checks import quality_result, quality_spec
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.lineage import check_links, record_materialization
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase


FINITE = "finite_vectors"
CHECKS = [quality_spec(
    "embeddings", FINITE, partitions_def=datasets,
    description="One vector per snapshot row, none holding NaN or infinity, none all zeros (a zero vector has no "
                "direction, so cosine similarity and k-means would misplace its text), and of the embedder's "
                "configured dimension when one is set. Blocking: PCA and the sweep would use them.",
)]


@dg.asset(pool=API_POOL, **SPENDS_MONEY,
          **sweep_asset_args("embeddings", io="npy", partitions_def=datasets, checks=CHECKS, postgres=True))
@user_errors_as_failures
def embeddings(
    context: dg.AssetExecutionContext,
    dataset_snapshot: pd.DataFrame,
    database: StudyllmDatabase,
    embedder: EmbedderResource,
):
    """Vectors (float32, one row per snapshot row); texts embedded before come from the cache."""
    engine = database.engine()
    settings = {"provider": embedder.provider, "model": embedder.model, "dimensions": embedder.dimensions}
    group_id = record_materialization(context, engine, config=settings,
                                      versions={"embedding": f"{embedder.provider}:{embedder.model}"})
    outcome = embedder.service(engine).embed(dataset_snapshot["text"].tolist(), group_id=group_id)
    if outcome.failed:
        first = next(iter(outcome.failures.values()))
        raise dg.Failure(
            description=(
                f"{outcome.failed} of {outcome.texts} texts could not be embedded (first: {first}); "
                "run again to retry them: the vectors already stored are reused, not paid for again"
            ),
            metadata={"failed": outcome.failed, "embedded": outcome.embedded, "cached": outcome.cached},
        )
    vectors = np.ascontiguousarray(outcome.vectors, dtype=np.float32)
    yield dg.Output(
        vectors,
        metadata={
            "texts": outcome.texts,
            "unique": outcome.unique,
            "cached": outcome.cached,
            "embedded": outcome.embedded,
            "api_requests": outcome.api_requests,
            "dimension": int(vectors.shape[1]),
            "provider": embedder.provider,
            "model": embedder.model,
            "group_id": dg.MetadataValue.text(str(group_id)),
        },
    )
    yield check_links(context, engine, group_id)
    yield quality_result(embeddings_verdict(vectors, rows=len(dataset_snapshot), dimension=embedder.dimensions),
                         asset="embeddings", name=FINITE)
