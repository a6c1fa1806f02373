"""pca_projection and pca_basis: the embeddings projected by PCA, and the basis that projects new
vectors (summary embeddings) into the same space."""

from typing import Optional

import dagster as dg
import numpy as np

from studyllm_core.quality import projection_verdict
from studyllm_core.services.sweep.projection import project_dataset
from studyllm_pipeline.assets.common import NUMPY, SWEEP_GROUP, user_errors_as_failures
from studyllm_pipeline.checks import quality_result, quality_spec
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.lineage import check_links, provenance_check_spec, record_materialization
from studyllm_pipeline.resources import StudyllmDatabase


class ProjectionConfig(dg.Config):
    """PCA dimension; empty means min(50, embedding dimension). Larger than N is clamped (the metadata says so)."""

    pca_dim: Optional[int] = None


FINITE = "finite_projection"
_FINITE = ("All values finite and the share of variance the kept components explain recorded (between 0 and 1). "
           "Blocking: the sweep clusters these coordinates.")
CHECKS = [
    provenance_check_spec("pca_projection", datasets),
    provenance_check_spec("pca_basis", datasets),
    quality_spec("pca_projection", FINITE, partitions_def=datasets, description=_FINITE),
    quality_spec("pca_basis", FINITE, partitions_def=datasets, description=_FINITE.replace(
        "coordinates", "coordinates and projects the summaries with this basis")),
]


@dg.multi_asset(
    partitions_def=datasets,
    group_name=SWEEP_GROUP,
    outs={
        "pca_projection": dg.AssetOut(io_manager_key="npy_io", kinds=NUMPY,
                                      description="The embeddings projected on their first principal components."),
        "pca_basis": dg.AssetOut(io_manager_key="npy_io", kinds=NUMPY,
                                 description="The mean (row 0) and components of the PCA, to project new vectors."),
    },
    check_specs=CHECKS,
)
@user_errors_as_failures
def pca(context: dg.AssetExecutionContext, config: ProjectionConfig, embeddings: np.ndarray, database: StudyllmDatabase):
    """Z = (X - mean) @ components.T with deterministic signs; the basis stacks mean and components."""
    engine = database.engine()
    try:
        projected = project_dataset(embeddings, config.pca_dim)
    except ValueError as exc:
        raise dg.Failure(description=f"{exc} (set ops: pca: config: pca_dim in the run config)") from None
    projection, dim = projected.projection, projected.requested_dim
    settings = {"pca_dim": dim}
    group_id = record_materialization(context, engine, config=settings, key=dg.AssetKey("pca_projection"))
    basis_group = record_materialization(context, engine, config=settings, key=dg.AssetKey("pca_basis"))
    explained = float(projection.explained_variance_ratio.sum())
    yield dg.Output(
        projection.Z,
        output_name="pca_projection",
        metadata={
            "requested_dim": dim,
            "dim": projection.dim,
            "clamped": projection.clamped,
            "explained_variance": round(explained, 4),
            "group_id": dg.MetadataValue.text(str(group_id)),
        },
    )
    basis = projected.basis
    yield dg.Output(basis, output_name="pca_basis", metadata={"dim": projection.dim})
    yield check_links(context, engine, group_id, key=dg.AssetKey("pca_projection"))
    yield check_links(context, engine, basis_group, key=dg.AssetKey("pca_basis"))
    yield quality_result(projection_verdict(projection.Z, explained), asset="pca_projection", name=FINITE)
    yield quality_result(projection_verdict(basis, explained, what="basis"), asset="pca_basis", name=FINITE)
