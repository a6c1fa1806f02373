"""Clustering algorithms for studying LLM outputs: PCA projection, k-LLMmeans (k-means with LLM summaries
as centroids), affine k-subspaces, quality metrics and K sweeps. Needs only numpy/scipy (plus
scikit-learn for a few metrics); knows nothing of databases or providers."""

from .kmeans import k_llmmeans
from .metrics import (
    Silhouette,
    Stability,
    clustering_accuracy,
    coverage,
    dispersion,
    item_costs,
    label_metrics,
    representatives,
    silhouette,
    stability,
)
from .pooling import mean_pool_tokens
from .projection import PCAProjection, pca_basis, pca_svd_project, projection_from_basis
from .results import ClusteringResult
from .seeding import kmeans_plusplus
from .subspaces import k_subspaces
from .sweep import (
    BEST_K_RULE,
    K_SELECTION,
    KChoice,
    KResult,
    KScores,
    Restarts,
    SweepConfig,
    SweepResult,
    choose_best_k,
    choose_k,
    cluster_restarts,
    k_criteria,
    restart_seed,
    run_sweep,
    score_k,
    sweep_k,
)

__all__ = [
    "BEST_K_RULE",
    "K_SELECTION",
    "ClusteringResult",
    "KChoice",
    "KResult",
    "KScores",
    "PCAProjection",
    "Silhouette",
    "Stability",
    "Restarts",
    "SweepConfig",
    "SweepResult",
    "choose_best_k",
    "choose_k",
    "cluster_restarts",
    "clustering_accuracy",
    "coverage",
    "dispersion",
    "item_costs",
    "k_criteria",
    "k_llmmeans",
    "k_subspaces",
    "kmeans_plusplus",
    "label_metrics",
    "mean_pool_tokens",
    "pca_basis",
    "pca_svd_project",
    "projection_from_basis",
    "representatives",
    "restart_seed",
    "run_sweep",
    "score_k",
    "silhouette",
    "stability",
    "sweep_k",
]
