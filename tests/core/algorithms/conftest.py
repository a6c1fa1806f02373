"""Synthetic data with known structure for the algorithm tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def make_blobs(n: int, k: int, d: int, seed: int = 0, spread: float = 10.0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n points around k random centres (well separated when spread >> noise), labels in order of centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    labels = np.arange(n) % k
    return centres[labels] + rng.normal(size=(n, d)) * noise, labels


def make_directions(n: int, k: int, d: int, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Points whose direction (not length) carries the cluster: k unit directions, random positive scales."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(d, k)))[0].T  # orthonormal, so clearly separated in angle
    labels = np.arange(n) % k
    scale = rng.uniform(0.5, 20.0, size=(n, 1))
    return scale * (directions[labels] + rng.normal(size=(n, d)) * noise), labels


def make_flats(n_per: int, k: int, d: int, rank: int, seed: int = 0, offset: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Points on k random rank-`rank` affine subspaces: long in-plane spread, tiny off-plane noise."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for cluster in range(k):
        basis = np.linalg.qr(rng.normal(size=(d, rank)))[0].T
        origin = rng.normal(size=d) * offset
        coords = rng.uniform(-10, 10, size=(n_per, rank))
        parts.append(origin + coords @ basis + rng.normal(size=(n_per, d)) * 0.02)
        labels += [cluster] * n_per
    return np.vstack(parts), np.array(labels)


@pytest.fixture
def blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return make_blobs


@pytest.fixture
def directions() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return make_directions


@pytest.fixture
def flats() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return make_flats
