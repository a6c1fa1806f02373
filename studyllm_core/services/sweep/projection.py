"""The PCA step of a dataset's sweep as the pipeline runs it: the embeddings projected once, and the
basis that projects new vectors (summary embeddings) into the same space in every K's step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studyllm_core.algorithms.kmeans import Project
from studyllm_core.algorithms.projection import (
    PCA_FIT_SAMPLE,
    PCAProjection,
    pca_basis,
    pca_svd_project,
    projection_from_basis,
)

DEFAULT_DIM = 50  # the PCA dimension when none is given: min(50, the embeddings' dimension)


@dataclass(frozen=True)
class DatasetProjection:
    """Z = (X - mean) @ components.T with deterministic signs (`projection`), and the basis that
    stacks mean and components (`basis`, what `projector` takes back)."""

    requested_dim: int
    projection: PCAProjection
    basis: np.ndarray


def project_dataset(embeddings: np.ndarray, pca_dim: int | None = None) -> DatasetProjection:
    """Project the embeddings to `pca_dim` dimensions (default: min(50, their dimension)); ValueError
    names a dimension that cannot be used. Above PCA_FIT_SAMPLE rows the axes are fitted on a sample,
    as the CLI's sweep does (algorithms.sweep.sweep_space), so both project alike."""
    dim = pca_dim or min(DEFAULT_DIM, int(embeddings.shape[1]))
    projection = pca_svd_project(embeddings, dim, fit_sample=PCA_FIT_SAMPLE)
    return DatasetProjection(requested_dim=dim, projection=projection, basis=pca_basis(projection))


def projector(basis: np.ndarray) -> Project:
    """The function Y -> (Y - mean) @ components.T of a stored basis (same as the dataset's projection)."""
    return projection_from_basis(basis)
