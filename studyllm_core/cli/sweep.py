"""`studyllm sweep`: cluster the texts of a file for every K of a range, score each K and choose one."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from studyllm_core.cli.common import add_input_args, add_provider_args, read_input
from studyllm_core.output import emit, table
from studyllm_core.files import check_output_path
from studyllm_core.progress import Progress
from studyllm_core.errors import InputError
from studyllm_core.services.sweep.methods import DEFAULT_METHOD, DEFAULT_RANK, METHODS, method_settings

if TYPE_CHECKING:
    from studyllm_core.services.sweep.recipe import SweepConfig

REPORT_FILE, CLUSTERS_FILE = "report.json", "clusters.parquet"  # the names services.sweep writes

DEFAULT_RESTARTS = 5
DEFAULT_PCA_DIM = 50
DEFAULT_LLM_ROUNDS = 2  # with a summariser
MAX_WARNINGS = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="cluster a file's texts for every K in a range (k-means, k-LLMmeans or k-subspaces) and choose K",
        description="Embed the texts of INPUT through the cache, project them by PCA, and cluster them for every K "
        "from --k-min to --k-max with several seeded restarts (spherical k-means; with --summarizer, k-LLMmeans: "
        "summaries of sampled members replace the centroids for --llm-rounds rounds). Each K is scored by "
        "silhouette and restart stability (and ACC/NMI/ARI with --label-column); the best K follows the stated "
        f"rule. Writes DIR/{REPORT_FILE}, DIR/labels_kK.npy (int32 per input row, -1 where the text could not be "
        f"embedded) and DIR/{CLUSTERS_FILE} (long format: row, k, label, text[, reference]); every file is "
        "recorded with its sha256 under the sweep's run group. The summariser reads its keys and URL from the "
        "environment; --base-url is the embedding server's.",
    )
    add_input_args(p, labels=True)
    add_provider_args(p, operation="embed", prefix="embed-")
    p.add_argument("--k-min", type=int, required=True, metavar="A", help="smallest K (at least 2)")
    p.add_argument("--k-max", type=int, required=True, metavar="B", help="largest K (at most the number of texts)")
    p.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS, metavar="N",
                   help=f"seeded restarts per K; the lowest objective is kept (default {DEFAULT_RESTARTS})")
    p.add_argument("--pca-dim", type=int, default=DEFAULT_PCA_DIM, metavar="D",
                   help=f"PCA dimensions before clustering (default {DEFAULT_PCA_DIM}; cut to the embedding "
                   "dimension and the number of texts, with a note)")
    p.add_argument("--summarizer", metavar="SPEC",
                   help="k-LLMmeans summariser: 'extractive' (offline) or PROVIDER:MODEL, e.g. openai:gpt-4o-mini")
    p.add_argument("--llm-rounds", type=int, metavar="N",
                   help=f"summary rounds per k-LLMmeans run (default {DEFAULT_LLM_ROUNDS} with --summarizer); the "
                   "restarts run without the LLM and the best one is re-run with it")
    p.add_argument("--method", choices=tuple(METHODS), default=DEFAULT_METHOD,
                   help="kmeans: spherical k-means (k-LLMmeans with --summarizer); ksubspaces: each cluster a "
                   "rank-R affine subspace (with --summarizer, summaries anchor the subspaces) (default kmeans)")
    p.add_argument("--rank", type=int, metavar="R",
                   help=f"subspace rank of --method ksubspaces (default {DEFAULT_RANK}; 0 is k-means)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the restarts (default 0)")
    p.add_argument("--breathing-depth", type=int, metavar="D",
                   help="breathing k-means on each K's best restart (with --summarizer: the restart the summary "
                   "rounds start from): centroids moved per breath (default max(5, K // 3)); 0 turns it off")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report, labels and clusters table")
    p.add_argument("--json", action="store_true", help="print one JSON object: best_k, per-K scores, counts, files")
    p.set_defaults(handler=cmd_sweep)


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """The SweepConfig of the command line (cosine metric, summaries only on the best restart)."""
    from studyllm_core.services.sweep.recipe import SweepConfig

    if args.summarizer is None and args.llm_rounds:
        raise InputError("--llm-rounds needs --summarizer (e.g. --summarizer extractive); drop it for plain k-means")
    rounds = args.llm_rounds if args.llm_rounds is not None else DEFAULT_LLM_ROUNDS
    return SweepConfig(
        **method_settings(args.method, args.rank),
        k_min=args.k_min,
        k_max=args.k_max,
        n_restarts=args.restarts,
        pca_dim=args.pca_dim,
        metric="cosine",
        llm_rounds=rounds if args.summarizer else 0,
        seed=args.seed,
        summarize_restarts="best",
        **breathing_settings(args.breathing_depth),
    )


def breathing_settings(depth: int | None) -> dict[str, object]:
    """SweepConfig's breathing fields of --breathing-depth: None keeps the default, 0 turns it off."""
    if depth is None:
        return {}
    if depth < 0:
        raise InputError(f"--breathing-depth must be 0 (off) or a positive number of centroids; got {depth}")
    return {"breathing": False} if depth == 0 else {"breathing_depth": depth}


def cmd_sweep(args: argparse.Namespace) -> int:
    from studyllm_core.services.capture.embedding import EmbeddingService
    from studyllm_core.services.sweep.service import SweepService

    check_output_path(args.out, folder=True)  # before any API call
    table_in = read_input(args)  # file and column problems stop here, before any API call
    config = sweep_config(args)
    embedder = EmbeddingService.from_name(  # missing keys stop here, before the database starts
        args.embed_provider, model=args.embed_model, base_url=args.base_url, timeout=args.timeout
    )
    source = {"path": str(table_in.source), "text_column": table_in.text_column, "label_column": args.label_column}
    with SweepService(embedder, args.summarizer, timeout=args.timeout) as service:
        progress = Progress("embedding", quiet=args.json)
        try:
            outcome = service.run(  # checks K, PCA and restarts against the texts before any API call
                table_in.texts, config, args.out, labels=table_in.labels, source=source,
                progress=progress, notice=progress.note,
            )
        finally:
            progress.close()
    for note in outcome.report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    emit(outcome.summary(), args.json, _human)
    failures = list(outcome.failures.items())
    for row, reason in failures[:MAX_WARNINGS]:
        print(f"warning: row {row}: {reason} (label -1)", file=sys.stderr)
    if len(failures) > MAX_WARNINGS:
        print(f"warning: {len(failures) - MAX_WARNINGS:,} more rows could not be embedded", file=sys.stderr)
    return 0


def _human(p: dict[str, Any]) -> str:
    c = p["counts"]
    lines = [
        f"texts {c['texts']:,}  clustered {c['clustered']:,}  failed {c['failed']:,}  cached {c['cached']:,}  "
        f"embedded {c['embedded']:,}  api_requests {c['api_requests']:,}  summarize_calls {c['summarize_calls']:,}  "
        f"run group {p['group_id']}",
        "",
    ]
    has_labels = any(row.get("nmi") is not None for row in p["per_k"])
    columns = ["K", "stability", "BIC", "objective", "silhouette", "score"] + (["ACC", "NMI", "ARI"] if has_labels else [])
    rows = [
        {
            "K": str(r["k"]) + (" *" if r["k"] == p["best_k"] else ""),
            "stability": _num(r.get("subsample_stability")),
            "BIC": _num(r.get("bic"), ".1f"),
            "objective": _num(r.get("objective"), ".2f"),
            "silhouette": _num(r["silhouette"]),
            "score": _num(r["score"]),
            "ACC": _num(r.get("acc")),
            "NMI": _num(r.get("nmi")),
            "ARI": _num(r.get("ari")),
        }
        for r in p["per_k"]
    ]
    choice = p.get("choice") or {}
    lines += [table(rows, columns), "", f"best K (*): {choice.get('text', 'none')}", f"rule: {choice.get('rule', '-')}"]
    files = p["files"]
    lines.append(f"wrote {files['report']}, {files['clusters']} and {len(files['labels'])} labels_kK.npy files")
    return "\n".join(lines)


def _num(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)
