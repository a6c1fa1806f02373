"""Does k-LLMmeans earn its cost? Paired seeds of k-means and k-LLMmeans at the true K, with ablations.

Run: python benchmarks/quality.py [--seeds 10] [--sets stackoverflow tweet ...] [--no-ablations] [--no-defaults] [--uncentered]
     python benchmarks/quality.py --cli [--sets tweet] [--seeds 10]  (the main comparison through `studyllm sweep`)

Each labelled set of /work/shared/data (MiniLM vectors cached under benchmarks/out/ by _labelled.py) is
projected by PCA 50 and clustered at its true K with the sweep's own per-K code (cluster_restarts) and
the CLI's defaults: 5 restarts, the best improved by breathing k-means; with summaries, 2 summary
rounds of 10 k-means++-sampled members started from that breathed restart. Seed s is one sweep seed for
both methods, so a pair differs only by the summaries. Summaries come from the offline `extractive`
provider through SummarizationService (every call recorded in a scratch database), models
"tfidf-centroid" (the most central member sentence, the default) and "keyphrases" (a description); they
are embedded with the same MiniLM model.

Printed:
1. per set and method: ACC and NMI (mean +- std over the seeds), the paired gain over k-means, its
   wins, and the Wilcoxon signed-rank p-value (scipy) for NMI and ACC; goal: +0.5 NMI, p < 0.05;
2. ablations that say where a gain can come from: the same comparison with 1 restart (the summaries as
   a re-seeding); breathing's own gain, and the summaries from the re-run seed (without breathing, as
   the sweep ran them until 2026-12-02) against k-means without it and breathed after; the headroom
   of better k-means optima (best of 25 restarts vs best of 5); the summaries anchored into the final
   centroids (k_llmmeans anchor_weight); ideal "oracle" summaries (the summary of a cluster embeds as
   the mean of its majority class) with and without anchoring; 5 rounds, 50 samples; and how close the
   summary embeddings are to their cluster's mean and class;
3. the defaults' evidence: k-means NMI at the true K for PCA 20/50/100/none (and 50/100 without
   centring, pca_svd_project(center=False)) x 1/3/5/10 restarts.
--cli: the main comparison on the user's path instead: `studyllm sweep` of the set's TSV at the true K with
and without `--summarizer extractive`, per seed (`--seed`), embedding with the local provider into a scratch
home, NMI and ACC read from its `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import scratch_database  # noqa: E402
from _labelled import DATA, TRUE_K, LabelledSet, embed_texts, load  # noqa: E402
from _measure import STUDYLLM  # noqa: E402
from studyllm_core.algorithms import (  # noqa: E402
    SweepConfig,
    cluster_restarts,
    k_llmmeans,
    label_metrics,
    pca_svd_project,
    restart_seed,
)
from studyllm_core.algorithms.breathing import breathe  # noqa: E402
from studyllm_core.process_policy import apply_process_policy  # noqa: E402
from studyllm_core.services.capture.summarization import summarizer_from_spec  # noqa: E402

PCA_DIM = 50
RESTARTS, ROUNDS, SAMPLES = 5, 2, 10  # the CLI's defaults (studyllm sweep)
GOAL_NMI, GOAL_P = 0.5, 0.05
ANCHOR = 0.3


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when every pair ties)."""
    from scipy.stats import wilcoxon

    if not np.any(diffs != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(diffs).pvalue)


class SummaryEmbedder:
    """MiniLM embeddings of summary texts (the model the vectors came from), cached in memory."""

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, embed_texts(todo)))
        return np.stack([self.cache[t] for t in texts])


class Oracle:
    """An ideal summariser: a cluster's "summary" names the majority class of its sampled members, and
    embeds as that class's mean vector - the best any summary could point to."""

    def __init__(self, data: LabelledSet, embed: SummaryEmbedder) -> None:
        self.row = {t: i for i, t in enumerate(data.texts)}
        self.labels = data.labels
        self.means = np.stack([data.vectors[data.labels == c].mean(axis=0) for c in range(data.true_k)])
        self.embed_texts = embed

    def summarize(self, texts: list[str]) -> str:
        classes = self.labels[[self.row[t] for t in texts]]
        return f"class {np.bincount(classes).argmax()}"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.means[int(t.split()[1])] if t.startswith("class ") else self.embed_texts([t])[0]
                         for t in texts])


def config_for(k: int, seed: int, restarts: int = RESTARTS, rounds: int = ROUNDS, samples: int = SAMPLES) -> SweepConfig:
    return SweepConfig(k_min=k, k_max=k, n_restarts=restarts, metric="cosine", seed=seed, llm_rounds=rounds,
                       samples_per_cluster=samples, summarize_restarts="best")


def scores(data: LabelledSet, labels: np.ndarray) -> dict[str, float]:
    return label_metrics(data.labels, labels)


def fmt(values: list[float]) -> str:
    return f"{100 * np.mean(values):5.2f} ± {100 * np.std(values):4.2f}"


def paired_line(name: str, method: str, base: dict[str, list[float]], other: dict[str, list[float]], extra: str = "") -> tuple[str, float, float]:
    d_nmi = np.array(other["nmi"]) - np.array(base["nmi"])
    d_acc = np.array(other["acc"]) - np.array(base["acc"])
    p_nmi, p_acc = wilcoxon_p(d_nmi), wilcoxon_p(d_acc)
    line = (f"{name:<16} {method:<38} {fmt(other['nmi']):>14} {100 * d_nmi.mean():+6.2f} {int((d_nmi > 0).sum()):>2}/"
            f"{len(d_nmi):<2} {p_nmi:6.3f}   {fmt(other['acc']):>14} {100 * d_acc.mean():+6.2f} {p_acc:6.3f}  {extra}")
    return line, 100 * float(d_nmi.mean()), p_nmi


def collect(values: dict[str, list[float]], metrics: dict[str, float]) -> None:
    for key in ("nmi", "acc"):
        values.setdefault(key, []).append(metrics[key])


def main_comparison(data, z, project, summarizers, embed, seeds) -> tuple[list[str], list[tuple[str, bool]]]:
    k = data.true_k
    base: dict[str, list[float]] = {}
    others = {name: {} for name in summarizers}
    calls = dict.fromkeys(summarizers, 0)
    seconds = dict.fromkeys(["k-means", *summarizers], 0.0)
    for seed in seeds:
        config = config_for(k, seed)
        started = time.process_time()
        collect(base, scores(data, cluster_restarts(z, None, k, config).chosen.labels))
        seconds["k-means"] += time.process_time() - started
        for name, fn in summarizers.items():
            started = time.process_time()
            run = cluster_restarts(z, data.texts, k, config, summarize=fn, embed=embed, project=project)
            seconds[name] += time.process_time() - started
            calls[name] += run.n_summarize_calls
            collect(others[name], scores(data, run.chosen.labels))
    lines = [f"{data.name:<16} {'k-means':<38} {fmt(base['nmi']):>14} {'':>6} {'':>5} {'':>6}   {fmt(base['acc']):>14} "
             f"{'':>6} {'':>6}  {seconds['k-means'] / len(seeds):.1f} CPU s/seed"]
    verdicts = []
    for name in summarizers:
        line, gain, p = paired_line(data.name, f"k-LLMmeans, extractive:{name}", base, others[name],
                                    f"{seconds[name] / len(seeds):.1f} CPU s/seed, {calls[name] // len(seeds)} summaries/seed")
        lines.append(line)
        verdicts.append((f"{data.name}, extractive:{name}", gain >= GOAL_NMI and p < GOAL_P))
    return lines, verdicts


# the summaries as the sweep ran them until 2026-12-02: the best restart's seed re-run with summaries (no breathing)
def cli_comparison(name: str, seeds: list[int], home: str) -> tuple[str, bool]:
    """The main comparison through `studyllm sweep` (the user's path) at the set's true K: k-means, then
    k-LLMmeans with the offline extractive summariser, the same --seed each; the paired line and the goal."""
    k = TRUE_K[name]
    env = {**os.environ, "STUDYLLM_HOME": home}
    command = [STUDYLLM, "sweep", str(DATA / f"{name}.tsv"), "--no-header", "--text-column", "1", "--label-column",
               "0", "--embed-provider", "local", "--embed-model", "all-MiniLM-L6-v2", "--k-min", str(k), "--k-max",
               str(k), "--json"]
    arms: dict[str, dict[str, list[float]]] = {"k-means": {}, "k-LLMmeans": {}}
    for seed in seeds:
        for arm, extra in (("k-means", []), ("k-LLMmeans", ["--summarizer", "extractive"])):
            out = Path(home) / f"out-{name}-{arm}-{seed}"
            done = subprocess.run([*command, "--seed", str(seed), "--out", str(out), *extra], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"studyllm sweep failed: {done.stderr[-2000:]}")
            collect(arms[arm], json.loads(done.stdout)["per_k"][0])
    line, gain, p = paired_line(name, "studyllm sweep --summarizer extractive", arms["k-means"], arms["k-LLMmeans"],
                                f"k-means {fmt(arms['k-means']['nmi'])} NMI")
    return line, gain >= GOAL_NMI and p < GOAL_P


HEAD = (f"{'set':<16} {'method':<38} {'NMI %':>14} {'gain':>6} {'wins':>5} {'p':>6}   {'ACC %':>14} {'gain':>6} "
        f"{'p':>6}")
PLAIN_PEER = "summaries from seed vs no breathing"
THEN_BREATHING = "summaries from seed, then breathing"


def ablations(data, z, project, summarizers: dict[str, Callable], embed, seeds, headroom_seeds) -> list[str]:
    k = data.true_k
    oracle = Oracle(data, embed)
    base1, base5, plain5 = {}, {}, {}
    rows: dict[str, dict[str, list[float]]] = {}
    central = summarizers["tfidf-centroid"]
    fidelity: dict[str, dict[str, list[float]]] = {}
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    class_means = np.stack([unit[data.labels == c].mean(axis=0) for c in range(k)])
    class_means /= np.linalg.norm(class_means, axis=1, keepdims=True)

    def llm(seed: int, summarize, embed_fn, **kw):
        return k_llmmeans(z, data.texts, k, summarize=summarize, embed=embed_fn, project=project, seed=seed,
                          llm_rounds=kw.pop("rounds", ROUNDS), samples_per_cluster=kw.pop("samples", SAMPLES), **kw)

    for seed in seeds:
        single = restart_seed(seed, k, 0)
        collect(base1, scores(data, k_llmmeans(z, None, k, seed=single).labels))
        collect(rows.setdefault("1 restart: + summaries", {}), scores(data, llm(single, central, embed).labels))
        restarts = cluster_restarts(z, None, k, config_for(k, seed))
        collect(base5, scores(data, restarts.chosen.labels))
        collect(plain5, scores(data, restarts.runs[restarts.best].labels))  # the same restart before breathing
        best = restarts.seeds[restarts.best]
        summarised = llm(best, central, embed)
        collect(rows.setdefault(PLAIN_PEER, {}), scores(data, summarised.labels))
        collect(rows.setdefault(THEN_BREATHING, {}), scores(data, breathe(z, summarised)[0].labels))
        variants = {
            f"anchored {ANCHOR} (central sentence)": dict(summarize=central, embed_fn=embed, anchor_weight=ANCHOR),
            f"anchored {ANCHOR} (keyphrases)": dict(summarize=summarizers["keyphrases"], embed_fn=embed,
                                                    anchor_weight=ANCHOR),
            "5 rounds (central sentence)": dict(summarize=central, embed_fn=embed, rounds=5),
            "50 samples (central sentence)": dict(summarize=central, embed_fn=embed, samples=50),
            "oracle summaries": dict(summarize=oracle.summarize, embed_fn=oracle.embed),
            f"oracle summaries, anchored {ANCHOR}": dict(summarize=oracle.summarize, embed_fn=oracle.embed,
                                                       anchor_weight=ANCHOR),
        }
        for label, kw in variants.items():
            result = llm(best, kw.pop("summarize"), kw.pop("embed_fn"), **kw)
            collect(rows.setdefault(label, {}), scores(data, result.labels))
            if label.startswith("anchored"):  # how close the offline summaries sit to their clusters' means
                s = result.summary_centroids / np.linalg.norm(result.summary_centroids, axis=1, keepdims=True)
                sums = np.zeros_like(s)
                np.add.at(sums, result.labels, unit)
                means = sums / np.linalg.norm(sums, axis=1, keepdims=True)
                majority = np.array([np.bincount(data.labels[result.labels == c], minlength=k).argmax() for c in range(k)])
                f = fidelity.setdefault(label.split("(")[1].rstrip(")"), {"sm": [], "sc": [], "mc": []})
                f["sm"].append(float(np.mean(np.sum(s * means, axis=1))))
                f["sc"].append(float(np.mean(np.sum(s * class_means[majority], axis=1))))
                f["mc"].append(float(np.mean(np.sum(means * class_means[majority], axis=1))))
    lines = [paired_line(data.name, "1 restart: + summaries", base1, rows.pop("1 restart: + summaries"))[0],
             paired_line(data.name, "breathing: k-means' default vs without", plain5, base5)[0],
             paired_line(data.name, PLAIN_PEER, plain5, rows.pop(PLAIN_PEER))[0]]
    lines += [paired_line(data.name, label, base5, values)[0] for label, values in rows.items()]
    wide, narrow = {}, {}
    for seed in headroom_seeds:
        runs = [k_llmmeans(z, None, k, seed=restart_seed(seed, k, r)) for r in range(25)]
        collect(narrow, scores(data, min(runs[:RESTARTS], key=lambda r: r.objective).labels))
        collect(wide, scores(data, min(runs, key=lambda r: r.objective).labels))
    lines.append(paired_line(data.name, "k-means best of 25 vs of 5", narrow, wide)[0])
    for model, f in fidelity.items():
        lines.append(f"{data.name:<16} fidelity ({model}): cosine in PCA space of a summary centroid to its cluster's "
                     f"mean {np.mean(f['sm']):.3f} and to its majority class's mean {np.mean(f['sc']):.3f}; of the "
                     f"cluster's mean to that class mean {np.mean(f['mc']):.3f}")
    return lines


def defaults_table(data: LabelledSet, seeds: list[int]) -> list[str]:
    lines = []
    for dim, center in ((20, True), (50, True), (100, True), (None, True), (50, False), (100, False)):
        z = data.vectors if dim is None else pca_svd_project(data.vectors, dim, center=center).Z
        cells = []
        for restarts in (1, 3, 5, 10):
            started = time.process_time()
            nmi = [scores(data, cluster_restarts(z, None, data.true_k, config_for(data.true_k, s, restarts)).chosen.labels)["nmi"]
                   for s in seeds]
            cells.append(f"{fmt(nmi)} ({(time.process_time() - started) / len(seeds):5.1f} s)")
        label = "none" if dim is None else f"{dim}{'' if center else ' uncentered'}"
        lines.append(f"{data.name:<16} PCA {label:<15} " + "  ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--headroom-seeds", type=int, default=5, help="seeds for the best-of-25 k-means ablation")
    parser.add_argument("--sets", nargs="+", default=list(TRUE_K), choices=list(TRUE_K))
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--no-defaults", action="store_true")
    parser.add_argument("--defaults-only", action="store_true", help="print only the defaults' table")
    parser.add_argument("--uncentered", action="store_true",
                        help="project on the same PCA 50 axes without subtracting the mean (pca_svd_project(center=False))")
    parser.add_argument("--cli", action="store_true",
                        help="the main comparison through `studyllm sweep` (the user's path), nothing else")
    args = parser.parse_args()
    if args.cli:
        print(HEAD, flush=True)
        with tempfile.TemporaryDirectory(prefix="sl-quality-cli-", ignore_cleanup_errors=True) as home:
            for name in args.sets:
                line, met = cli_comparison(name, list(range(args.seeds)), home)
                print(f"{line}\n  goal +{GOAL_NMI} NMI, p < {GOAL_P}: {'met' if met else 'NOT met'}", flush=True)
        return
    apply_process_policy()  # a script is an entry point: offline model, the collector paused around heavy imports
    seeds = list(range(args.seeds))

    main_lines, verdicts, ablation_lines, default_lines = [], [], [], []
    embed = SummaryEmbedder()
    with scratch_database() as (engine, _):
        services = {name: summarizer_from_spec(spec, engine) for name, spec in
                    (("tfidf-centroid", "extractive"), ("keyphrases", "extractive:keyphrases"))}
        try:
            summarizers = {name: service.as_summarize_fn() for name, service in services.items()}
            for name in args.sets:
                data = load(name)
                projection = pca_svd_project(data.vectors, PCA_DIM, center=not args.uncentered)
                print(f"{name}: {len(data.texts):,} texts, true K={data.true_k}", flush=True)
                if args.defaults_only:
                    lines = defaults_table(data, seeds[:5])
                    default_lines += lines
                    print("\n".join(lines), flush=True)
                    continue
                lines, marks = main_comparison(data, projection.Z, projection.transform, summarizers, embed, seeds)
                main_lines += lines
                verdicts += marks
                print("\n".join(lines), flush=True)
                if not args.no_ablations:
                    lines = ablations(data, projection.Z, projection.transform, summarizers, embed,
                                      seeds, list(range(args.headroom_seeds)))
                    ablation_lines += lines
                    print("\n".join(lines), flush=True)
                if not args.no_defaults:
                    lines = defaults_table(data, seeds[:5])
                    default_lines += lines
                    print("\n".join(lines), flush=True)
        finally:
            for service in services.values():
                service.close()

    if args.defaults_only:
        print()
        print("Defaults: k-means NMI % at the true K (mean ± std over seeds 0..4) and CPU s per seed, for "
              "1 / 3 / 5 / 10 restarts; 'uncentered': the same PCA axes without subtracting the mean")
        print("\n".join(default_lines))
        return
    print()
    print(f"Settings: all-MiniLM-L6-v2 -> PCA {PCA_DIM} -> spherical k-means at the true K, {RESTARTS} restarts "
          f"(cluster_restarts) and breathing k-means on the best (the sweep's default), paired seeds "
          f"0..{args.seeds - 1}; k-LLMmeans: from that breathed restart, {ROUNDS} summary rounds x 5 Lloyd "
          f"iterations, {SAMPLES} k-means++-sampled members per summary, then Lloyd to convergence. Gains in NMI/ACC points over the same seed's "
          "k-means; p: two-sided Wilcoxon signed-rank.")
    print(HEAD)
    print("\n".join(main_lines))
    print()
    print(f"Goal: +{GOAL_NMI} NMI points or more and p < {GOAL_P} on every set, with the default restarts.")
    for label, ok in verdicts:
        print(f"  {label}: {'met' if ok else 'NOT met'}")
    if ablation_lines:
        print()
        print(f"Ablations (paired against k-means with {RESTARTS} restarts and breathing unless said; 'without "
              "breathing': the same best restart before breathing; 'from seed': its seed re-run with summaries, as "
              "before the summaries started from the breathed restart; 1 restart and best of 25 vs 5: no breathing; "
              "the k-LLMmeans variants re-run the best restart's seed, as the default did until 2026-12-02; "
              f"anchored: k_llmmeans(anchor_weight={ANCHOR}); oracle: a cluster's summary embeds as its majority "
              f"class's mean vector; best of 25 vs 5: {args.headroom_seeds} seeds)")
        print(HEAD)
        print("\n".join(ablation_lines))
    if default_lines:
        print()
        print("Defaults: k-means NMI % at the true K (mean ± std over seeds 0..4) and CPU s per seed, for "
              "1 / 3 / 5 / 10 restarts; 'uncentered': the same PCA axes without subtracting the mean")
        print("\n".join(default_lines))


if __name__ == "__main__":
    main()
