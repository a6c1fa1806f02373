"""`studyllm dev` and `studyllm demo`: CLI commands that need Dagster, registered through the
`studyllm.commands` entry point so `studyllm_core` itself never imports Dagster."""

import argparse
import os
import signal
import subprocess
import sys
import time

from studyllm_core.output import emit

STOP_GRACE_S = 20.0
DEMO_ENVIRONMENT = {
    "STUDYLLM_EMBED_PROVIDER": "local",
    "STUDYLLM_EMBED_MODEL": "all-MiniLM-L6-v2",
    "STUDYLLM_SUMMARIZER": "extractive",
    "HF_HUB_OFFLINE": "1",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev",
        help="start the Dagster UI and daemon on the studyllm database",
        description="Start (or attach to) the embedded Postgres, then run the Dagster webserver and daemon "
        "with a durable DAGSTER_HOME under $STUDYLLM_HOME. Ctrl-C, SIGTERM or SIGHUP (a closed terminal) stops "
        "everything it started; if it is killed outright (kill -9), a small reaper process stops it all.",
    )
    p.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.set_defaults(handler=cmd_dev)

    p = sub.add_parser(
        "demo",
        help="materialise the whole pipeline on the bundled demo corpus, offline",
        description="Run the code location's jobs (prepare_dataset, sweep_k over the K range as one run, "
        "sweep_report_job) for the bundled labelled demo corpus with local MiniLM embeddings and the extractive "
        "summariser (no network, no API keys), then print the report of exactly K_MIN..K_MAX and where the "
        "artifacts are.",
    )
    p.add_argument("--k-min", type=int, default=None, metavar="K_MIN", help="smallest K (default 6)")
    p.add_argument("--k-max", type=int, default=None, metavar="K_MAX", help="largest K (default 14)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser(
        "backfill",
        help="sweep K for a dataset as a Dagster backfill the daemon runs (as the UI launches one)",
        description="Create a backfill of the (DATASET, K) partitions of the per-K assets for K in [K_MIN, K_MAX] "
        "through the Dagster webserver (the UI's own request), so the daemon of `studyllm dev` (or of a deployment) "
        "runs it as one run (or runs of STUDYLLM_SWEEP_KS_PER_RUN K each) and its status tells the truth. Prints the backfill id; with --wait shows progress and exits 0 only when "
        "every K is done (1 naming the K that are not). K beyond the dataset's usable texts is refused before "
        "anything is queued.",
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset partition, e.g. demo")
    p.add_argument("--k-min", type=int, required=True, metavar="K_MIN")
    p.add_argument("--k-max", type=int, required=True, metavar="K_MAX")
    p.add_argument("--wait", action="store_true", help="wait for the backfill, showing progress")
    p.add_argument("--json", action="store_true", help="print one JSON object: id, status and per-K status")
    p.add_argument("--url", default=None,
                   help="the Dagster webserver (default: $STUDYLLM_DAGSTER_URL or http://127.0.0.1:3000)")
    p.set_defaults(handler=cmd_backfill)


def cmd_dev(args: argparse.Namespace) -> int:
    from studyllm_pipeline.instance import prepare_dagster_home

    home, target, env = prepare_dagster_home()
    child_env = {**os.environ, **env}
    command = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(home / "workspace.yaml"),
        "-h", args.host, "-p", str(args.port),
    ]
    print(f"Dagster UI: http://{args.host}:{args.port}  (DAGSTER_HOME={home}; Ctrl-C stops)", flush=True)
    parent = os.getpid()
    proc = subprocess.Popen(
        command,
        env=child_env,
        start_new_session=True,  # its own process group: stopping it stops webserver, daemon and code server
        preexec_fn=lambda: _prepare_child(parent),
    )
    # If this process dies without stopping the group (kill -9, a closed terminal), the reaper does.
    reaper = subprocess.Popen(
        [sys.executable, "-m", "studyllm_pipeline.reaper", str(proc.pid), str(STOP_GRACE_S)],
        stdin=subprocess.PIPE, start_new_session=True,
    )
    stopping = {"signal": None}

    def on_signal(signum, _frame):  # noqa: ANN001
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while proc.poll() is None and stopping["signal"] is None:
            time.sleep(0.2)
    finally:
        _stop_group(proc)
        reaper.stdin.close()  # the group is gone: the reaper finds nothing to stop and exits
        reaper.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping["signal"] is not None else (proc.returncode or 0)


def _prepare_child(parent: int) -> None:
    """In the child before exec: default signal handling, and SIGTERM when `studyllm dev` dies (Linux)."""
    # A launcher started from a non-interactive shell inherits SIGINT ignored; dagster dev needs it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the setting took effect
            os._exit(1)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT the whole process group (dagster dev shuts its children down), then SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # leftovers of a group whose leader already exited
        return
    for sig, wait in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        _kill_group(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def cmd_demo(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from studyllm_core.progress import Progress
    from studyllm_core.db.server import import_pgserver
    from studyllm_core.gc_tuning import heavy_imports
    from studyllm_pipeline.instance import prepare_dagster_home

    start = time.perf_counter()
    progress = Progress("demo", quiet=args.json)  # one line per step and per K on a terminal

    def say(what: str) -> None:
        progress.note(f"demo: {what}", elapsed=True)

    say("starting the embedded Postgres and loading Dagster and the pipeline")
    os.environ.update(DEMO_ENVIRONMENT)  # offline: the packaged model and the extractive summariser
    os.environ.pop("STUDYLLM_EMBED_BASE_URL", None)
    import_pgserver()  # here, so the two threads below never import the same modules at once
    with ThreadPoolExecutor(1, thread_name_prefix="studyllm-postgres") as pool:
        # Postgres starts (a child process, a second or more on a fresh home) while Dagster imports.
        prepared = pool.submit(prepare_dagster_home)
        with heavy_imports():  # Dagster and the pipeline's definitions: long-lived objects only
            from studyllm_pipeline.demo import run_demo

        report = run_demo(k_min=args.k_min, k_max=args.k_max, prepared=prepared.result(), started=start, notice=say)
    say("done")
    emit(report, args.json, _demo_text)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from studyllm_pipeline import backfill as bf

    _, prepare = bf.check_request(args.dataset, args.k_min, args.k_max)  # before Dagster is asked anything
    graphql = bf.GraphQL(bf.webserver_url(args.url))
    try:
        bf.check_daemon(graphql)
        requested = list(range(args.k_min, args.k_max + 1))
        axis = bf.ensure_partitions(graphql, args.dataset, requested)
        backfill_id = bf.launch(graphql, args.dataset, requested, axis, prepare=prepare)
        if not args.wait:
            state = bf.read_state(graphql, backfill_id, args.dataset, requested)
            emit(state.to_dict(), args.json, lambda _: f"backfill {backfill_id}: K {args.k_min}..{args.k_max} of "
                 f"{args.dataset} queued; the daemon runs it (see Overview > Backfills in the UI)")
            return 0
        # Progress goes to stderr with --json, so stdout holds the one JSON object.
        progress = sys.stderr if args.json else sys.stdout
        print(f"backfill {backfill_id}: K {args.k_min}..{args.k_max} of {args.dataset}", file=progress, flush=True)
        state = bf.wait(graphql, backfill_id, args.dataset, requested, on_change=lambda s: _show_progress(s, progress))
    finally:
        graphql.close()
    emit(state.to_dict(), args.json, _backfill_text)
    return 0 if not state.failed_k else 1


def _show_progress(state, stream) -> None:  # noqa: ANN001 - a backfill.BackfillState and a text stream
    if not state.runs:
        what = "waiting for the daemon to submit the run (it looks every 30 s)"
    elif state.runs_finished:
        what = "run finished; waiting for the daemon to close the backfill"
    else:
        what = ", ".join(f"run {r['runId'][:8]} {r['status'].lower()}" for r in state.runs)
        what += f"; {state.progress}" if state.progress else ""
    print(f"  {time.strftime('%H:%M:%S')} {what}", file=stream, flush=True)


def _backfill_text(report: dict) -> str:
    lines = [f"{k:>4}  {status}" for k, status in report["per_k"].items()]
    bad = [k for k, status in report["per_k"].items() if status != "done"]
    verdict = "every K done" if not bad else f"K not done: {', '.join(bad)}"
    return "\n".join([*lines, f"backfill {report['id']} {report['status'].lower()}: {verdict}"])


def _demo_text(report: dict) -> str:
    lines = [
        f"demo sweep over K={report['k_min']}..{report['k_max']} on {report['texts']} texts "
        f"({report['labels']} labelled topics), {report['seconds']:.1f} s",
        f"best K: {(report.get('choice') or {}).get('text', 'none')}  (--json has the rule in words)",
    ]
    best = report.get("best") or {}
    if best.get("label_metrics"):
        m = best["label_metrics"]
        lines.append(f"at best K: ACC {m['acc']:.3f}  NMI {m['nmi']:.3f}  ARI {m['ari']:.3f}")
    lines.append("")
    lines.append(f"{'K':>3} {'stab.':>7} {'BIC':>10} {'silh.':>7} {'ACC':>6} {'NMI':>6}")
    for row in report["per_k"]:
        if row["status"] != "done":
            lines.append(f"{row['k']:>3} {row['status']}" + (f": {row['reason']}" if row.get("reason") else ""))
            continue
        lm = row.get("label_metrics") or {}
        lines.append(
            f"{row['k']:>3} {_or_nan(row['stability']):>7.3f} {_or_nan(row['bic']):>10.1f} {row['silhouette']:>7.3f} "
            f"{_or_nan(lm.get('acc')):>6.3f} {_or_nan(lm.get('nmi')):>6.3f}"
        )
    lines.append("")
    lines.append(f"artifacts: {report['artifacts_dir']}")
    runs = ", ".join(r[:8] for r in report["run_ids"])
    lines.append(f"provenance: studyllm provenance {report['group_id']}   UI: studyllm dev (runs {runs})")
    return "\n".join(lines)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
