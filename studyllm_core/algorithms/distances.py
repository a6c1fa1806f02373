"""Squared Euclidean distances via the GEMM identity ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2.

The data are passed transposed (`xt`, dim x N, C-contiguous): centres @ xt[:, chunk] is the fastest GEMM
layout for a few centres against many rows, and it yields centres-by-rows blocks whose per-row minimum is
a fast vectorised reduction over a short leading axis. Blocks are bounded, so nothing N x N (or even
N x K at once) is materialised."""

from __future__ import annotations

import numpy as np

# Elements of one K x rows distance block (~1 MB in float32): small enough to stay in cache.
_BLOCK_ELEMENTS = 1 << 18


def row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of every row, in the array's dtype."""
    return np.einsum("ij,ij->i", x, x)


def transposed(x: np.ndarray) -> np.ndarray:
    """C-contiguous copy of x.T, copied in row blocks (several times faster than a strided copy)."""
    out = np.empty((x.shape[1], x.shape[0]), dtype=x.dtype)
    step = 1024
    for start in range(0, x.shape[0], step):
        out[:, start : start + step] = x[start : start + step].T
    return out


def centre_sq_distances(centres: np.ndarray) -> np.ndarray:
    """K x K squared distances between the centres (float64, GEMM identity, not clipped at 0), the diagonal
    infinite so that a row's minimum is its nearest other centre (Hamerly's bound, breathing's freezing)."""
    c = np.asarray(centres, dtype=np.float64)
    gram = c @ c.T
    c_sq = np.diag(gram)
    between = c_sq[:, None] + c_sq[None, :] - 2 * gram
    np.fill_diagonal(between, np.inf)
    return between


def chunk_rows(n_centres: int) -> int:
    """Rows per block so that an n_centres x rows block holds about _BLOCK_ELEMENTS values."""
    return max(256, _BLOCK_ELEMENTS // max(1, n_centres))


def column_argmin(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of the minimum of every column of a (K x rows) block.

    numpy's argmin along a short leading axis copies and is slow, so the index is read off an equality
    mask against the (fast) column minimum: the sum of k over the rows that hit the minimum. A column
    with a tie gets a sum that is out of range or not a minimiser; those few fall back to argmin.
    """
    k, n = block.shape
    minima = block.min(axis=0)
    hits = block == minima
    small = k < 256
    index = np.arange(k, dtype=np.uint8 if small else np.int64)[:, None]
    labels = (hits * index).sum(axis=0, dtype=np.uint16 if small else np.int64).astype(np.intp)
    np.minimum(labels, k - 1, out=labels)
    bad = np.flatnonzero(block[labels, np.arange(n)] != minima)
    if bad.size:
        labels[bad] = block[:, bad].argmin(axis=0)
    return labels, minima


def sq_dist_to_assigned(x: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact squared distance (float64) of every row to its own centre, computed chunk by chunk."""
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    step = 1 << 14
    for start in range(0, n, step):
        stop = min(n, start + step)
        diff = x[start:stop] - centres[labels[start:stop]]
        out[start:stop] = row_sq_norms(diff)  # native dtype (float64 einsum on float32 is slow)
    return out


def sq_dist_to_points(xt: np.ndarray, points: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """(len(points) x N) squared distances from a few points to every item (column of `xt`), clipped at 0."""
    d = (-2 * points) @ xt
    d += row_sq_norms(points)[:, None]
    d += x_sq
    np.maximum(d, 0, out=d)
    return d


def nearest_two(xt: np.ndarray, centres: np.ndarray, x_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-centre label plus squared distances to the nearest and second-nearest centre (needs K >= 2).

    `xt` is dim x N, ideally C-contiguous; an F-ordered view (x[subset].T) also works, a little slower."""
    n = xt.shape[1]
    centres = np.ascontiguousarray(centres, dtype=xt.dtype)
    minus_two_c = -2 * centres
    c_sq = row_sq_norms(centres)[:, None]
    labels = np.empty(n, dtype=np.intp)
    first = np.empty(n, dtype=xt.dtype)
    second = np.empty(n, dtype=xt.dtype)
    step = chunk_rows(centres.shape[0])
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = minus_two_c @ xt[:, start:stop]
        block += c_sq
        lab, first[start:stop] = column_argmin(block)
        block[lab, np.arange(stop - start)] = np.inf
        second[start:stop] = block.min(axis=0)
        labels[start:stop] = lab
    first += x_sq
    second += x_sq
    np.maximum(first, 0, out=first)
    np.maximum(second, 0, out=second)
    return labels, first, second
