"""k-LLMmeans (Diaz-Rodriguez 2025, arXiv 2502.09667): k-means in embedding space where, every few Lloyd
iterations, each cluster's centroid is replaced by the embedding of an LLM summary of a few of its
members. Without an LLM it is plain (or spherical) Lloyd k-means with k-means++ seeding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from .distances import sq_dist_to_assigned
from .lloyd import Lloyd, Rows, lloyd_rows
from .metrics import costs_from_sq
from .results import ClusteringResult
from .seeding import kmeans_plusplus
from .validation import (
    as_matrix,
    check_metric,
    check_n_clusters,
    check_positive_int,
    normalize_rows,
)

Summarize = Callable[[list[str]], str]
Embed = Callable[[list[str]], np.ndarray]
Project = Callable[[np.ndarray], np.ndarray]


def summary_vectors(
    x: np.ndarray,
    labels: np.ndarray,
    k: int,
    spherical: bool,
    texts: Sequence[str],
    summarize: Summarize,
    embed: Embed,
    project: Project | None,
    samples_per_cluster: int,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """One LLM round over the clusters of `labels`: summarise a k-means++ sample of each cluster, embed
    all K summaries in one call and project them into the clustering space (unit rows when spherical).
    k-LLMmeans takes them as the new centroids, k-subspaces as the new anchors of its subspaces."""
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=k))])
    samples: list[list[str]] = []
    for cluster in range(k):
        members = order[bounds[cluster] : bounds[cluster + 1]]
        if members.size > samples_per_cluster:
            members = members[kmeans_plusplus(x[members], samples_per_cluster, rng)]
        samples.append([texts[i] for i in members])
    # A summarizer that offers `many` gets the round's K samples at once (e.g. to send them concurrently).
    many = getattr(summarize, "many", None)
    summaries = list(many(samples)) if many is not None else [summarize(sample) for sample in samples]
    if len(summaries) != k:
        raise ValueError(f"summarize.many returned {len(summaries)} summaries for {k} clusters; it must return one per cluster.")
    for summary in summaries:
        if not isinstance(summary, str):
            raise ValueError(f"summarize must return a str, got {type(summary).__name__}; fix the summarize callable.")
    vectors = np.asarray(embed(summaries), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != k:
        raise ValueError(
            f"embed returned shape {vectors.shape} for {k} summaries; it must return one row per text."
        )
    if project is not None:
        vectors = np.asarray(project(vectors), dtype=np.float64)
    dim = x.shape[1]
    if vectors.shape != (k, dim):
        raise ValueError(
            f"summary vectors have shape {vectors.shape}, expected ({k}, {dim}); pass project= to map "
            "embed's output into the clustering space (e.g. PCAProjection.transform)."
        )
    if not np.isfinite(vectors).all():
        raise ValueError("embed/project returned NaN or infinite values for a summary; check the embedder.")
    if spherical:
        vectors = normalize_rows(vectors, "summary embeddings")
    return summaries, vectors


def check_summary_args(
    n: int,
    texts: Sequence[str] | None,
    summarize: Summarize | None,
    embed: Embed | None,
    llm_rounds: int,
    iters_per_round: int,
    samples_per_cluster: int,
    max_iter: int,
) -> bool:
    """Whether summary rounds are asked for (both `summarize` and `embed`); ValueError for settings that
    cannot work. Shared by k-LLMmeans and k-subspaces."""
    if summarize is None and embed is None:
        return False
    if summarize is None or embed is None:
        raise ValueError("summary rounds need both summarize and embed; pass both or neither.")
    if texts is None or len(texts) != n:
        got = "None" if texts is None else str(len(texts))
        raise ValueError(f"texts has {got} entries but the data has {n} rows; pass one text per row.")
    llm_rounds = check_positive_int(llm_rounds, "llm_rounds", minimum=0)
    iters_per_round = check_positive_int(iters_per_round, "iters_per_round")
    check_positive_int(samples_per_cluster, "samples_per_cluster")
    if max_iter <= llm_rounds * iters_per_round:
        raise ValueError(
            f"max_iter={max_iter} leaves no iterations after {llm_rounds} rounds of {iters_per_round}; "
            f"raise max_iter above {llm_rounds * iters_per_round}."
        )
    return True


def k_llmmeans(
    Z: np.ndarray,
    texts: Sequence[str] | None,
    K: int,
    *,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    project: Project | None = None,
    llm_rounds: int = 3,
    iters_per_round: int = 5,
    samples_per_cluster: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    metric: str = "cosine",
    seed: int = 0,
    anchor_weight: float = 0.0,
    init: np.ndarray | None = None,
) -> ClusteringResult:
    """Cluster the rows of Z into K groups with k-LLMmeans (plain k-means++ / Lloyd when no LLM is given).

    Schedule (following the authors' code, jairoadiazr/k-LLMmeans kLLMmeans() with its default
    final_iter=True, which the PyPI package k-llmmeans also keeps):
    k-means++ seeding, then for each of `llm_rounds` rounds: up to `iters_per_round` Lloyd iterations
    (fewer if they converge), labels made consistent with the centroids, then every cluster's centroid
    is replaced by its summary centroid: `samples_per_cluster` members picked by k-means++ inside the
    cluster, `summarize` called once on their texts, all K summaries embedded in ONE `embed` call and
    mapped by `project` (identity when None) into Z's space. After the last round Lloyd continues from
    the summary centroids until convergence or `max_iter` total iterations, so the returned labels and
    centroids are k-means ones and `summaries` / `summary_centroids` are the last round's. Unlike the
    reference we never stop the LLM rounds early (it stops when the summary embeddings equal the
    previous centroids, which LLM text practically never does), and clusters are never empty when
    summarised (an empty cluster is first re-seeded with the farthest item), so `summarize` is called
    exactly K x llm_rounds times and `embed` exactly llm_rounds times. A `summarize` with a `many`
    method (`many(list of K text lists) -> K summaries`) gets each round's K calls at once instead,
    so a service can send them concurrently.

    anchor_weight w (0 <= w <= 1, default 0: the schedule above) keeps the last round's summaries in
    the clustering instead of using them only as a re-seeding: after the last round every Lloyd
    centroid is (1 - w) x its members' mean + w x its summary centroid (re-normalised for cosine), so
    the clusters settle around the summaries (a variant the k-LLMmeans paper discusses). Whether that
    helps depends on the summaries: docs/methods.md measures it with offline summaries (it costs NMI)
    and with ideal ones (it gains).

    init (K rows of Z's width) starts Lloyd from these centroids instead of k-means++ seeding; the seed
    still draws the members the summaries read. The sweep passes its breathed best restart, so the
    summaries start from a better k-means optimum (docs/methods.md, "What summaries add").

    metric="cosine" is spherical k-means (rows and centroids unit-normalised; objective sum of 1 - cos);
    "euclidean" minimises the sum of squared distances. Stops on unchanged labels or when the summed
    squared centroid shift is <= tol x mean feature variance (scikit-learn's convention). Deterministic
    for a given seed.
    """
    x = as_matrix(Z, "Z")
    n = x.shape[0]
    K = check_n_clusters(K, n)
    check_metric(metric)
    max_iter = check_positive_int(max_iter, "max_iter")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}.")
    if not (isinstance(anchor_weight, (int, float)) and 0.0 <= anchor_weight <= 1.0):
        raise ValueError(f"anchor_weight must be a number in [0, 1], got {anchor_weight!r}.")
    use_llm = check_summary_args(n, texts, summarize, embed, llm_rounds, iters_per_round, samples_per_cluster, max_iter)
    spherical = metric == "cosine"
    if spherical:
        x = normalize_rows(x, "Z")
    rng = np.random.default_rng(seed)
    state = Lloyd(x, K, spherical, tol)
    if init is None:
        state.set_centroids(x[kmeans_plusplus(x, K, rng, xt=state.xt, x_sq=state.x_sq)])
    else:
        start = np.asarray(init, dtype=np.float64)
        if start.shape != (K, x.shape[1]) or not np.all(np.isfinite(start)):
            raise ValueError(f"init must be {K} finite centroids of width {x.shape[1]}, got shape {start.shape}.")
        if spherical:
            start = normalize_rows(start, "init")
        state.set_centroids(start)

    n_iter = 0
    summaries: list[str] | None = None
    summary_centroids: np.ndarray | None = None
    rounds = llm_rounds if use_llm else 0
    for _ in range(rounds):
        steps, _ = state.run(iters_per_round)
        n_iter += steps
        state.settle()
        summaries, summary_centroids = summary_vectors(
            state.x, state.labels, state.k, state.spherical, texts, summarize, embed, project, samples_per_cluster, rng
        )
        state.set_centroids(summary_centroids)
    if anchor_weight > 0 and summary_centroids is not None:
        state.anchor(summary_centroids, anchor_weight)
    steps, converged = state.run(max_iter - n_iter)
    n_iter += steps
    state.settle()
    return ClusteringResult(
        labels=state.labels.astype(np.int32),
        centroids=state.centroids.astype(np.float64),
        objective=state.objective(),
        n_iter=n_iter,
        converged=converged,
        metric=metric,
        seed=seed,
        summaries=summaries,
        summary_centroids=summary_centroids,
        n_summarize_calls=K * rounds,
    )


def refine_rows(Z: np.ndarray, metric: str) -> Rows:
    """Z prepared for refine: checked, unit rows for metric="cosine", with what Lloyd derives from its rows.
    A sweep prepares its rows once and refines every K on them."""
    x = as_matrix(Z, "Z")
    if check_metric(metric) == "cosine":
        x = normalize_rows(x, "Z")
    return lloyd_rows(x)


def refine(
    result: ClusteringResult, Z: np.ndarray | Rows, *, max_iter: int = 300, tol: float = 1e-4, rel_tol: float = 0.0
) -> ClusteringResult:
    """`result` (a k-means fit on a sample of Z's rows) carried to every row of Z: Lloyd iterations on
    all of Z starting from result's centroids, until convergence, `max_iter`, or (rel_tol > 0) an
    iteration that lowers the objective by at most rel_tol of it (Lloyd.run). The large-N sweep's way
    to get k-means labels of every row at the cost of a few passes (the restarts fit on a sample, as
    Faiss's k-means trains on a subsample). Z may be refine_rows(Z, result.metric), prepared once for
    several refinements. Lloyd never raises the objective, so the result's objective over all rows is
    at most that of result's centroids with every row at its nearest. Summaries and LLM call counts
    are result's; n_iter adds the passes run."""
    return refine_costs(result, Z, max_iter=max_iter, tol=tol, rel_tol=rel_tol)[0]


def refine_costs(
    result: ClusteringResult, Z: np.ndarray | Rows, *, max_iter: int = 300, tol: float = 1e-4, rel_tol: float = 0.0
) -> tuple[ClusteringResult, np.ndarray]:
    """refine, and every row's metrics.item_costs to its refined centroid from the same pass over the
    rows that gives the objective (a sweep needs both: one pass over N less per K)."""
    if not (isinstance(rel_tol, (int, float)) and 0.0 <= rel_tol < 1.0):
        raise ValueError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}.")
    rows = Z if isinstance(Z, Rows) else refine_rows(Z, result.metric)
    spherical = result.metric == "cosine"
    state = Lloyd(rows.x, result.k, spherical, tol, rows=rows)
    state.set_centroids(result.centroids)
    steps, converged = state.run(check_positive_int(max_iter, "max_iter"), rel_tol=rel_tol)
    state.settle()
    sq = sq_dist_to_assigned(rows.x, state.centroids, state.labels)
    refined = replace(
        result,
        labels=state.labels.astype(np.int32),
        centroids=state.centroids.astype(np.float64),
        objective=float(0.5 * sq.sum() if spherical else sq.sum()),  # Lloyd.objective, from the same pass
        n_iter=result.n_iter + steps,
        converged=converged,
    )
    return refined, costs_from_sq(sq, result.metric)
