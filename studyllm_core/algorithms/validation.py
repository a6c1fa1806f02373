"""Input checks shared by the clustering algorithms, so every entry point rejects bad data
with the same one-line ValueError naming the problem and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("cosine", "euclidean")
_FINITE_CHECK_ROWS = 1 << 14  # rows checked at once: the boolean temporary stays small at any N


def working_dtype(x: np.ndarray) -> type:
    """float32 inputs stay float32 (half the memory, faster GEMMs); everything else is float64."""
    return np.float32 if x.dtype == np.float32 else np.float64


def as_matrix(x: Any, name: str = "X") -> np.ndarray:
    """Return `x` as a C-contiguous 2-D float array (float32 kept, else float64) with only finite values."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_items x dim), got shape {arr.shape}; reshape it first.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one row and one column.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}; convert it to float first.")
    arr = np.ascontiguousarray(arr, dtype=working_dtype(arr))
    bad = non_finite_rows(arr)
    if bad.size:
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad.size} row(s) (first: row {int(bad[0])}); "
            "drop or impute those rows first."
        )
    return arr


def non_finite_rows(arr: np.ndarray) -> np.ndarray:
    """Indices of the rows of a 2-D array holding NaN or infinity, checked a block of rows at a time (an
    N x d boolean temporary would cost a quarter of a float32 matrix's memory)."""
    bad = []
    for start in range(0, arr.shape[0], _FINITE_CHECK_ROWS):
        block = arr[start : start + _FINITE_CHECK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            sums = block.sum(axis=1)
        if not np.isfinite(sums).all():  # a sum is finite only when every term is (cheap test)
            bad.append(start + np.flatnonzero(~np.isfinite(block).all(axis=1)))
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.intp)


def check_n_clusters(k: int, n: int, name: str = "K") -> int:
    """A cluster count must be an int in [2, n_items]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {k!r}.")
    if k < 2:
        raise ValueError(f"{name}={k} is too small; clustering needs {name} >= 2.")
    if k > n:
        raise ValueError(f"{name}={k} exceeds the number of items N={n}; use {name} <= {n}.")
    return int(k)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not supported; use one of {', '.join(METRICS)}.")
    return metric


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def normalize_rows(x: np.ndarray, name: str = "X") -> np.ndarray:
    """Unit-normalise rows for the cosine metric; all-zero rows have no direction, so they are rejected."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = norms == 0
    if zero.any():
        raise ValueError(
            f"{name} has {int(zero.sum())} all-zero row(s) (first: row {int(np.flatnonzero(zero)[0])}); "
            "the cosine metric needs non-zero vectors, so drop them or use metric='euclidean'."
        )
    return x / norms[:, None].astype(x.dtype)
