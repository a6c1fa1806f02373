"""How well each K-selection rule finds the true number of clusters, on labelled and synthetic sets.

Run: python benchmarks/k_selection.py [--seeds 5] [--sets agnews_8000 syn_k10 ...] [--rules consensus bic ...] [--uncentered]
     [--breathing on|off] [--breathing-depth M] [--restarts R] [--suffix _name]  (the sweep's breathing
     k-means, default on; its restarts, default 5; --suffix keeps the saved pickles apart from the default run's)
     python benchmarks/k_selection.py --from-saved [--restability --n-resamples 8 --n-init 2 --max-sample 3000]
     (re-decide a run's saved per-K criteria; label-free criteria it lacks, or stability with other
     settings, are computed on the same projected vectors)

For every set (the labelled sets of /work/shared/data, embedded once with the packaged MiniLM and cached
under benchmarks/out/; synthetic von Mises-Fisher blobs on the sphere with unequal sizes and overlapping
sub-topics, generated from a fixed seed), the vectors are projected by PCA 50 as the sweep does and
swept over about 0.5x-1.5x the true K (a step for large K) with the sweep's own per-K code
(cluster_restarts with the default 5 restarts and breathing k-means, score_k, representatives), once per seed. Then:

- per rule (studyllm_core.algorithms.kselection: criteria() once per seed, decide() per rule; plus
  today's silhouette + restart-ARI rule from the same sweep): the chosen K per seed, the mean and worst
  relative error to the true K, whether every seed's K lies within 5% of their median, whether the
  stated interval holds the true K, NMI at the chosen K minus NMI at the true K (same seed's sweep),
  the CPU seconds the rule adds to a sweep and their ratio to the sweep's own (the peer), and the K it
  picks when the same per-K criteria are cut to 0.5-1.1x, 0.8-1.5x, 0.5-1.0x and 1.0-1.5x the true K (a
  rule that follows the swept range moves there; on the last two the true K is at an end of the range);
  every seed's per-K criteria go to benchmarks/out/k_selection_<set>.pkl;
- the sweep's second pass (algorithms.focus: the K within 20% of the first choice re-optimised from
  their neighbours' solutions, then the rule once more), its seconds counted in the default rule's;
  rows 'before (main)' (the rule as it was: one pass, the lowest single BIC) and 'no 2nd pass'
  (today's rule on the first pass's criteria) come from the same sweep;
- the peer of the time goal: the sweep as filed (breathing off, no criteria), timed per seed in the
  same run; the goals print (sweep + rule + pass) / that peer (--no-filed-peer skips it);
- a null peer that knows only the range: its middle K. On ranges centred on the true K it meets every
  goal, so the goals alone cannot tell a rule from the range; the edge cuts can;
- scikit-learn's HDBSCAN on the same projected (unit-normalised) vectors, the peer that chooses its own
  number of clusters (BERTopic's way): cluster count, noise share, NMI (noise as one cluster).

Goals for the default rule: within 20% of the true K on every set, the same K (+-5%) across seeds,
NMI at the chosen K >= NMI at the true K - 1 point, at no more than 2x today's sweep time.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _labelled import OUT, TRUE_K, load  # noqa: E402
from studyllm_core.algorithms import (  # noqa: E402
    SweepConfig,
    choose_best_k,
    cluster_restarts,
    item_costs,
    pca_svd_project,
    representatives,
    score_k,
)
from studyllm_core.algorithms.focus import focus_ks, reoptimise  # noqa: E402
from studyllm_core.algorithms.kselection import KSelectionConfig, criteria, decide, mixture_bic  # noqa: E402
from studyllm_core.algorithms.validation import normalize_rows  # noqa: E402

PCA_DIM = 50
DEFAULT_RULE = KSelectionConfig().rule
RULES = ("stability", "stability_max", "bic", "gap", "prediction_strength", "knee", "consensus")
TODAY = "today (silhouette + restart ARI)"
MIDDLE = "middle"  # the null peer: the middle of the swept range, snapped to a swept K
BEFORE = "before (main)"  # the default rule as it was: no second pass, bic_fit=0
NO_PASS = "no 2nd pass"  # today's rule on the first pass's criteria


@dataclass
class DataSet:
    name: str
    x: np.ndarray
    labels: np.ndarray
    true_k: int
    ks: list[int]


def synthetic(n: int, k: int, parents: int, kappa: tuple[float, float], child_cos: float, alpha: float,
              dim: int = 64, seed: int = 0, params: bool = False, min_size: int = 10):
    """von Mises-Fisher blobs on the unit sphere: k mean directions grouped under `parents` topics (each
    child at cosine `child_cos` to its parent, so siblings overlap), concentrations drawn from `kappa`,
    Dirichlet(alpha) sizes with at least `min_size` items per blob. Returns (x, labels), and with `params` also
    (means, kappas, sizes): what benchmarks/k_identifiability.py reads the set's ceiling from."""
    from scipy.stats import vonmises_fisher

    rng = np.random.default_rng(seed)
    tops = rng.normal(size=(parents, dim))
    tops /= np.linalg.norm(tops, axis=1, keepdims=True)
    means = []
    for c in range(k):
        top = tops[c % parents]
        side = rng.normal(size=dim)
        side -= (side @ top) * top
        means.append(child_cos * top + math.sqrt(1 - child_cos**2) * side / np.linalg.norm(side))
    sizes = rng.multinomial(n - min_size * k, rng.dirichlet(np.full(k, alpha))) + min_size
    kappas = rng.uniform(*kappa, size=k)
    x = np.vstack([vonmises_fisher(means[c], kappas[c]).rvs(sizes[c], random_state=rng) for c in range(k)])
    if params:
        return x.astype(np.float32), np.repeat(np.arange(k), sizes), (np.array(means), kappas, sizes)
    return x.astype(np.float32), np.repeat(np.arange(k), sizes)


SYNTHETIC = {
    "syn_k10": dict(n=4000, k=10, parents=4, kappa=(25, 60), child_cos=0.75, alpha=2.0),
    "syn_k30": dict(n=9000, k=30, parents=6, kappa=(25, 60), child_cos=0.75, alpha=2.0),
    "syn_k60_unequal": dict(n=6000, k=60, parents=10, kappa=(30, 80), child_cos=0.75, alpha=0.7),
    # the same 60 unequal blobs with at least 50 items each (benchmarks/k_identifiability.py: in
    # syn_k60_unequal 25 blobs of 12-49 items cannot pay their BIC penalty even with the true labels)
    "syn_k60_min50": dict(n=6000, k=60, parents=10, kappa=(30, 80), child_cos=0.75, alpha=0.7, min_size=50),
}


def k_range(true_k: int) -> list[int]:
    """About 0.5x-1.5x the true K: every K up to 40 values, else a step that keeps about 25 values."""
    low, high = max(2, round(0.5 * true_k)), max(round(1.5 * true_k), 3)
    step = 1 if high - low <= 40 else max(1, round((high - low) / 24))
    ks = list(range(low, high + 1, step))
    if true_k not in ks:
        ks = sorted(set(ks) | {true_k})
    return ks


def load_set(name: str) -> DataSet:
    if name in SYNTHETIC:
        x, labels = synthetic(**SYNTHETIC[name])
        true_k = SYNTHETIC[name]["k"]
    else:
        data = load(name)
        x, labels, true_k = data.vectors, data.labels, data.true_k
    return DataSet(name, x, labels, true_k, k_range(true_k))


def sweep(z: np.ndarray, truth: np.ndarray, ks: list[int], seed: int, **options) -> tuple[dict, float]:
    """The sweep's per-K work (what run_sweep does per K) over `ks`: chosen clustering, scores, NMI.
    `options`: SweepConfig fields other than the defaults (e.g. breathing=True)."""
    config = SweepConfig(k_min=min(ks), k_max=max(ks), seed=seed, metric="cosine", **options)
    started = time.process_time()
    per_k = {}
    for k in ks:
        restarts = cluster_restarts(z, None, k, config)
        chosen = restarts.chosen
        costs = item_costs(z, chosen.labels, chosen.centroids, config.metric)
        scores = score_k(z, chosen.labels, [r.labels for r in restarts.runs], costs, config)
        representatives(z, chosen.labels, chosen.centroids, config.n_representatives, config.metric)
        per_k[k] = (chosen, scores)
    elapsed = time.process_time() - started
    from sklearn.metrics import normalized_mutual_info_score

    out = {k: {"result": c, "score": s.score, "nmi": normalized_mutual_info_score(truth, c.labels)} for k, (c, s) in per_k.items()}
    return out, elapsed


def filed_sweep(z: np.ndarray, truth: np.ndarray, ks: list[int], seed: int) -> float:
    """CPU seconds of the sweep as it was when the issue was filed (no breathing; criteria not computed):
    the peer of the time budget, measured in the same run. Its settings are the filed sweep's, not today's
    defaults: 5 restarts, no breathing."""
    return sweep(z, truth, ks, seed, breathing=False, n_restarts=5)[1]


def second_pass(z: np.ndarray, truth: np.ndarray, per_k: dict, crit: dict, nmi: dict,
                config: KSelectionConfig) -> tuple[list[int], dict[int, tuple[float, float]]]:
    """The sweep's second pass (algorithms.focus, as refocus runs it) on the benchmark's per-K results: the
    window around the first choice re-optimised from neighbours' solutions; crit, nmi and per_k updated in
    place for the K that improved. Returns the window and {K: (objective before, after)}."""
    from sklearn.metrics import normalized_mutual_info_score

    first = decide(config, crit)
    if first.k is None:
        return [], {}
    window = focus_ks(first.k, sorted(per_k))
    before = {k: v["result"] for k, v in per_k.items()}
    after = reoptimise(z, before, window)
    x = normalize_rows(np.asarray(z), "Z")
    improved = {}
    for k in window:
        if after[k] is not before[k]:
            improved[k] = (before[k].objective, after[k].objective)
            per_k[k]["result"] = after[k]
            crit[k].update(objective=float(after[k].objective), bic=mixture_bic(x, after[k].labels, k))
            nmi[k] = normalized_mutual_info_score(truth, after[k].labels)
    return window, improved


def hdbscan_peer(z: np.ndarray, truth: np.ndarray) -> dict:
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import normalized_mutual_info_score

    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    started = time.process_time()
    labels = HDBSCAN(min_cluster_size=10, copy=True).fit_predict(unit)
    return {
        "clusters": int(labels.max()) + 1,
        "noise": float(np.mean(labels < 0)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
        "seconds": time.process_time() - started,
    }


# sub-ranges the same per-K results are re-decided on; on the last two the true K is at an end
SHIFTED = ((0.5, 1.1), (0.8, 1.5), (0.5, 1.0), (1.0, 1.5))
FAMILIES = {"stability": ("stability",), "bic": ("bic",), "gap": ("gap",), "knee": (),
            "prediction_strength": ("prediction_strength",)}
RULE_FAMILIES = {"stability": ("stability",), "stability_max": ("stability",), "bic": ("bic",), "gap": ("gap",),
                 "knee": ("knee",), "consensus": ("stability", "bic", "knee"),
                 "prediction_strength": ("prediction_strength",)}


@dataclass
class _Scored:
    """A swept K as criteria() needs it for the stability criterion alone (no labels read)."""

    k: int
    metric: str = "cosine"
    objective: float = math.nan


def middle(ks: list[int]) -> int:
    """The null rule: the swept K at or above the middle of the range."""
    return min(k for k in ks if k >= (ks[0] + ks[-1]) / 2)


def fmt_ks(ks: list) -> str:
    return " ".join("-" if k is None else str(k) for k in ks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", nargs="+", default=[*TRUE_K, *SYNTHETIC], choices=[*TRUE_K, *SYNTHETIC])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--no-hdbscan", action="store_true")
    parser.add_argument("--no-filed-peer", dest="filed_peer", action="store_false",
                        help="skip the peer: the sweep as filed (breathing off), timed per seed in the same run")
    parser.add_argument("--from-saved", action="store_true",
                        help="re-decide every rule from the per-K criteria a previous run saved (no sweep): the rule's "
                             "half, seconds as that run measured them")
    parser.add_argument("--uncentered", action="store_true",
                        help="project on the same PCA axes without subtracting the mean (pca_svd_project(center=False))")
    parser.add_argument("--restability", action="store_true",
                        help="with --from-saved: recompute the stability criterion (the saved sweeps' other criteria "
                             "kept) with the settings below, on the same projected vectors; its seconds are measured now")
    parser.add_argument("--breathing", choices=("on", "off"), default=None,
                        help="breathing k-means on each K's chosen restart (SweepConfig.breathing; default: the sweep's default)")
    parser.add_argument("--breathing-depth", type=int, default=None, help="SweepConfig.breathing_depth")
    parser.add_argument("--restarts", type=int, default=None,
                        help="SweepConfig.n_restarts of the swept runs (the filed peer keeps 5)")
    parser.add_argument("--suffix", default="",
                        help="appended to the saved pickles' names (k_selection_<set><suffix>.pkl), e.g. to keep the "
                             "ones docs/methods.md quotes")
    parser.add_argument("--n-resamples", type=int, default=KSelectionConfig.n_resamples)
    parser.add_argument("--n-init", type=int, default=KSelectionConfig.n_init)
    parser.add_argument("--fraction", type=float, default=KSelectionConfig.fraction)
    parser.add_argument("--max-sample", type=int, default=KSelectionConfig.max_sample)
    args = parser.parse_args()

    base = KSelectionConfig(n_resamples=args.n_resamples, n_init=args.n_init, fraction=args.fraction,
                            max_sample=args.max_sample)
    families = sorted({f for r in args.rules for f in RULE_FAMILIES[r]})
    table = []
    saved: dict[str, dict] = {}
    nmi_at_true: dict[str, list[float]] = {}
    suffix = ("_uncentered" if args.uncentered else "") + args.suffix
    options = {}
    if args.breathing is not None:
        options["breathing"] = args.breathing == "on"
    if args.breathing_depth is not None:
        options["breathing_depth"] = args.breathing_depth
    if args.restarts is not None:
        options["n_restarts"] = args.restarts
    for name in args.sets:
        if args.from_saved:  # re-decide a run's per-K criteria: no sweep, no criterion is recomputed
            with open(OUT / f"k_selection_{name}{suffix}.pkl", "rb") as handle:
                runs = pickle.load(handle)
            first = runs[0]
            data = DataSet(name, np.empty((0, 0)), np.empty(0), first["true_k"], sorted(first["criteria"]))
            print(f"{name}: true K={data.true_k}, swept K={data.ks[0]}..{data.ks[-1]} ({len(data.ks)} values), "
                  f"re-decided from {OUT.name}/k_selection_{name}{suffix}.pkl", flush=True)
            # criteria the sweeps' labels are not needed for, recomputed (stability, --restability) or
            # computed because the saved run lacks them (a criterion added since)
            recompute = [f for f in ("stability", "prediction_strength") if f in families
                         and ((f == "stability" and args.restability) or f not in first["criteria"][data.ks[0]])]
            if recompute:
                loaded = load_set(name)
                z = pca_svd_project(loaded.x, PCA_DIM, center=not args.uncentered).Z
        else:
            data = load_set(name)
            z = pca_svd_project(data.x, PCA_DIM, center=not args.uncentered).Z
            print(f"{name}: N={len(data.labels):,}, true K={data.true_k}, swept K={data.ks[0]}..{data.ks[-1]} "
                  f"({len(data.ks)} values)", flush=True)
        rows = {rule: {"k": [], "dnmi": [], "seconds": [], "interval": [], "shifted": []}
                for rule in (TODAY, MIDDLE, BEFORE, NO_PASS, *args.rules)}
        sweep_seconds, filed_seconds = [], []
        for seed in range(args.seeds):
            if args.from_saved:
                run = runs[seed]
                nmi, crit, elapsed, seconds = run["nmi"], run["criteria"], run["sweep_cpu_s"], run["rule_cpu_s"]
                today = run.get("today")  # not kept by runs before the null peer was added
                for family in recompute:  # the saved sweeps' objective/BIC/gap kept
                    started = time.process_time()
                    part = criteria(z, [_Scored(k) for k in data.ks], base, seed, FAMILIES[family])
                    seconds = {**seconds, family: time.process_time() - started}
                    crit = {k: {**crit[k], **{n: v for n, v in part[k].items() if n.startswith(family)}}
                            for k in data.ks}
            else:
                per_k, elapsed = sweep(z, data.labels, data.ks, seed, **options)
                results = [per_k[k]["result"] for k in data.ks]
                nmi = {k: v["nmi"] for k, v in per_k.items()}
                crit = {k: {} for k in data.ks}
                seconds = {}
                for family in families:
                    started = time.process_time()
                    part = criteria(z, results, base, seed, FAMILIES[family])
                    seconds[family] = time.process_time() - started
                    for k, values in part.items():
                        crit[k].update(values)
                today = choose_best_k({k: v["score"] for k, v in per_k.items()})
                first_crit = {k: dict(row) for k, row in crit.items()}
                first_nmi = dict(nmi)
                started = time.process_time()
                window, improved = second_pass(z, data.labels, per_k, crit, nmi, base)
                seconds["second_pass"] = time.process_time() - started
                seconds["filed_sweep"] = filed_sweep(z, data.labels, data.ks, seed) if args.filed_peer else math.nan
                print(f"  seed {seed}: second pass over K {window[0]}..{window[-1]} ({len(window)} values), "
                      f"{len(improved)} improved: " + ", ".join(f"{k} {b:.1f}->{a:.1f}" for k, (b, a) in improved.items()),
                      flush=True)
            sweep_seconds.append(elapsed)
            filed_seconds.append(seconds.get("filed_sweep", math.nan))
            nmi_true = nmi[data.true_k]
            nmi_at_true.setdefault(name, []).append(nmi_true)
            cuts = [[k for k in data.ks if low * data.true_k - 1e-9 <= k <= high * data.true_k + 1e-9]
                    for low, high in SHIFTED]
            picks = {TODAY: (today, None, 0.0, []), MIDDLE: (middle(data.ks), None, 0.0, [middle(c) for c in cuts])}
            if args.from_saved:
                first_crit, first_nmi = run.get("first_criteria", crit), run.get("first_nmi", nmi)
            for label, config in ((BEFORE, replace(base, bic_fit=0.0)), (NO_PASS, base)):
                selection = decide(config, first_crit)
                shifted = [decide(config, {k: first_crit[k] for k in cut}).k for cut in cuts]
                picks[label] = (selection.k, selection.interval, sum(seconds.get(f, 0.0) for f in ("stability", "bic")),
                                shifted)
            for rule in args.rules:
                config = replace(base, rule=rule)
                selection = decide(config, crit)
                shifted = [decide(config, {k: crit[k] for k in cut}).k for cut in cuts]
                extra = sum(seconds[f] for f in RULE_FAMILIES[rule]) + (seconds.get("second_pass", 0.0) if rule == DEFAULT_RULE else 0.0)
                picks[rule] = (selection.k, selection.interval, extra, shifted)
            for rule, (k, interval, secs, shifted) in picks.items():
                rows[rule]["k"].append(k)
                at = first_nmi if rule in (BEFORE, NO_PASS) else nmi  # the first pass's clusterings
                rows[rule]["dnmi"].append(at[k] - at[data.true_k] if k is not None else math.nan)
                rows[rule]["seconds"].append(secs)
                rows[rule]["interval"].append(interval)
                rows[rule]["shifted"].append(shifted)
            print(f"  seed {seed}: sweep {elapsed:.1f} s; " + ", ".join(f"{r.split(' ')[0]}={p[0]}" for r, p in picks.items()),
                  flush=True)
            saved.setdefault(name, {})[seed] = {
                "true_k": data.true_k, "nmi": nmi, "today": today,
                "criteria": {k: dict(row) for k, row in crit.items()},
                "first_criteria": {k: dict(row) for k, row in first_crit.items()}, "first_nmi": first_nmi,
                "sweep_cpu_s": elapsed, "rule_cpu_s": seconds,
            }
        peer = None if args.no_hdbscan or args.from_saved else hdbscan_peer(z, data.labels)
        table.append((data, rows, float(np.mean(sweep_seconds)), peer, float(np.mean(filed_seconds))))
        if not args.from_saved:
            OUT.mkdir(parents=True, exist_ok=True)
            with open(OUT / f"k_selection_{name}{suffix}.pkl", "wb") as handle:  # per-K criteria, to re-decide offline
                pickle.dump(saved[name], handle)

    print()
    print(f"Vectors: all-MiniLM-L6-v2 (labelled sets) or 64-d vMF blobs (syn_*), PCA {PCA_DIM}"
          f"{' uncentered' if args.uncentered else ''}, spherical k-means, "
          f"5 restarts per K (the sweep's cluster_restarts/score_k), seeds 0..{args.seeds - 1}.")
    print(f"Selection settings: {base}; sweep options: {options or 'defaults'}")
    print("Columns: chosen K per seed ('-': undecided); mean and worst relative error to the true K; every seed within "
          "5% of the seeds' median; true K inside the stated interval (seeds); NMI at the chosen K minus NMI at the "
          "true K (same seed's sweep, mean, points); the rule's CPU seconds per sweep (process time: the machine is shared) and their ratio to the sweep's own; "
          "K chosen from the same per-K results cut to " + ", ".join(f"{a}-{b}x" for a, b in SHIFTED)
          + " the true K (per seed): a rule that follows the range moves there (on the last two the true K is at an "
          f"end); hits: picks within 20% of the true K over the {1 + len(SHIFTED)} ranges; '{MIDDLE}': the null peer, "
          "the middle of the range.")
    head = (f"{'set':<16} {'K':>3} {'rule':<16} {'K per seed':<20} {'err':>5} {'worst':>5} {'±5%':>4} {'in int.':>7} "
            f"{'ΔNMI':>6} {'s':>6} {'x sweep':>7}  " + " ".join(f"{f'K on {a}-{b}x':<16}" for a, b in SHIFTED)
            + f" {'hits':>5}")
    print(head)
    print("-" * len(head))
    verdicts = []
    robust: dict[str, list[int]] = {}

    def within(k: int | None, true_k: int) -> bool:
        return k is not None and abs(k - true_k) <= 0.2 * true_k

    def hits(r: dict, true_k: int) -> str:
        picks = r["k"] + [k for sh in r["shifted"] for k in sh]
        return f"{sum(within(k, true_k) for k in picks)}/{len(picks)}"

    for data, rows, sweep_s, peer, filed_s in table:
        for rule, r in rows.items():
            ks = r["k"]
            if rule == TODAY and all(k is None for k in ks):  # re-decided from a run that did not keep it
                continue
            decided = [k for k in ks if k is not None]
            errs = [abs(k - data.true_k) / data.true_k for k in decided]
            med = float(np.median(decided)) if decided else math.nan
            same = bool(decided) and len(decided) == len(ks) and all(abs(k - med) <= 0.05 * med for k in decided)
            covered = sum(1 for i in r["interval"] if i and i[0] <= data.true_k <= i[1])
            extra = float(np.mean(r["seconds"]))
            dnmi = 100 * np.nanmean(r["dnmi"]) if decided else math.nan
            label = "today" if rule == TODAY else rule
            interval_txt = f"{covered}/{len(ks)}" if rule not in (TODAY, MIDDLE) else "n/a"
            print(f"{data.name:<16} {data.true_k:>3} {label:<16} {fmt_ks(ks):<20} "
                  f"{100 * np.mean(errs) if errs else math.nan:4.0f}% {100 * max(errs) if errs else math.nan:4.0f}% "
                  f"{'yes' if same else 'no':>4} {interval_txt:>7} {dnmi:+6.2f} {extra:6.1f} {extra / sweep_s:6.2f}x  "
                  + " ".join(f"{fmt_ks([sh[i] for sh in r['shifted']]) if rule != TODAY else '':<16}"
                             for i in range(len(SHIFTED)))
                  + f" {hits(r, data.true_k) if rule != TODAY else '':>5}")
            if rule != TODAY:
                total = robust.setdefault(rule, [0, 0, 0, 0])
                total[0] += sum(1 for k in ks + [k for sh in r["shifted"] for k in sh] if within(k, data.true_k))
                total[1] += len(ks) * (1 + len(SHIFTED))
                total[2] += sum(1 for sh in r["shifted"] for k in sh[2:] if within(k, data.true_k))
                total[3] += len(ks) * len(SHIFTED[2:])
            if rule == DEFAULT_RULE:
                # the budget: sweep + rule (+ second pass) against the sweep as filed (no breathing, same run)
                ratio = (sweep_s + extra) / filed_s if math.isfinite(filed_s) else 1 + extra / sweep_s
                ok = (len(decided) == len(ks) and max(errs) <= 0.2, same, dnmi >= -1.0, ratio <= 2.0)
                verdicts.append((data.name, ok, ratio))
        if peer:
            print(f"{data.name:<16} {data.true_k:>3} {'HDBSCAN peer':<16} {peer['clusters']} clusters, noise "
                  f"{100 * peer['noise']:.1f}%, NMI {100 * peer['nmi']:.2f} (k-means at the true K: "
                  f"{100 * np.mean(nmi_at_true[data.name]):.2f}), {peer['seconds']:.1f} s")
        print(f"{data.name:<16} {'':>3} {'(sweep itself)':<16} {sweep_s:.1f} CPU s per seed; the sweep as filed "
              f"(no breathing, same run): {filed_s:.1f} s, today's sweep {sweep_s / filed_s:.2f}x it")
    print()
    print(f"Within 20% of the true K over every set, seed and range (the full range and the {len(SHIFTED)} cut ones; "
          "then on the two cuts with the true K at an end):")
    for rule, (hit, total, edge, edges) in robust.items():
        print(f"  {rule:<16} {hit}/{total} ({100 * hit / total:.0f}%)   at an end: {edge}/{edges} ({100 * edge / edges:.0f}%)")
    print()
    print(f"Goals for the default rule ({DEFAULT_RULE}): within 20% of the true K on every set, the same K (±5%) "
          "across seeds, NMI at the chosen K >= NMI at the true K - 1 point, sweep + rule <= 2x the sweep.")
    for name, (err_ok, same_ok, nmi_ok, time_ok), ratio in verdicts:
        flags = [("within 20%", err_ok), ("same K ±5%", same_ok), ("ΔNMI >= -1", nmi_ok),
                 (f"<= 2x time ({ratio:.2f}x the filed sweep)", time_ok)]
        print(f"  {name:<16} " + ", ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in flags))


if __name__ == "__main__":
    main()
