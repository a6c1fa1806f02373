"""PCA projection of embeddings into a smaller space for clustering, keeping what is needed (mean,
components) to project new vectors, e.g. summary embeddings, into the same space."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .validation import as_matrix, check_positive_int

_ROWS_PER_BLOCK = 1 << 14
# Above this many rows the PCA axes are fitted on a seeded sample of this many rows (then every row is
# projected): a 384 x 384 covariance is estimated well from 100,000 rows, and the fit no longer grows with N.
PCA_FIT_SAMPLE = 100_000


@dataclass
class PCAProjection:
    """Result of `pca_svd_project`: Z = (X - mean) @ components.T, or X @ components.T when not
    `centered` (the axes are the same; the data keep their offset along them).

    `dim` may be smaller than `requested_dim` when there were fewer items than requested dimensions
    (see `pca_svd_project`); `clamped` says so.
    """

    Z: np.ndarray  # (N, dim), float32 if X was float32 else float64
    components: np.ndarray  # (dim, d) orthonormal rows, float64
    mean: np.ndarray  # (d,), float64
    explained_variance: np.ndarray  # (dim,) variance along each component
    explained_variance_ratio: np.ndarray  # (dim,) share of the total variance
    requested_dim: int
    centered: bool = True  # False: the mean is not subtracted (see pca_svd_project)
    fit_size: int | None = None  # rows the mean and axes were fitted on when a sample (None: all rows)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def clamped(self) -> bool:
        return self.dim != self.requested_dim

    @property
    def offset(self) -> np.ndarray:
        """What is subtracted before projecting: the mean when centered, else zeros."""
        return self.mean if self.centered else np.zeros_like(self.mean)

    def transform(self, Y: np.ndarray) -> np.ndarray:
        """Project new vectors (rows of Y, same d as the fitted X) into the same space as Z."""
        return _project(Y, self.offset, self.components)


def _project(Y: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    y = as_matrix(Y, "Y")
    if y.shape[1] != mean.shape[0]:
        raise ValueError(
            f"Y has dimension {y.shape[1]} but the projection was fitted on dimension {mean.shape[0]}; "
            "embed with the same model."
        )
    return ((y - mean) @ components.T).astype(y.dtype, copy=False)


def pca_basis(projection: PCAProjection) -> np.ndarray:
    """The projection as one storable (dim + 1, d) float64 array: the offset (the mean, or zeros when
    not centered), then the components."""
    return np.vstack([projection.offset, projection.components])


def projection_from_basis(basis: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The function Y -> (Y - mean) @ components.T of a basis stored by `pca_basis` (same as transform)."""
    basis = np.asarray(basis, dtype=np.float64)
    if basis.ndim != 2 or basis.shape[0] < 2:
        raise ValueError(f"a PCA basis has shape (dim + 1, d) with dim >= 1, got {basis.shape}; store it with pca_basis.")
    mean, components = basis[0], basis[1:]
    return lambda Y: _project(Y, mean, components)


def principal_axes(x: np.ndarray, mean: np.ndarray, n_axes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Top `n_axes` principal axes (rows, orthonormal, arbitrary sign) of the rows of x about `mean`, their
    variances and the total variance: covariance eigh accumulated over row blocks when N > d, else a thin
    SVD of the centred rows. n_axes must be <= min(N, d)."""
    n, d = x.shape
    if n > d:
        scatter = np.zeros((d, d), dtype=np.float64)
        for start in range(0, n, _ROWS_PER_BLOCK):
            block = x[start : start + _ROWS_PER_BLOCK] - mean
            scatter += block.T @ block
        eigenvalues, eigenvectors = np.linalg.eigh(scatter / max(n - 1, 1))
        order = np.argsort(eigenvalues)[::-1][:n_axes]
        return (
            np.ascontiguousarray(eigenvectors[:, order].T),
            np.maximum(eigenvalues[order], 0.0),
            float(np.trace(scatter)) / max(n - 1, 1),
        )
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    variance = singular**2 / max(n - 1, 1)
    return vt[:n_axes], variance[:n_axes], float(variance.sum())


def pca_fit_rows(n: int, fit_sample: int | None) -> np.ndarray | None:
    """The rows a PCA of n rows is fitted on: None (all) when n <= fit_sample (or no sample is asked),
    else fit_sample distinct rows, sorted, drawn from a generator seeded by n (the same rows every run)."""
    if fit_sample is None or n <= fit_sample:
        return None
    return np.sort(np.random.default_rng([0, 3, n]).choice(n, size=fit_sample, replace=False))


def pca_svd_project(X: np.ndarray, dim: int, center: bool = True, fit_sample: int | None = None) -> PCAProjection:
    """Project the rows of X onto their top `dim` principal components (exact PCA; with `fit_sample`
    and more rows than that, the mean and axes are those of a seeded sample of rows, pca_fit_rows).

    `center=False` keeps the data's offset: Z = X @ components.T on the same axes. For the cosine
    metric this keeps the angles closer to the embeddings' own (benchmarks/quality.py: +1.8 NMI
    points on AG News and SearchSnippets with MiniLM, see docs/methods.md).

    Uses the eigendecomposition of the d x d covariance, accumulated over row blocks, when N > d
    (100,000 x 384 costs one pass and a 384 x 384 eigh) and a thin SVD of the centred data otherwise.
    Signs are deterministic: each component's largest-magnitude loading is positive.
    `dim > d` raises ValueError (a configuration error). `dim > N` is clamped to N, because the number
    of items varies from run to run; the result records `requested_dim` and `clamped`.
    """
    x = as_matrix(X, "X")
    n, d = x.shape
    dim = check_positive_int(dim, "pca dim")
    if dim > d:
        raise ValueError(f"pca dim={dim} exceeds the embedding dimension d={d}; use dim <= {d} or skip the projection.")
    requested = dim
    dim = min(dim, n)
    rows = pca_fit_rows(n, fit_sample)
    fit = x if rows is None else x[rows]
    mean = fit.mean(axis=0, dtype=np.float64)
    components, variance, total = principal_axes(fit, mean, dim)
    del fit
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(dim), largest])
    signs[signs == 0] = 1.0
    components = np.ascontiguousarray(components * signs[:, None])
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    offset = mean if center else np.zeros_like(mean)
    z = np.empty((n, dim), dtype=x.dtype)
    for start in range(0, n, _ROWS_PER_BLOCK):
        z[start : start + _ROWS_PER_BLOCK] = (x[start : start + _ROWS_PER_BLOCK] - offset) @ components.T
    return PCAProjection(
        Z=z,
        components=components,
        mean=mean,
        explained_variance=variance,
        explained_variance_ratio=ratio,
        requested_dim=requested,
        centered=bool(center),
        fit_size=None if rows is None else int(rows.size),
    )
