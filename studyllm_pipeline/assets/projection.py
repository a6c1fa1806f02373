"""pca_projection and pca_basis: the embeddings projected by PCA, and the basis that projects new
vectors (summary embeddings) into the same space."""

from typing import Optional

import dagster as dg
import numpy as np

from studyllm_core.algorithms.projection import pca_basis, pca_svd_project
from studyllm_pipeline.assets.common import SWEEP_GROUP, user_errors_as_failures
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.lineage import (
    GROUP_TYPE,
    STEP_POSITION,
    check_links,
    provenance_check_spec,
    record_materialization,
)
from studyllm_pipeline.resources import StudyllmDatabase


class ProjectionConfig(dg.Config):
    """PCA dimension; empty means min(50, embedding dimension). Larger than N is clamped (the metadata says so)."""

    pca_dim: Optional[int] = None


_META = {GROUP_TYPE: "step", STEP_POSITION: 2}
DEFAULT_DIM = 50


@dg.multi_asset(
    partitions_def=datasets,
    group_name=SWEEP_GROUP,
    outs={
        "pca_projection": dg.AssetOut(io_manager_key="npy_io", metadata=_META, kinds={"numpy"}),
        "pca_basis": dg.AssetOut(io_manager_key="npy_io", metadata=_META, kinds={"numpy"}),
    },
    check_specs=[provenance_check_spec("pca_projection")],
)
@user_errors_as_failures
def pca(context: dg.AssetExecutionContext, config: ProjectionConfig, embeddings: np.ndarray, database: StudyllmDatabase):
    """Z = (X - mean) @ components.T with deterministic signs; the basis stacks mean and components."""
    engine = database.engine()
    dim = config.pca_dim or min(DEFAULT_DIM, int(embeddings.shape[1]))
    try:
        projection = pca_svd_project(embeddings, dim)
    except ValueError as exc:
        raise dg.Failure(description=f"{exc} (set ops: pca: config: pca_dim in the run config)") from None
    settings = {"pca_dim": dim}
    group_id = record_materialization(context, engine, config=settings, key=dg.AssetKey("pca_projection"))
    record_materialization(context, engine, config=settings, key=dg.AssetKey("pca_basis"))
    explained = float(projection.explained_variance_ratio.sum())
    yield dg.Output(
        projection.Z,
        output_name="pca_projection",
        metadata={
            "requested_dim": dim,
            "dim": projection.dim,
            "clamped": projection.clamped,
            "explained_variance": explained,
            "group_id": group_id,
        },
    )
    yield dg.Output(pca_basis(projection), output_name="pca_basis", metadata={"dim": projection.dim})
    yield check_links(context, engine, group_id, key=dg.AssetKey("pca_projection"))
