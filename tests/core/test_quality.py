"""The data-quality verdicts behind the pipeline's asset checks: each passes on good data and fails,
naming the problem, on the bad data it guards against."""

import numpy as np
import pytest

from studyllm_core.quality import (
    clusters_verdict,
    combine,
    embeddings_verdict,
    projection_verdict,
    report_verdict,
    snapshot_verdict,
    summaries_verdict,
)


def test_snapshot_verdict():
    assert snapshot_verdict(10, 1, ["a"] * 10, label_column="label").passed
    assert snapshot_verdict(10, 0, None, label_column=None).passed
    empty = snapshot_verdict(0, 0, None, label_column=None)
    assert not empty.passed and "no usable rows" in empty.description
    dropped = snapshot_verdict(6, 4, None, label_column=None)
    assert not dropped.passed and "4 of 10 rows dropped (40% > 20%)" in dropped.description
    unlabelled = snapshot_verdict(3, 0, ["a", "", " "], label_column="topic")
    assert not unlabelled.passed and "2 of 3 rows have an empty 'topic'" in unlabelled.description
    assert not snapshot_verdict(3, 0, None, label_column="topic").passed


def test_embeddings_verdict():
    good = np.ones((4, 8), np.float32)
    assert embeddings_verdict(good, rows=4, dimension=8).passed and embeddings_verdict(good, rows=4).passed
    assert "4 vectors for 5 snapshot rows" in embeddings_verdict(good, rows=5).description
    assert "dimension 8, expected 16" in embeddings_verdict(good, rows=4, dimension=16).description
    bad = good.copy()
    bad[1, 2] = np.nan
    bad[3] = 0
    verdict = embeddings_verdict(bad, rows=4)
    assert not verdict.passed
    assert "1 vectors hold NaN or infinity" in verdict.description and "1 vectors are all zeros" in verdict.description


def test_the_embeddings_check_holds_no_copy_of_the_vectors():
    """The check of the pipeline's embeddings reads them in blocks of their own dtype: at a million 384-d texts
    a float64 copy and its temporaries were 6 GB beside 1.5 GB of vectors. Counts as before, across blocks."""
    import tracemalloc

    vectors = np.ones((40_000, 100), np.float32)  # 16 MB
    vectors[[3, 30_000]] = 0
    vectors[20_000, 5] = np.inf
    vectors[39_999] = np.nan  # all NaN: not finite, and no direction
    tracemalloc.start()
    try:
        verdict = embeddings_verdict(vectors, rows=40_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verdict.metadata["not_finite"] == 2 and verdict.metadata["zero_vectors"] == 3
    assert peak < 0.5 * vectors.nbytes


def test_projection_verdict():
    assert projection_verdict(np.ones((3, 2)), 0.8).passed
    with_inf = np.ones((3, 2))
    with_inf[0, 0] = np.inf
    assert "1 values of the projection are NaN or infinite" in projection_verdict(with_inf, 0.8).description
    for share in (None, float("nan"), 0.0, 1.5):
        assert not projection_verdict(np.ones((3, 2)), share).passed, share


def test_clusters_verdict():
    assert clusters_verdict(np.array([0, 1, 2, 0]), 3).passed
    empty = clusters_verdict(np.array([0, 0, 2, 2]), 3)
    assert not empty.passed and empty.description == "K=3: cluster 1 empty" and empty.metadata["empty_clusters"] == [1]
    assert "K=5 exceeds the 4 texts" in clusters_verdict(np.array([0, 1, 2, 3]), 5).description


def test_summaries_verdict():
    assert summaries_verdict(["a", "b"], 2, expected=True).passed
    assert summaries_verdict(None, 2, expected=False).passed
    blank = summaries_verdict(["a", "  "], 2, expected=True)
    assert not blank.passed and "empty summary for cluster 1" in blank.description
    assert "1 summaries for 2 clusters" in summaries_verdict(["a"], 2, expected=True).description
    assert not summaries_verdict(None, 2, expected=True).passed


def test_report_verdict():
    assert report_verdict([2, 3], None).passed
    one = report_verdict([2], None)
    assert not one.passed and "only 1 K done" in one.description
    incomplete = report_verdict([2, 3], "K 4..5 missing (not run)", missing=[4, 5])
    assert not incomplete.passed and incomplete.description == "K 4..5 missing (not run)"
    assert incomplete.metadata["missing"] == [4, 5]


@pytest.mark.parametrize("bad", [False, True])
def test_combine_names_each_failed_partition(bad):
    verdicts = {"demo|2": clusters_verdict(np.array([0, 1]), 2),
                "demo|3": clusters_verdict(np.array([0, 0, 1]) if bad else np.array([0, 1, 2]), 3)}
    combined = combine(verdicts)
    assert combined.passed is not bad
    assert combined.metadata["failed_partitions"] == (["demo|3"] if bad else [])
    if bad:
        assert combined.description == "[demo|3] K=3: cluster 2 empty"
