"""Data-quality verdicts on each step's output: what the pipeline's asset checks report.

Each function looks at one result (a snapshot's rows, the vectors, a projection, one K's clusters
or summaries, a sweep report) and says in plain words whether the next step may use it. They know
nothing of Dagster: the pipeline turns a Verdict into an asset check result, and any other caller
(a notebook, the CLI) can ask the same questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# More than this share of a file's rows unusable (empty, invalid UTF-8, too long) is probably the
# wrong text column or a broken export rather than a few bad rows.
MAX_DROPPED_RATIO = 0.2


@dataclass(frozen=True)
class Verdict:
    """Passed or not, one line saying why, and the figures behind it."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _join(problems: list[str], fine: str) -> str:
    return "; ".join(problems) if problems else fine


def snapshot_verdict(
    rows: int, dropped: int, labels: Sequence[str] | None, *, label_column: str | None,
    max_dropped_ratio: float = MAX_DROPPED_RATIO,
) -> Verdict:
    """A snapshot is usable when it has rows, few dropped ones, and a label on every row when the
    dataset names a label column (ACC/NMI/ARI would be computed on the wrong rows otherwise)."""
    total = rows + dropped
    ratio = dropped / total if total else 0.0
    problems = []
    if rows == 0:
        problems.append("no usable rows")
    if ratio > max_dropped_ratio:
        problems.append(f"{dropped} of {total} rows dropped ({ratio:.0%} > {max_dropped_ratio:.0%}): "
                        "is the text column the right one?")
    unlabelled = 0
    if label_column is not None:
        if labels is None:
            problems.append(f"label column {label_column!r} named but no labels read")
        else:
            unlabelled = sum(1 for label in labels if not str(label).strip())
            if unlabelled:
                problems.append(f"{unlabelled} of {rows} rows have an empty {label_column!r}")
    return Verdict(not problems, _join(problems, f"{rows} rows, {dropped} dropped ({ratio:.1%})"
                                       + (", every row labelled" if label_column else "")),
                   {"rows": rows, "dropped_rows": dropped, "dropped_ratio": round(ratio, 4), "unlabelled_rows": unlabelled})


_CHECK_BYTES = 1 << 22  # bytes of vectors checked at a time (4 MiB: a block and its one float temporary stay in cache)


def embeddings_verdict(vectors: np.ndarray, *, rows: int, dimension: int | None = None) -> Verdict:
    """One finite, non-zero vector per snapshot row, of the dimension asked for (when one was)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(vectors), -1) if vectors.size else np.zeros((0, 0))
    n, dim = vectors.shape
    problems = []
    if n != rows:
        problems.append(f"{n} vectors for {rows} snapshot rows")
    if dimension is not None and dim != dimension:
        problems.append(f"dimension {dim}, expected {dimension}")
    not_finite = zero = 0
    step = max(1, _CHECK_BYTES // max(1, dim * vectors.itemsize))
    for start in range(0, n, step):  # blocks in the vectors' own dtype: no copy of N x d (1.5 GB at 1M)
        magnitude = np.abs(vectors[start:start + step])  # three passes over a block, not six
        not_finite += int((~np.isfinite(magnitude.max(axis=1))).sum())  # max keeps a NaN, fmax skips it
        largest = np.fmax.reduce(magnitude, axis=1)
        zero += int(((largest == 0) | np.isnan(largest)).sum())  # every value 0 (or NaN)
        del magnitude  # before the next block's: one temporary at a time
    if not_finite:
        problems.append(f"{not_finite} vectors hold NaN or infinity")
    if zero:
        problems.append(f"{zero} vectors are all zeros (no direction to compare)")
    return Verdict(not problems, _join(problems, f"{n} vectors of dimension {dim}, all finite and non-zero"),
                   {"vectors": n, "dimension": dim, "not_finite": not_finite, "zero_vectors": zero})


def projection_verdict(values: np.ndarray, explained_variance: float | None, *, what: str = "projection") -> Verdict:
    """Finite numbers, and the share of variance the kept components explain recorded (0 < share <= 1)."""
    values = np.asarray(values)
    problems = []
    not_finite = int((~np.isfinite(values)).sum())
    if not_finite:
        problems.append(f"{not_finite} values of the {what} are NaN or infinite")
    if explained_variance is None or not np.isfinite(explained_variance) or not 0 < explained_variance <= 1 + 1e-6:
        problems.append(f"explained variance not recorded or out of (0, 1]: {explained_variance}")
    share = None if explained_variance is None else round(float(explained_variance), 4)
    return Verdict(not problems, _join(problems, f"finite, explaining {share:.1%} of the variance" if share else "finite"),
                   {"not_finite": not_finite, "explained_variance": share})


def clusters_verdict(labels: np.ndarray, k: int) -> Verdict:
    """K no larger than the texts, and every one of the K clusters has members."""
    labels = np.asarray(labels)
    n = len(labels)
    problems = []
    if k > n:
        problems.append(f"K={k} exceeds the {n} texts")
    sizes = np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k) if n else np.zeros(k, int)
    empty = [int(c) for c in np.flatnonzero(sizes == 0)]
    if empty:
        problems.append(f"K={k}: cluster{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} empty")
    return Verdict(not problems, _join(problems, f"K={k}: {k} clusters, smallest {int(sizes.min()) if k else 0} texts"),
                   {"k": k, "texts": n, "empty_clusters": empty})


def summaries_verdict(summaries: Sequence[str | None] | None, k: int, *, expected: bool) -> Verdict:
    """One non-empty summary per cluster when the sweep summarises (llm_rounds > 0)."""
    if not expected:
        return Verdict(True, f"K={k}: no summaries asked for (llm_rounds=0); representatives stand in", {"k": k})
    given = list(summaries or [])
    blank = [c for c, text in enumerate(given) if not (text or "").strip()]
    problems = []
    if len(given) != k:
        problems.append(f"K={k}: {len(given)} summaries for {k} clusters")
    if blank:
        problems.append(f"K={k}: empty summary for cluster{'s' if len(blank) > 1 else ''} {', '.join(map(str, blank))}")
    return Verdict(not problems, _join(problems, f"K={k}: {k} non-empty summaries"), {"k": k, "empty_summaries": blank})


def report_verdict(
    done_ks: Sequence[int], problem: str | None, *, failed: dict[int, str] | None = None, missing: Sequence[int] = (),
) -> Verdict:
    """A report compares at least two done K; the K not done (`problem` names the failed, refused and
    missing ones) make it incomplete."""
    problems = [problem] if problem else []
    if len(done_ks) < 2:
        problems.append(f"only {len(done_ks)} K done: a choice of K needs at least two to compare")
    return Verdict(not problems, _join(problems, f"{len(done_ks)} K compared, every K swept is done"),
                   {"k_done": len(done_ks), "failed": {str(k): v for k, v in (failed or {}).items()},
                    "missing": list(missing)})


def combine(verdicts: dict[str, Verdict]) -> Verdict:
    """Several partitions' verdicts as one (a run over a K range gives one check result): passed when
    all passed; the description names each partition that did not."""
    failed = {key: v for key, v in verdicts.items() if not v.passed}
    if failed:
        text = "; ".join(f"[{key}] {v.description}" for key, v in failed.items())
    else:
        text = "; ".join(f"[{key}] {v.description}" for key, v in verdicts.items())
    return Verdict(not failed, text, {"partitions": sorted(verdicts), "failed_partitions": sorted(failed)})
