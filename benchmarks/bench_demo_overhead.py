"""Where `studyllm demo` and `studyllm sweep` spend time besides the work itself: garbage
collection, and the Dagster runs' database traffic.

Run: python benchmarks/bench_demo_overhead.py

Each command runs in its own process with a fresh STUDYLLM_HOME (the bundled corpus, local MiniLM,
K = 6..14 as in bench_pipeline.py), under a probe that counts the cyclic collector's collections
and their seconds per generation (`gc.callbacks`) and, for the demo, the statements sent to
Dagster's database. After the demo, its runs are read back from the instance: stored events and
wall seconds of each run. Printed: one row per command, then the run figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from studyllm_core.services.datasets import demo_corpus_path

PROBE = r"""
import gc, json, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine

stats = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "dagster_statements": 0}
started = {}

def on_gc(phase, info):
    if phase == "start":
        started["t"] = time.perf_counter()
    else:
        stats["collections"][info["generation"]] += 1
        stats["seconds"][info["generation"]] += time.perf_counter() - started["t"]

gc.callbacks.append(on_gc)

@event.listens_for(Engine, "before_cursor_execute")
def count(conn, cursor, statement, parameters, context, executemany):
    if conn.engine.url.database == "dagster":
        stats["dagster_statements"] += 1

from studyllm_core.cli import main

start = time.perf_counter()
code = main(sys.argv[2:])
stats["seconds_total"] = time.perf_counter() - start
gc.callbacks.remove(on_gc)
if sys.argv[2] == "demo":
    import dagster as dg
    from studyllm_pipeline.instance import apply_environment, prepare_dagster_home

    apply_environment(prepare_dagster_home()[2])
    with dg.DagsterInstance.get() as instance:
        runs = []
        for run in instance.get_runs():
            run_stats = instance.get_run_stats(run.run_id)
            runs.append({"partition": run.tags.get("dagster/partition"), "events": len(instance.all_logs(run.run_id)),
                         "seconds": run_stats.end_time - run_stats.start_time})
    stats["runs"] = runs
with open(sys.argv[1], "w") as handle:
    json.dump(stats, handle)
sys.exit(code)
"""

SWEEP_ARGS = [
    "--label-column", "label", "--embed-provider", "local", "--embed-model", "all-MiniLM-L6-v2", "--k-min", "6",
    "--k-max", "14", "--restarts", "5", "--pca-dim", "50", "--summarizer", "extractive", "--llm-rounds", "2",
    "--seed", "0",
]


def probe(args: list[str], home: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env.update(STUDYLLM_HOME=str(home), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", PROBE, str(out), *args, "--json"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {result.stderr[-2000:]}")
    return json.loads(out.read_text())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sl-bench-overhead-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)  # the two homes (each with its Postgres) and the sweep's output: removed with the run
        demo = probe(["demo", "--k-min", "6", "--k-max", "14"], work / "demo-home", work / "demo.json")
        sweep = probe(["sweep", str(demo_corpus_path()), *SWEEP_ARGS, "--out", str(work / "sweep-out")],
                      work / "sweep-home", work / "sweep.json")
    print(f"{'command':<16}{'seconds':>9}{'gc gen0/1/2 collections':>26}{'gc seconds':>12}")
    for name, stats in (("studyllm demo", demo), ("studyllm sweep", sweep)):
        counts = "/".join(str(n) for n in stats["collections"])
        print(f"{name:<16}{stats['seconds_total']:>9.1f}{counts:>26}{sum(stats['seconds']):>12.2f}")
    runs = demo["runs"]
    print(f"demo: {len(runs)} run(s), {demo['dagster_statements']:,} statements to Dagster's database "
          f"({demo['dagster_statements'] / len(runs):.0f} per run)")
    print(f"runs: events stored {statistics.median(r['events'] for r in runs):.0f} each (median); "
          f"wall {statistics.median(r['seconds'] for r in runs):.2f} s median")


if __name__ == "__main__":
    main()
