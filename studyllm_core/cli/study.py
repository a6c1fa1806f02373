"""`studyllm stats` compares providers and models over the recorded calls (calls, success, latency,
tokens, cost); `studyllm calls` lists the newest calls, or those whose prompt matches a search;
`studyllm compare` says whether the models of a swept reply dataset answer differently, and how."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from studyllm_core.cli.common import add_call_filter_args, positive_int
from studyllm_core.config import ENV_PRICES
from studyllm_core.output import emit, records, table, when


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="provider/model comparison: calls, success rate, p50/p95 latency, tokens, cost",
        description="Compare providers and models over the recorded calls. Costs use the packaged price table "
        f"merged with ${ENV_PRICES}; a model without a price shows its cost as unknown, never as 0.",
    )
    add_call_filter_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser(
        "calls",
        help="the newest recorded calls, or those whose prompt matches --search",
        description="List recorded calls, newest first, with their prompt and reply cut to --chars characters. "
        "--search uses web-search syntax over prompts (words, \"a phrase\", -word, or).",
    )
    p.add_argument("--search", metavar="QUERY", help="only calls whose prompt matches QUERY")
    p.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N calls (default 20)")
    p.add_argument("--chars", type=positive_int, default=80, metavar="N", help="cut prompt and reply to N characters")
    add_call_filter_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_calls)

    p = sub.add_parser(
        "compare",
        help="do the models of a reply dataset answer differently, and how (by cluster, model and prompt)",
        description="Break one clustering of a swept dataset of replies (a prompt_run's) down by model and prompt: "
        "the share of each model's replies per cluster, the Jensen-Shannon divergence between every two models' "
        "cluster distributions, each prompt's spread over clusters, and a chi-square test of model vs cluster.",
    )
    p.add_argument("dataset", metavar="DATASET", help="a dataset of replies, swept (the Dagster prompt_run partition)")
    p.add_argument("--k", type=positive_int, metavar="K", help="the clustering at K (default: the K its sweep report chose)")
    p.add_argument("--prompts", type=positive_int, default=10, metavar="N", help="show the N most spread prompts (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_compare)


def cmd_stats(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.analytics import StudyService

    service = StudyService(open_database())
    flt = service.call_filter(provider=args.provider, model=args.model, since=args.since, until=args.until, group=args.group)
    summary = service.summary_stats(flt)
    if summary["calls"] == 0 and not args.json:  # an empty table, exit 0; the note says why
        narrowed = any(v is not None for v in (args.since, args.until, args.provider, args.model, args.group))
        print("note: " + ("no recorded calls match these filters; widen --since/--until/--provider/--model/--group"
                          if narrowed else "no calls are recorded yet; record some with `studyllm prompts run` or "
                          "`studyllm embed`"), file=sys.stderr)
    payload = {"summary": summary, "providers": records(service.provider_comparison(flt)), "prices": service.prices.sources}
    emit(payload, args.json, _human)
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.analytics import StudyService

    service = StudyService(open_database())
    flt = service.call_filter(provider=args.provider, model=args.model, since=args.since, until=args.until, group=args.group)
    if args.search is not None:
        frame = service.search_prompts(args.search, flt, limit=args.limit, text_chars=args.chars)
    else:
        frame = service.recent_calls(flt, limit=args.limit, text_chars=args.chars)
    payload = {"search": args.search, "calls": records(frame)}
    emit(payload, args.json, lambda p: table(
        [{**r, "created_at": when(r["created_at"]), "latency_ms": _num(r["latency_ms"])} for r in p["calls"]],
        ["id", "created_at", "provider", "model", "status", "latency_ms", "prompt", "response"]))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from studyllm_core.config import get_settings
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.comparison import compare_models
    from studyllm_core.services.sweep.result_store import SweepResults

    engine = open_database()
    comparison = compare_models(engine, SweepResults(engine, get_settings().artifacts_dir), args.dataset, args.k)
    emit(comparison.to_dict(), args.json, lambda p: _comparison_text(p, args.prompts))
    return 0


def _comparison_text(p: dict[str, Any], n_prompts: int) -> str:
    clusters = sorted({r["cluster"] for r in p["shares"]})
    wide: dict[str, dict[str, Any]] = {}
    for r in p["shares"]:
        row = wide.setdefault(f"{r['provider']}:{r['model']}", {"model": f"{r['provider']}:{r['model']}", "replies": 0})
        row[f"c{r['cluster']}"] = f"{r['share']:.0%}"
        row["replies"] += r["replies"]
    pairs = [{**r, "js_bits": f"{r['js_divergence']:.3f}"} for r in p["divergence"]]
    prompts = [{**r, "prompt": r["prompt"][:60], "spread_bits": f"{r['spread_bits']:.2f}"} for r in p["prompts"][:n_prompts]]
    return "\n".join([
        p["summary"], "", "share of each model's replies per cluster:",
        table(list(wide.values()), ["model", "replies", *[f"c{c}" for c in clusters]]), "",
        "divergence between models (bits, 0 = alike, 1 = no cluster in common):",
        table(pairs, ["model_a", "model_b", "js_bits", "reading"]), "",
        f"prompts by spread over clusters (the {min(n_prompts, len(p['prompts']))} most spread of {len(p['prompts'])}):",
        table(prompts, ["prompt", "replies", "clusters_hit", "spread_bits", "top_cluster"]),
    ])


def _human(p: dict[str, Any]) -> str:
    s = p["summary"]
    first, last = (when(s[k]) for k in ("first_call_at", "last_call_at"))
    lines = [
        f"calls {s['calls']:,}  succeeded {s['succeeded']:,} ({_rate(s['success_rate'])})  failed {s['failed']:,}  "
        f"providers {s['providers']}  models {s['models']}  from {first} to {last}",
        f"tokens in {s['input_tokens']:,}  out {s['output_tokens']:,}  cost {_money(s['cost_usd'])}"
        + (f" (priced part {_money(s['priced_cost_usd'])})" if s["cost_usd"] is None else ""),
        "",
    ]
    rows = [
        {
            **r,
            "success": _rate(r["success_rate"]),
            "p50_ms": _num(r["p50_latency_ms"]),
            "p95_ms": _num(r["p95_latency_ms"]),
            "tokens_in": f"{r['input_tokens']:,}",
            "tokens_out": f"{r['output_tokens']:,}",
            "cost": _money(r["cost_usd"]),
        }
        for r in p["providers"]
    ]
    lines.append(table(rows, ["provider", "model", "calls", "success", "p50_ms", "p95_ms", "tokens_in", "tokens_out", "cost"]))
    if s["unpriced_models"]:
        lines.append(
            f"\ncost unknown for {', '.join(s['unpriced_models'])}: no price; add one in a file named by ${ENV_PRICES}"
        )
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
