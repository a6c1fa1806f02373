"""What each column of studyllm's tables means, and how many decimals of it are meaningful.

One dictionary for every table the core returns (analytics, sweep reports, snapshots, prompt
runs): a column has the same name and meaning wherever it appears. Front ends (the Dagster UI's
table metadata, the CLI) read descriptions here and show numbers rounded with `rounded`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    """A column's meaning in a sentence, and the decimals worth showing (None: not a float to round)."""

    description: str
    decimals: int | None = None


_SCORE = 3  # silhouette, ARI, NMI...: differences below 0.001 mean nothing at these sample sizes
COLUMNS: dict[str, Column] = {
    # calls and their cost
    "id": Column("raw_calls id of the call"),
    "raw_call_id": Column("raw_calls id of the call"),
    "created_at": Column("when the call was made (UTC)"),
    "provider": Column("provider name (openai, azure, openai-compatible, local, ...)"),
    "model": Column("model (Azure: deployment) the call went to"),
    "modality": Column("text (chat) or embedding"),
    "status": Column("outcome: success, failed, timeout or cancelled (for a K: done, failed, refused, not run)"),
    "prompt": Column("the prompt, cut to its first characters"),
    "response": Column("the reply, cut to its first characters"),
    "error_type": Column("the error class of a failed call"),
    "example_message": Column("one error message of this kind (first 200 characters)"),
    "calls": Column("number of calls (every attempt counts)"),
    "succeeded": Column("calls that returned a result"),
    "failed": Column("calls that did not return a result"),
    "success_rate": Column("succeeded / calls", 3),
    "latency_ms": Column("time from request to answer, milliseconds", 1),
    "mean_latency_ms": Column("mean latency, milliseconds", 1),
    "p50_latency_ms": Column("median latency, milliseconds", 1),
    "p95_latency_ms": Column("95th percentile latency, milliseconds", 1),
    "input_tokens": Column("prompt tokens the provider reported", 0),
    "output_tokens": Column("completion tokens the provider reported", 0),
    "total_tokens": Column("input plus output tokens", 0),
    "cost_usd": Column("estimated cost in USD from the price table (empty when a model has no price)", 6),
    "unpriced_calls": Column("calls of models without a price (not in cost_usd)"),
    "priced_cost_usd": Column("estimated cost in USD of the calls whose model has a price", 6),
    "unpriced_models": Column("models without a price in the price table"),
    "providers": Column("distinct providers called"),
    "models": Column("distinct (provider, model) pairs called"),
    "first_call_at": Column("first call (UTC)"),
    "last_call_at": Column("last call (UTC)"),
    "bucket": Column("start of the time bucket (UTC)"),
    "first_at": Column("first call of this kind (UTC)"),
    "last_at": Column("last call of this kind (UTC)"),
    # datasets and prompt runs
    "row": Column("row of the source file (0-based, header not counted)"),
    "text": Column("the text as embedded"),
    "label": Column("reference label from the dataset's label column"),
    "prompt_index": Column("position of the prompt in the prompts file"),
    "sample": Column("sample number of this prompt (0-based)"),
    "reply": Column("the model's reply (empty when the call failed)"),
    "error": Column("why the call failed, in one line"),
    # sweeps
    "k": Column("number of clusters K"),
    "reason": Column("why a K failed, was refused or did not run"),
    "run_id": Column("the Dagster run that last took this K"),
    "best": Column("the K chosen by the rule in the report's metadata"),
    "subsample_stability": Column("mean ARI between clusterings of half-samples at this K (1 = stable); a criterion "
                                  "of the K-selection rule", _SCORE),
    "subsample_stability_sd": Column("standard deviation of that half-sample ARI", _SCORE),
    "bic": Column("BIC of the partition read as a mixture (lower is better); a criterion of the K-selection rule", 1),
    "score": Column("descriptive score: mean of (silhouette + 1) / 2 and stability_ari (K is chosen by the rule in "
                    "the report's metadata, not by this score)", _SCORE),
    "silhouette": Column("mean silhouette (-1..1): how much closer texts are to their cluster than to the next", _SCORE),
    "silhouette_method": Column("exact, or sampled on large datasets"),
    "stability_ari": Column("mean adjusted Rand index between restarts (1 = every restart agrees)", _SCORE),
    "stability_ari_std": Column("standard deviation of that ARI", _SCORE),
    "coverage": Column("share of texts in clusters of at least 5 members (big enough to describe a theme)", _SCORE),
    "dispersion": Column("mean distance of texts to their own centroid (lower is tighter)", _SCORE),
    "objective": Column("k-means objective of the chosen restart (lower is tighter)", 2),
    "summarize_calls": Column("LLM calls made to summarise clusters"),
    "acc": Column("accuracy against the reference labels, clusters matched by the Hungarian method", _SCORE),
    "nmi": Column("normalised mutual information with the reference labels", _SCORE),
    "ari": Column("adjusted Rand index with the reference labels", _SCORE),
    "cluster": Column("cluster number at this K"),
    "size": Column("texts in the cluster"),
    "summary": Column("the last k-LLMmeans round's summary of the cluster"),
    "representatives": Column("the texts closest to the cluster's centre"),
    # model comparison of a reply dataset (services/study/comparison.py)
    "replies": Column("replies counted"),
    "share": Column("share of this model's replies that fall in the cluster", _SCORE),
    "model_a": Column("one model of the pair (provider:model)"),
    "model_b": Column("the other model of the pair (provider:model)"),
    "js_divergence": Column("Jensen-Shannon divergence of the two models' cluster distributions, in bits: 0 = the same "
                            "clusters in the same shares, 1 = no cluster in common", _SCORE),
    "reading": Column("the divergence in plain words, with the cluster where the two models differ most"),
    "clusters_hit": Column("number of clusters the prompt's replies fall in"),
    "spread_bits": Column("entropy of the prompt's replies over clusters, in bits (0 = all in one cluster)", _SCORE),
    "top_cluster": Column("the cluster holding most of the prompt's replies"),
    "top_share": Column("share of the prompt's replies in its top cluster", _SCORE),
}


def describe(name: str) -> str | None:
    """The description of a column, or None for a column the dictionary does not know."""
    column = COLUMNS.get(name)
    return column.description if column else None


def round_value(name: str, value: float) -> float:
    """One number rounded to its column's meaningful decimals (4 significant digits when unknown)."""
    value = float(value)
    column = COLUMNS.get(name)
    if not np.isfinite(value) or value == 0:
        return value
    if column is not None and column.decimals is not None:
        return round(value, column.decimals)
    return round(value, int(3 - np.floor(np.log10(abs(value)))))


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with each float column rounded to its meaningful decimals (4 significant digits when unknown)."""
    out = frame.copy()
    for name in out.columns:
        if not pd.api.types.is_float_dtype(out[name]):
            continue
        out[name] = [round_value(str(name), v) for v in out[name].to_numpy(dtype=float)]
    return out
