"""k_llmmeans: recovery, determinism, the LLM summary rounds, empty clusters, input validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from studyllm_core.algorithms import ClusteringResult, k_llmmeans
from support import FakeLLM


def test_recovers_blobs_euclidean(blobs):
    x, truth = blobs(1500, 5, 8, seed=1)
    result = k_llmmeans(x, None, 5, metric="euclidean", seed=0)
    assert adjusted_rand_score(truth, result.labels) > 0.95
    assert result.labels.dtype == np.int32 and result.labels.shape == (1500,)
    assert result.centroids.shape == (5, 8)
    assert result.sizes.sum() == 1500 and result.converged
    assert result.summaries is None and result.n_summarize_calls == 0


def test_recovers_directions_cosine(directions):
    x, truth = directions(1200, 4, 16, seed=2)
    result = k_llmmeans(x, None, 4, metric="cosine", seed=0)
    assert adjusted_rand_score(truth, result.labels) > 0.95
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, rtol=1e-6)
    assert 0 <= result.objective < 0.05 * len(x)  # sum of 1 - cos


def test_objective_matches_scikit_learn(blobs):
    x, _ = blobs(2000, 6, 10, seed=3, spread=3.0)
    ours = k_llmmeans(x, None, 6, metric="euclidean", seed=0)
    theirs = KMeans(6, n_init=1, random_state=0).fit(x)
    assert ours.objective == pytest.approx(theirs.inertia_, rel=0.05)
    own = ((x - ours.centroids[ours.labels]) ** 2).sum()
    assert ours.objective == pytest.approx(own, rel=1e-9)


def test_same_seed_same_result(blobs):
    x, _ = blobs(1000, 4, 6, seed=4, spread=2.0)
    a = k_llmmeans(x, None, 4, metric="euclidean", seed=7)
    b = k_llmmeans(x, None, 4, metric="euclidean", seed=7)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.objective == b.objective and a.n_iter == b.n_iter


def test_float32_input_is_clustered_in_float32(blobs):
    x, truth = blobs(1000, 4, 6, seed=5)
    result = k_llmmeans(x.astype(np.float32), None, 4, metric="euclidean", seed=0)
    assert adjusted_rand_score(truth, result.labels) > 0.95


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_summary_rounds_call_llm_k_times_rounds(blobs, metric):
    x, truth = blobs(900, 3, 5, seed=6)
    llm = FakeLLM(x)
    result = k_llmmeans(
        x, llm.texts, 3, summarize=llm.summarize, embed=llm.embed,
        llm_rounds=4, iters_per_round=2, samples_per_cluster=7, metric=metric, seed=0,
    )
    assert len(llm.summarize_inputs) == 3 * 4 == result.n_summarize_calls
    assert len(llm.embed_inputs) == 4 and all(len(batch) == 3 for batch in llm.embed_inputs)
    assert all(len(batch) == 7 for batch in llm.summarize_inputs)
    assert all(len(set(batch)) == 7 for batch in llm.summarize_inputs)  # distinct members
    assert adjusted_rand_score(truth, result.labels) > 0.95
    # The last round's centroids are the (projected) embeddings of its summaries.
    assert result.summaries == llm.embed_inputs[-1]
    expected = np.stack([llm.vectors[s] for s in result.summaries])
    if metric == "cosine":
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(result.summary_centroids, expected)


class BatchingLLM(FakeLLM):
    """A summarizer offering `many`: each round's K samples arrive in one call."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__(x)
        self.many_calls: list[int] = []

    def __call__(self, texts: list[str]) -> str:
        raise AssertionError("with `many` available, single calls are not used")

    def many(self, groups: list[list[str]]) -> list[str]:
        self.many_calls.append(len(groups))
        return [self.summarize(texts) for texts in groups]


def test_a_summarizer_with_many_gets_each_round_at_once_and_the_same_result(blobs):
    x, _ = blobs(600, 3, 4, seed=9)
    one_by_one, batching = FakeLLM(x), BatchingLLM(x)
    settings = dict(llm_rounds=3, iters_per_round=2, samples_per_cluster=5, metric="cosine", seed=0)
    plain = k_llmmeans(x, one_by_one.texts, 3, summarize=one_by_one.summarize, embed=one_by_one.embed, **settings)
    batched = k_llmmeans(x, batching.texts, 3, summarize=batching, embed=batching.embed, **settings)
    assert batching.many_calls == [3, 3, 3] and batched.n_summarize_calls == 9
    assert batching.summarize_inputs == one_by_one.summarize_inputs
    np.testing.assert_array_equal(batched.labels, plain.labels)

    class Short(BatchingLLM):
        def many(self, groups: list[list[str]]) -> list[str]:
            return super().many(groups)[:-1]

    short = Short(x)
    with pytest.raises(ValueError, match="returned 2 summaries for 3 clusters"):
        k_llmmeans(x, short.texts, 3, summarize=short, embed=short.embed, **settings)


def test_summary_centroids_drive_the_next_assignment(blobs):
    # One round and no further Lloyd improvement possible: each summary text sits in its own cluster.
    x, _ = blobs(600, 3, 4, seed=7)
    llm = FakeLLM(x)
    result = k_llmmeans(x, llm.texts, 3, summarize=llm.summarize, embed=llm.embed, llm_rounds=1,
                        iters_per_round=3, metric="euclidean", seed=0)
    summary_rows = [int(s.split()[1]) for s in result.summaries]
    assert sorted(result.labels[summary_rows].tolist()) == [0, 1, 2]


def test_sampled_texts_come_from_one_cluster(blobs):
    x, truth = blobs(600, 3, 4, seed=8)
    llm = FakeLLM(x)
    k_llmmeans(x, llm.texts, 3, summarize=llm.summarize, embed=llm.embed, llm_rounds=1,
               iters_per_round=5, samples_per_cluster=5, metric="euclidean", seed=0)
    for batch in llm.summarize_inputs:
        classes = {truth[int(t.split()[1])] for t in batch}
        assert len(classes) == 1


def test_project_maps_summary_embeddings(blobs):
    x, _ = blobs(600, 3, 6, seed=9)
    llm = FakeLLM(x)
    calls = []

    def project(v: np.ndarray) -> np.ndarray:
        calls.append(v.shape)
        return v[:, :4]

    result = k_llmmeans(x[:, :4], llm.texts, 3, summarize=llm.summarize, embed=llm.embed, project=project,
                        llm_rounds=2, metric="euclidean", seed=0)
    assert calls == [(3, 6), (3, 6)]
    assert result.summary_centroids.shape == (3, 4)


class OffsetLLM(FakeLLM):
    """The summary of a cluster embeds as the first sampled item shifted by a fixed offset: a summary
    that is consistently off the members' mean, so anchoring to it must show."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return super().embed(texts) + np.array([0.0, 3.0, 0.0, 0.0])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_anchor_weight_pulls_the_final_centroids_to_the_summaries(blobs, metric):
    x, _ = blobs(600, 3, 4, seed=11)
    x = x + 20.0  # away from the origin, so cosine centroids have a direction to keep
    llm = OffsetLLM(x)
    settings = dict(summarize=llm.summarize, embed=llm.embed, llm_rounds=2, metric=metric, seed=0)
    free = k_llmmeans(x, llm.texts, 3, **settings)
    assert k_llmmeans(x, llm.texts, 3, **settings, anchor_weight=0.0).objective == free.objective
    pinned = k_llmmeans(x, llm.texts, 3, **settings, anchor_weight=1.0)
    np.testing.assert_allclose(pinned.centroids, pinned.summary_centroids, atol=1e-6)
    half = k_llmmeans(x, llm.texts, 3, **settings, anchor_weight=0.5)

    def gap(r):  # distance of the final centroids from their summaries
        return float(np.linalg.norm(r.centroids - r.summary_centroids))

    assert gap(pinned) < gap(half) < gap(free)
    assert np.isfinite(half.objective)


def test_anchor_weight_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"anchor_weight must be a number in \[0, 1\]"):
        k_llmmeans(np.random.default_rng(0).normal(size=(10, 2)), None, 2, anchor_weight=1.5)


def test_duplicates_force_empty_clusters_without_nan():
    x = np.vstack([np.zeros((50, 3)), np.ones((3, 3))])
    result = k_llmmeans(x, None, 6, metric="euclidean", seed=0)
    assert np.isfinite(result.centroids).all() and np.isfinite(result.objective)
    assert (result.sizes >= 1).all() and result.sizes.sum() == 53


def test_duplicates_still_give_k_summaries():
    x = np.vstack([np.full((40, 2), 1.0), np.full((2, 2), 5.0)])
    llm = FakeLLM(x)
    result = k_llmmeans(x, llm.texts, 4, summarize=llm.summarize, embed=llm.embed, llm_rounds=2,
                        metric="euclidean", seed=0)
    assert result.n_summarize_calls == len(llm.summarize_inputs) == 8
    assert np.isfinite(result.centroids).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"K": 1}, "K=1 is too small"),
        ({"K": 11}, "exceeds the number of items N=10"),
        ({"metric": "manhattan"}, "metric='manhattan' is not supported"),
        ({"summarize": lambda t: t[0]}, "need both summarize and embed"),
        ({"summarize": lambda t: t[0], "embed": lambda t: np.zeros((len(t), 2)), "texts": ["a"] * 9},
         "texts has 9 entries but the data has 10 rows"),
        ({"summarize": lambda t: t[0], "embed": lambda t: np.zeros((len(t), 2)), "texts": ["a"] * 10,
          "max_iter": 10, "llm_rounds": 2, "iters_per_round": 5}, "max_iter=10 leaves no iterations"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    args = {"Z": np.random.default_rng(0).normal(size=(10, 2)), "texts": None, "K": 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        k_llmmeans(args.pop("Z"), args.pop("texts"), args.pop("K"), **args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises(bad):
    x = np.random.default_rng(0).normal(size=(20, 3))
    x[4, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite values .* row 4"):
        k_llmmeans(x, None, 2)


def test_cosine_rejects_zero_rows():
    x = np.random.default_rng(0).normal(size=(20, 3))
    x[2] = 0
    with pytest.raises(ValueError, match="all-zero row"):
        k_llmmeans(x, None, 2, metric="cosine")


def test_wrong_embed_shape_is_reported(blobs):
    x, _ = blobs(60, 3, 4, seed=10)
    with pytest.raises(ValueError, match="expected \\(3, 4\\); pass project="):
        k_llmmeans(x, [str(i) for i in range(60)], 3, summarize=lambda t: t[0],
                   embed=lambda t: np.zeros((len(t), 7)) + 1, metric="euclidean")


def test_result_type():
    x = np.random.default_rng(0).normal(size=(30, 2))
    assert isinstance(k_llmmeans(x, None, 2), ClusteringResult)
