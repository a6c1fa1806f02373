"""The Dagster pipeline against `studyllm sweep` of the same data, K range and settings, on the paths users take.

Run: python benchmarks/bench_pipeline.py [--mode demo|daemon|launched] [--pairs N]

Every mode runs the bundled demo corpus (450 texts, 10 topics) with local MiniLM embeddings,
k-LLMmeans with the extractive summariser (2 rounds), 5 restarts, PCA 50, seed 0, against
`studyllm sweep` with exactly those settings, timed in the same run. This machine is shared and a
single pair varies, so --pairs pairs run back to back and the median ratio is the figure.

- demo (default): `studyllm demo --k-min 6 --k-max 14` against the same sweep, each in a fresh
  STUDYLLM_HOME (so each starts its own Postgres, loads the model and embeds every text).
  Goal: demo <= 1.5x sweep (1.3x wanted).
- daemon: `studyllm dev` runs; the demo dataset is prepared; the (demo, K) partitions for K = 9..16
  are submitted two ways and timed from submission to the materialization of the last K, against
  `studyllm sweep` of K = 9..16 in the same home (its embeddings cached, as the prepared dataset's):
    backfill: GraphQL launchPartitionBackfill of the partition range, what `studyllm backfill` and
      the UI's Materialize of a K range send; the daemon's backfill loop submits its one run
      (Dagster looks every 30 s, not configurable);
    run: GraphQL launchRun of the sweep_k job over the same range (the range tags a single-run
      backfill puts on its run; what the schedule sends); the run queue is read every second.
  Printed per path: submission -> run start (daemon pickup, queue, worker start), run start -> last
  K, the total and its ratio to the sweep (goal <= 1.5x), and the peak RSS of the run's process.
- launched: the cost of giving `studyllm demo` a repository origin: the demo's three jobs launched
  through the code location (`dagster job launch`, default run coordinator: a code server process
  and a run process each) against `studyllm demo` (the same jobs, run in the demo's own process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _measure import STUDYLLM
from studyllm_core.services.datasets import demo_corpus_path
from studyllm_pipeline import backfill as bf

DAGSTER = str(Path(sys.executable).with_name("dagster"))
SETTINGS = ["--restarts", "5", "--pca-dim", "50", "--summarizer", "extractive", "--llm-rounds", "2", "--seed", "0"]


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STUDYLLM_DATABASE_URL", "DAGSTER_HOME")}
    env.update(STUDYLLM_HOME=str(home), HF_HUB_OFFLINE="1", STUDYLLM_EMBED_PROVIDER="local",
               STUDYLLM_EMBED_MODEL="all-MiniLM-L6-v2", STUDYLLM_SUMMARIZER="extractive")
    return env


def timed(args: list[str], home: Path) -> tuple[float, dict, int]:
    """Wall seconds, the --json output and the peak RSS (bytes) of one studyllm command."""
    start = time.perf_counter()
    proc = subprocess.Popen([STUDYLLM, *args, "--json"], env=environment(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = PeakRss(lambda: [psutil.Process(proc.pid)])
    while proc.poll() is None:
        peak.sample()
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {err[-2000:]}")
    return seconds, json.loads(out.strip().splitlines()[-1]), peak.bytes


class PeakRss:
    """The largest resident set of any process `processes()` returns, sampled."""

    def __init__(self, processes) -> None:  # noqa: ANN001
        self.processes = processes
        self.bytes = 0
        self.cpu: dict[int, float] = {}

    def sample(self) -> None:
        try:
            for proc in self.processes():
                tree = [proc, *proc.children(True)]
                self.bytes = max(self.bytes, sum(one.memory_info().rss for one in tree))
                for one in tree:
                    self.cpu[one.pid] = sum(one.cpu_times()[:2])  # the last seen: a finished process is gone
        except psutil.Error:
            pass

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the sampled processes, as last seen."""
        return sum(self.cpu.values())


def sweep_args(k_min: int, k_max: int, out: Path) -> list[str]:
    return ["sweep", str(demo_corpus_path()), "--label-column", "label", "--embed-provider", "local", "--embed-model",
            "all-MiniLM-L6-v2", "--k-min", str(k_min), "--k-max", str(k_max), *SETTINGS, "--out", str(out)]


def demo_mode(work: Path, pairs: int) -> None:
    print("demo corpus: 450 texts, 10 topics; K=6..14, 5 restarts, PCA 50, k-LLMmeans (extractive, 2 rounds)")
    print(f"{'pair':<6}{'run':<48}{'seconds':>9}{'best K':>8}{'NMI':>8}")
    ratios = []
    for pair in range(1, pairs + 1):
        demo_s, demo, _ = timed(["demo", "--k-min", "6", "--k-max", "14"], work / f"demo-home-{pair}")
        sweep_s, sweep, _ = timed(sweep_args(6, 14, work / f"sweep-out-{pair}"), work / f"sweep-home-{pair}")
        demo_nmi = (demo["best"]["label_metrics"] or {}).get("nmi", float("nan"))
        sweep_nmi = next((r for r in sweep["per_k"] if r["k"] == sweep["best_k"]), {}).get("nmi") or float("nan")
        print(f"{pair:<6}{'studyllm demo (Dagster: its three runs)':<48}{demo_s:>9.1f}{demo['best_k']:>8}{demo_nmi:>8.3f}")
        print(f"{pair:<6}{'studyllm sweep (no Dagster)':<48}{sweep_s:>9.1f}{sweep['best_k']:>8}{sweep_nmi:>8.3f}"
              f"   ratio {demo_s / sweep_s:.2f}x", flush=True)
        ratios.append(demo_s / sweep_s)
    print(f"demo / sweep: {statistics.median(ratios):.2f}x median of {len(ratios)} pairs "
          f"({', '.join(f'{r:.2f}' for r in ratios)})  (goal <= 1.5x, 1.3x wanted)")


# -- daemon mode --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dev:
    """`studyllm dev` in its own process group, stopped on exit."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        """`env` replaces the environment of `environment(home)` (bench_scale: its embedder and database)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (home.parent / f"{home.name}-dev.log").open("w")
        self.proc = subprocess.Popen([STUDYLLM, "dev", "--port", str(self.port)], env=env or environment(home),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> Dev:
        graphql = bf.GraphQL(self.base)
        deadline = time.monotonic() + 300
        while True:
            try:
                bf.check_daemon(graphql)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"studyllm dev did not come up; see {self.log.name}") from None
                time.sleep(1)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.proc.terminate()  # studyllm dev stops its process group
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        self.log.close()
        if exc_type is None:  # kept to read when something failed; otherwise it goes with the run
            Path(self.log.name).unlink(missing_ok=True)

    def worker_processes(self, before: set[int]) -> list[psutil.Process]:
        """Processes of this dev that were not there before a submission (the run's process)."""
        try:
            return [p for p in psutil.Process(self.proc.pid).children(True) if p.pid not in before]
        except psutil.Error:
            return []

    def pids(self) -> set[int]:
        return {p.pid for p in psutil.Process(self.proc.pid).children(True)}

    def service_cpu_s(self, pids: set[int]) -> dict[int, float]:
        """CPU seconds (user + system, not their children's) so far of each of the dev's own processes among
        `pids` (webserver, daemon, code servers): around a run, what they take from the machine meanwhile."""
        times = {}
        for pid in pids | {self.proc.pid}:
            with contextlib.suppress(psutil.Error):
                times[pid] = sum(psutil.Process(pid).cpu_times()[:2])
        return times


RUN_QUERY = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status
  stats { ... on RunStatsSnapshot { enqueuedTime launchTime startTime endTime } }
  assetMaterializations { assetKey { path } timestamp } } } }"""
STATUS_QUERY = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""


LAUNCH_RUN = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


def launch_run(graphql, job: str, tags: dict[str, str], run_config: dict | None = None) -> str:  # noqa: ANN001
    """GraphQL launchRun of `job` with `tags` and `run_config` (the Launchpad's mutation, the schedule's
    request); the run id. The run queue (dequeued every second) starts it."""
    params = {"selector": {**bf.REPOSITORY, "jobName": job},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    if run_config:
        params["runConfigData"] = run_config
    launched = graphql(LAUNCH_RUN, {"p": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launchRun of {job} refused: {launched}")
    return launched["run"]["runId"]


def follow(graphql, dev: Dev, submitted: float, run_id_of, before: set[int],  # noqa: ANN001
           until: str | None = "cluster_metrics", timeout: float = 900) -> dict:
    """Poll until the run of a submission finished; its timings (seconds after submission: to the last
    materialization of `until`, or to the run's end when None, both from the run's own timestamps) and peak RSS.
    The run's status is asked for once a second and the RSS sampled four times a second: the webserver, its
    Postgres and this loop share the machine with the run, so a tighter poll would slow what it measures."""
    peak = PeakRss(lambda: dev.worker_processes(before))
    deadline = time.monotonic() + timeout
    run_id, next_poll = None, 0.0
    while True:
        peak.sample()
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + 1.0
            run_id = run_id or run_id_of()
            if run_id and graphql(STATUS_QUERY, {"id": run_id})["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
        if time.monotonic() > deadline:
            raise SystemExit(f"the run did not finish in {timeout / 60:.0f} minutes")
        time.sleep(0.25)
    run = graphql(RUN_QUERY, {"id": run_id})["runOrError"]
    if run["status"] != "SUCCESS":
        raise SystemExit(f"run {run_id} ended {run['status']}")
    stats = run["stats"]
    results = stats["endTime"] if until is None else max(  # the last K
        float(m["timestamp"]) / 1000 for m in run["assetMaterializations"] if m["assetKey"]["path"] == [until])
    return {"run_id": run_id, "to_start": stats["startTime"] - submitted, "start_to_results": results - stats["startTime"],
            "total": results - submitted, "rss": peak.bytes, "cpu_s": peak.cpu_s}


def daemon_mode(work: Path, pairs: int) -> None:
    from studyllm_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, partition_key

    home = work / "daemon-home"
    print("demo corpus prepared (studyllm demo --k-min 2 --k-max 3), then with studyllm dev running: K=9..16, "
          "5 restarts, k-LLMmeans (extractive, 2 rounds)", flush=True)
    timed(["demo", "--k-min", "2", "--k-max", "3"], home)
    rows = {"sweep": [], "backfill": [], "run": []}
    with Dev(home) as dev:
        graphql = bf.GraphQL(dev.base)
        for pair in range(1, pairs + 1):
            sweep_s, _, sweep_rss = timed(sweep_args(9, 16, work / f"daemon-sweep-{pair}"), home)
            rows["sweep"].append({"total": sweep_s, "rss": sweep_rss})

            ks = list(range(9, 17))
            axis = bf.ensure_partitions(graphql, "demo", ks)
            before, submitted = dev.pids(), time.time()
            backfill_id = bf.launch(graphql, "demo", ks, axis, prepare=False, source="bench_pipeline")

            def backfill_run() -> str | None:
                runs = bf.read_state(graphql, backfill_id, "demo", []).runs
                return runs[0]["runId"] if runs else None

            rows["backfill"].append(follow(graphql, dev, submitted, backfill_run, before))

            before, submitted = dev.pids(), time.time()
            launched = launch_run(graphql, "sweep_k", {RANGE_START_TAG: partition_key("demo", 9),
                                                       RANGE_END_TAG: partition_key("demo", 16)})
            rows["run"].append(follow(graphql, dev, submitted, lambda: launched, before))
            s, b, r = rows["sweep"][-1], rows["backfill"][-1], rows["run"][-1]
            print(f"pair {pair}: sweep {s['total']:.1f} s | backfill {b['total']:.1f} s = {b['to_start']:.1f} to start + "
                  f"{b['start_to_results']:.1f} | ranged run {r['total']:.1f} s = {r['to_start']:.1f} to start + "
                  f"{r['start_to_results']:.1f}", flush=True)
        graphql.close()

    def med(path: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[path])

    def ratio(path: str) -> str:
        ratios = [row["total"] / sweep["total"] for row, sweep in zip(rows[path], rows["sweep"], strict=True)]
        return f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})"

    print(f"\n{'path (medians of ' + str(pairs) + ' pairs)':<44}{'to start':>10}{'start->last K':>16}{'total':>8}{'peak RSS':>10}"
          "   x sweep (per pair)")
    print(f"{'studyllm sweep K=9..16 (same home)':<44}{'':>10}{'':>16}{med('sweep', 'total'):>8.1f}"
          f"{med('sweep', 'rss') / 2**20:>8.0f}MB")
    for path, label in (("backfill", "backfill (launchPartitionBackfill, daemon)"), ("run", "ranged run (launchRun, run queue)")):
        print(f"{label:<44}{med(path, 'to_start'):>10.1f}{med(path, 'start_to_results'):>16.1f}{med(path, 'total'):>8.1f}"
              f"{med(path, 'rss') / 2**20:>8.0f}MB   {ratio(path)}")
    print("goal: <= 1.5x sweep. The backfill's time to start includes the daemon's backfill loop, which looks every "
          "30 s (Dagster's fixed DEFAULT_DAEMON_INTERVAL_SECONDS).")


# -- launched mode ------------------------------------------------------------------------------

LAUNCH = r"""
import json, subprocess, sys, time, uuid, yaml, dagster as dg
from studyllm_pipeline.instance import apply_environment, prepare_dagster_home
from studyllm_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, new_k_values, partition_key
home, _, env = prepare_dagster_home()
apply_environment(env)
# The same storage, a run coordinator that launches at once (no daemon in a demo).
config = yaml.safe_load((home / "dagster.yaml").read_text())
config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
config["concurrency"].pop("runs", None)
launch_home = home / "launch"
launch_home.mkdir(exist_ok=True)
(launch_home / "dagster.yaml").write_text(yaml.safe_dump(config))
with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions("datasets", ["demo"])
    instance.add_dynamic_partitions("k", new_k_values(instance.get_dynamic_partitions("k"), range(6, 15)))
    origins = []
    for job, tags in (("prepare_dataset", {"dagster/partition": "demo"}),
                      ("sweep_k", {RANGE_START_TAG: partition_key("demo", 6), RANGE_END_TAG: partition_key("demo", 14)}),
                      ("sweep_report_job", {"dagster/partition": "demo"})):
        run_id = str(uuid.uuid4())
        subprocess.run([sys.argv[1], "job", "launch", "-w", str(home / "workspace.yaml"), "-j", job,
                        "--tags", json.dumps(tags), "--run-id", run_id],
                       env={**__import__("os").environ, "DAGSTER_HOME": str(launch_home)}, check=True, capture_output=True)
        while not instance.get_run_by_id(run_id).is_finished:
            time.sleep(0.1)
        run = instance.get_run_by_id(run_id)
        assert run.status.value == "SUCCESS", (job, run.status)
        origins.append(run.remote_job_origin is not None)
    print(json.dumps({"status": "SUCCESS", "origin": all(origins)}))
"""


def launched_mode(work: Path, pairs: int) -> None:
    print("the demo's jobs (prepare_dataset, sweep_k over K=6..14, sweep_report_job) in the demo's process vs "
          "launched through the code location")
    ratios = []
    for pair in range(1, pairs + 1):
        demo_s, _, _ = timed(["demo", "--k-min", "6", "--k-max", "14"], work / f"inproc-home-{pair}")
        home = work / f"launched-home-{pair}"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", LAUNCH, DAGSTER], env=environment(home), capture_output=True, text=True)
        launched_s = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        sweep_s, _, _ = timed(sweep_args(6, 14, work / f"launched-sweep-{pair}"), work / f"launched-sweep-home-{pair}")
        print(f"pair {pair}: in-process demo {demo_s:.1f} s ({demo_s / sweep_s:.2f}x sweep) | launched {launched_s:.1f} s "
              f"({launched_s / sweep_s:.2f}x; {outcome['status']}, repository origin: {outcome['origin']}) | sweep "
              f"{sweep_s:.1f} s", flush=True)
        ratios.append((demo_s / sweep_s, launched_s / sweep_s))
    print(f"median: in-process {statistics.median(r[0] for r in ratios):.2f}x, launched "
          f"{statistics.median(r[1] for r in ratios):.2f}x sweep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("demo", "daemon", "launched"), default="demo")
    parser.add_argument("--pairs", type=int, default=3, help="pairs to run (the median is reported)")
    args = parser.parse_args()
    # every home (each with its own Postgres, stopped when its last process exits) and output: removed with the run
    with tempfile.TemporaryDirectory(prefix="sl-bench-pipeline-", ignore_cleanup_errors=True) as tmp:
        {"demo": demo_mode, "daemon": daemon_mode, "launched": launched_mode}[args.mode](Path(tmp), args.pairs)


if __name__ == "__main__":
    main()
