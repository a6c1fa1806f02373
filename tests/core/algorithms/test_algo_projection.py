"""pca_svd_project and mean_pool_tokens."""

from __future__ import annotations

import numpy as np
import pytest

from studyllm_core.algorithms import mean_pool_tokens, pca_basis, pca_svd_project, projection_from_basis


def correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 5


@pytest.mark.parametrize(("n", "d"), [(500, 12), (8, 40)])  # covariance path and thin-SVD path
def test_matches_exact_pca(n, d):
    x = correlated(n, d)
    dim = min(5, n)
    proj = pca_svd_project(x, dim)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(proj.components), np.abs(vt[:dim]), atol=1e-8)
    np.testing.assert_allclose(proj.explained_variance, s[:dim] ** 2 / (n - 1), rtol=1e-8)
    np.testing.assert_allclose(proj.Z, centred @ proj.components.T, atol=1e-8)
    assert proj.Z.shape == (n, dim) and not proj.clamped
    assert np.all(np.diff(proj.explained_variance) <= 1e-12)
    assert 0 < proj.explained_variance_ratio.sum() <= 1 + 1e-12


def test_signs_are_deterministic():
    x = correlated(300, 10, seed=1)
    a = pca_svd_project(x, 4)
    b = pca_svd_project(x[::-1].copy(), 4)  # same data, another order
    np.testing.assert_allclose(a.components, b.components, atol=1e-8)
    largest = np.abs(a.components).argmax(axis=1)
    assert (a.components[np.arange(4), largest] > 0).all()


def test_transform_projects_new_vectors_into_the_same_space():
    x = correlated(200, 8, seed=2)
    proj = pca_svd_project(x, 3)
    np.testing.assert_allclose(proj.transform(x[:5]), proj.Z[:5], atol=1e-10)
    with pytest.raises(ValueError, match="dimension 7 but the projection was fitted on dimension 8"):
        proj.transform(np.zeros((2, 7)))


def test_basis_round_trip():
    x = correlated(200, 8, seed=3)
    proj = pca_svd_project(x, 3)
    basis = pca_basis(proj)
    assert basis.shape == (4, 8)
    np.testing.assert_allclose(projection_from_basis(basis)(x[:7]), proj.transform(x[:7]))
    with pytest.raises(ValueError, match="store it with pca_basis"):
        projection_from_basis(np.zeros(8))


def test_uncentered_projection_keeps_the_offset_on_the_same_axes():
    x = correlated(200, 8, seed=4) + 5.0
    centred, kept = pca_svd_project(x, 3), pca_svd_project(x, 3, center=False)
    np.testing.assert_allclose(kept.components, centred.components)
    np.testing.assert_allclose(kept.Z, x @ kept.components.T, atol=1e-9)
    np.testing.assert_allclose(kept.Z - centred.Z, np.tile(x.mean(axis=0) @ kept.components.T, (200, 1)), atol=1e-9)
    assert not kept.centered and centred.centered
    np.testing.assert_allclose(kept.transform(x[:5]), kept.Z[:5], atol=1e-9)
    np.testing.assert_allclose(projection_from_basis(pca_basis(kept))(x[:5]), kept.Z[:5], atol=1e-9)


def test_float32_stays_float32():
    x = correlated(200, 8).astype(np.float32)
    proj = pca_svd_project(x, 3)
    assert proj.Z.dtype == np.float32 and proj.transform(x[:2]).dtype == np.float32


def test_dim_above_d_raises():
    with pytest.raises(ValueError, match="pca dim=13 exceeds the embedding dimension d=12; use dim <= 12"):
        pca_svd_project(correlated(50, 12), 13)


def test_dim_above_n_is_clamped_and_recorded():
    proj = pca_svd_project(correlated(6, 12), 10)
    assert proj.dim == 6 and proj.requested_dim == 10 and proj.clamped
    assert proj.Z.shape == (6, 6)


@pytest.mark.parametrize("dim", [0, -1])
def test_dim_must_be_positive(dim):
    with pytest.raises(ValueError, match="pca dim must be an integer >= 1"):
        pca_svd_project(correlated(20, 4), dim)


def test_non_finite_rows_raise():
    x = correlated(20, 4)
    x[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        pca_svd_project(x, 2)


def test_mean_pool_with_mask_and_lengths():
    tokens = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    expected = np.array([tokens[0, :2].mean(axis=0), tokens[1, 0]])
    np.testing.assert_allclose(mean_pool_tokens(tokens, mask=mask), expected)
    np.testing.assert_allclose(mean_pool_tokens(tokens, lengths=[2, 1]), expected)
    np.testing.assert_allclose(mean_pool_tokens(tokens), tokens.mean(axis=1))


def test_mean_pool_ragged_list():
    items = [np.ones((2, 3)), np.arange(9, dtype=float).reshape(3, 3)]
    pooled = mean_pool_tokens(items)
    np.testing.assert_allclose(pooled, np.stack([items[0].mean(axis=0), items[1].mean(axis=0)]))


def test_mean_pool_rejects_items_without_tokens():
    with pytest.raises(ValueError, match="item 1 has no valid tokens"):
        mean_pool_tokens(np.ones((2, 3, 4)), lengths=[3, 0])
    with pytest.raises(ValueError, match="not both"):
        mean_pool_tokens(np.ones((2, 3, 4)), mask=np.ones((2, 3)), lengths=[1, 1])


def test_non_finite_rows_are_found_in_every_block(monkeypatch):
    """The finiteness check runs a few rows at a time (no N x d boolean temporary); a bad row in a late
    block, and one whose entries overflow a row sum without being infinite, are judged as a whole-matrix
    check would."""
    from studyllm_core.algorithms import validation

    monkeypatch.setattr(validation, "_FINITE_CHECK_ROWS", 4)
    x = correlated(30, 6).astype(np.float32)
    x[3] = np.finfo(np.float32).max  # finite values whose sum overflows: not a bad row
    assert validation.as_matrix(x) is x
    x[17, 2], x[29, 0] = np.nan, -np.inf
    with pytest.raises(ValueError, match=r"in 2 row\(s\) \(first: row 17\)"):
        validation.as_matrix(x)


def test_a_fit_sample_fits_the_axes_on_the_sample_and_projects_every_row():
    """Above `fit_sample` rows the mean and axes are those of the seeded sample (pca_fit_rows), the same rows
    every run; every row is projected on them. At or below, the result is the exact PCA, unchanged."""
    from studyllm_core.algorithms.projection import pca_fit_rows

    x = correlated(600, 12).astype(np.float32)
    sampled = pca_svd_project(x, 4, fit_sample=200)
    rows = pca_fit_rows(600, 200)
    assert rows.size == 200 and np.array_equal(rows, pca_fit_rows(600, 200)) and sampled.fit_size == 200
    on_sample = pca_svd_project(x[rows], 4)
    np.testing.assert_array_equal(sampled.components, on_sample.components)
    np.testing.assert_array_equal(sampled.mean, on_sample.mean)
    assert sampled.Z.shape == (600, 4)
    np.testing.assert_allclose(sampled.Z, sampled.transform(x), atol=1e-5)
    assert not np.allclose(sampled.components, pca_svd_project(x, 4).components, atol=1e-6)  # not the full fit
    exact = pca_svd_project(x, 4)
    at_threshold = pca_svd_project(x, 4, fit_sample=600)
    assert at_threshold.fit_size is None and exact.fit_size is None
    np.testing.assert_array_equal(at_threshold.Z, exact.Z)
