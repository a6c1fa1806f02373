"""Do these models answer differently, and how: a dataset of replies broken down by model and prompt over
one clustering of it.

For one K of a swept reply dataset: the share of each model's replies in each cluster, the Jensen-Shannon
divergence between every two models' cluster distributions (0 = the same clusters in the same shares,
1 bit = no cluster in common) with the cluster where they differ most, each prompt's spread over clusters
(entropy in bits and the number of clusters its replies fall in), and a chi-square test of model vs cluster
independence. `compare_models` reads the stored data; `compare` is the computation on a plain table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, entropy
from sqlalchemy import Engine

from studyllm_core.errors import InputError
from studyllm_core.services.datasets import DatasetRegistry
from studyllm_core.services.sweep.result_store import SweepResults

# Readings of a Jensen-Shannon divergence (bits): below ALIKE the models put their replies in the same clusters
# in nearly the same shares; from DIFFERENT on, most of their replies fall in clusters the other model rarely uses.
ALIKE, DIFFERENT = 0.05, 0.5


@dataclass(frozen=True)
class Independence:
    """Chi-square test of "the cluster a reply falls in does not depend on the model"."""

    chi2: float
    dof: int
    p_value: float

    def describe(self) -> str:
        verdict = "depend on the model" if self.p_value < 0.05 else "show no evidence of depending on the model"
        return f"clusters {verdict} (chi-square {self.chi2:.1f}, {self.dof} dof, p = {self.p_value:.2g})"


@dataclass(frozen=True)
class ModelComparison:
    """The breakdown of one clustering (K) of a reply dataset by model and prompt."""

    dataset: str
    k: int
    replies: int
    shares: pd.DataFrame  # provider, model, cluster, replies, share (of that model's replies)
    divergence: pd.DataFrame  # model_a, model_b, js_divergence (bits), reading
    prompts: pd.DataFrame  # prompt, replies, clusters_hit, spread_bits, top_cluster, top_share
    independence: Independence | None  # None with one model or one cluster

    @property
    def models(self) -> list[str]:
        return sorted({f"{p}:{m}" for p, m in zip(self.shares["provider"], self.shares["model"], strict=True)})

    def describe(self) -> str:
        """The answer in one line: whether the models answer differently, and how sure that is."""
        if self.divergence.empty:
            return f"{self.dataset} (K = {self.k}): only one model answered ({', '.join(self.models)}): nothing to " \
                   "compare between models; each prompt's spread over clusters is below"
        top = self.divergence.iloc[0]
        line = (f"{self.dataset} (K = {self.k}, {self.replies} replies, {len(self.models)} models): most different pair "
                f"{top['model_a']} vs {top['model_b']}, Jensen-Shannon divergence {top['js_divergence']:.2f} bits")
        return line + (f"; {self.independence.describe()}" if self.independence else "")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (what `studyllm compare --json` prints)."""

        def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records", double_precision=6))

        return {
            "dataset": self.dataset, "k": self.k, "replies": self.replies, "models": self.models,
            "summary": self.describe(), "shares": rows(self.shares), "divergence": rows(self.divergence),
            "prompts": rows(self.prompts),
            "independence": None if self.independence is None else {
                "chi2": self.independence.chi2, "dof": self.independence.dof, "p_value": self.independence.p_value},
        }


def _reading(a: str, b: str, divergence: float, shares: pd.DataFrame) -> str:
    """A pair's divergence in plain words, with the cluster where the two differ most."""
    gap = (shares[a] - shares[b]).abs()
    c = int(gap.idxmax())
    where = f"cluster {c} holds {shares.at[c, a]:.0%} of {a}'s replies and {shares.at[c, b]:.0%} of {b}'s"
    if divergence < ALIKE:
        return "answer alike: the same clusters in nearly the same shares"
    if divergence < DIFFERENT:
        return f"overlap partly: {where}"
    return f"answer differently: {where}"


def compare(replies: pd.DataFrame, *, dataset: str, k: int) -> ModelComparison:
    """The breakdown of `replies` (columns provider, model, prompt, cluster) by model and prompt."""
    frame = replies.assign(who=replies["provider"] + ":" + replies["model"])
    counts = pd.crosstab(frame["who"], frame["cluster"])  # models x clusters that hold a reply
    shares_wide = counts.div(counts.sum(axis=1), axis=0)
    origin = frame.drop_duplicates("who").set_index("who")[["provider", "model"]]
    shares = (counts.stack().rename("replies").to_frame().join(shares_wide.stack().rename("share"))
              .reset_index().rename(columns={"who": "key"}))
    shares = shares.join(origin, on="key")[["provider", "model", "cluster", "replies", "share"]]
    shares = shares.astype({"cluster": int, "replies": int})

    by_cluster = shares_wide.T  # clusters x models
    pairs = []
    names = list(counts.index)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            js = float(jensenshannon(by_cluster[a], by_cluster[b], base=2) ** 2)
            js = 0.0 if not math.isfinite(js) or js < 1e-12 else js
            pairs.append({"model_a": a, "model_b": b, "js_divergence": js,
                          "reading": _reading(a, b, js, by_cluster)})
    divergence = pd.DataFrame(pairs, columns=["model_a", "model_b", "js_divergence", "reading"])
    divergence = divergence.sort_values("js_divergence", ascending=False, kind="stable").reset_index(drop=True)

    spread = []
    for prompt, group in frame.groupby("prompt", sort=False):
        per = group["cluster"].value_counts()
        spread.append({"prompt": prompt, "replies": len(group), "clusters_hit": len(per),
                       "spread_bits": round(float(entropy(per.to_numpy(), base=2)), 9), "top_cluster": int(per.index[0]),
                       "top_share": float(per.iloc[0] / len(group))})
    prompts = pd.DataFrame(spread, columns=["prompt", "replies", "clusters_hit", "spread_bits", "top_cluster", "top_share"])
    prompts = prompts.sort_values(["spread_bits", "replies"], ascending=False, kind="stable").reset_index(drop=True)

    independence = None
    if counts.shape[0] > 1 and counts.shape[1] > 1:
        test = chi2_contingency(counts.to_numpy())
        independence = Independence(float(test.statistic), int(test.dof), float(test.pvalue))
    return ModelComparison(dataset, k, len(frame), shares, divergence, prompts, independence)


def compare_models(engine: Engine, results: SweepResults, dataset: str, k: int | None = None) -> ModelComparison:
    """The comparison of the models that answered dataset `dataset` over its clustering at K `k` (default: the K
    its sweep report chose). InputError, naming the fix, for a dataset that is not replies or a K not swept."""
    replies = DatasetRegistry(engine).replies(dataset)
    report = results.report(dataset)
    done = [int(x) for x in report.table.loc[report.table["status"] == "done", "k"]] if len(report.table) else []
    if k is None:
        k = report.choice.k if report.choice is not None else None
    if k is None or k not in done:
        swept = ", ".join(map(str, done)) or "none"
        what = f"K = {k} of dataset {dataset!r} is not swept" if k is not None else f"no K of dataset {dataset!r} is swept"
        raise InputError(f"{what} (done: {swept}); sweep it first (studyllm backfill {dataset} --k-min 2 "
                         "--k-max 8, or the replies_to_sweep automation) or choose a done K")
    labels = results.clusters(dataset, k)[["row", "label"]].rename(columns={"label": "cluster"})
    joined = replies.merge(labels, on="row", how="inner")  # replies dropped as unusable were never clustered
    return compare(joined, dataset=dataset, k=k)
