"""What the benchmarks share: the studyllm command beside this interpreter, one process timed with its peak
RSS, a figures row, growth exponents.

bench_scale.py and _scale_sweep.py both import these, so a figure means the same in both.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STUDYLLM = str(Path(sys.executable).with_name("studyllm"))  # the installed CLI of the running environment

def run_measured(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str, str]:
    """Wall seconds (start to exit, the process's start-up included), peak RSS (bytes: the process and its
    children, sampled every 20 ms), stdout and stderr of one process; SystemExit with its stderr on failure.
    (wait4's ru_maxrss would count the benchmark's own RSS, inherited at fork.)"""
    import psutil

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err, text=True)
        peak = 0
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(True)))
            except psutil.Error:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(Path(a).name for a in args[:3])} failed ({proc.returncode}): {stderr[-3000:]}")
    return seconds, peak, stdout, stderr


def row(stage: str, n: int, seconds: float, rss: int | None, items: int | None = None, **extra: Any) -> dict[str, Any]:
    """One figure: stage, N, seconds, items per second (N unless `items`), peak RSS in MB (None: not measured)."""
    return {"stage": stage, "n": n, "seconds": seconds, "per_s": (items if items is not None else n) / seconds,
            "rss_mb": rss / 2**20 if rss else None, **extra}


def exponents(rows: list[dict[str, Any]], ns: list[int]) -> list[dict[str, Any]]:
    """b of each stage between consecutive N: seconds ∝ N^b (flag: b > 1.1)."""
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        by_n = {r["n"]: r["seconds"] for r in rows if r["stage"] == stage}
        for a, b in zip(ns, ns[1:]):
            if a in by_n and b in by_n and by_n[a] > 0:
                exp = math.log(by_n[b] / by_n[a]) / math.log(b / a)
                out.append({"stage": stage, "from": a, "to": b, "b": exp, "flag": exp > 1.1})
    return out


def print_growth(exps: list[dict[str, Any]], why: dict[str, str] | None = None) -> None:
    """The growth exponents, one line per stage and pair of N; * where b > 1.1, with `why[stage]` when known."""
    if not exps:
        return
    print("\ngrowth exponent b (seconds ∝ N^b) between consecutive N; * where b > 1.1")
    for e in exps:
        flag = f"  * {(why or {}).get(e['stage'], 'see the stage')}" if e["flag"] else ""
        print(f"  {e['stage']:<34}{e['from']:>9,} -> {e['to']:>9,}: b = {e['b']:.2f}{flag}")


def cpu_seconds(pgdata: Path) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's finished children (the measured process, once
    reaped), of the Postgres server at `pgdata` (the postmaster, its live processes, and those it reaped), and of
    the loopback server: their differences around a stage are robust where wall times on a shared machine are not."""
    import resource

    import psutil

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    postgres = 0.0
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            postgres += t.user + t.system + t.children_user + t.children_system
    server = 0.0
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "openai_server" in " ".join(proc.cmdline()):
                server += sum(proc.cpu_times()[:2])
    return {"cpu_s": used.ru_utime + used.ru_stime, "postgres_cpu_s": postgres, "server_cpu_s": server}


def run_with_cpu(args: list[str], env: dict[str, str]) -> tuple[float, int, str, dict[str, float]]:
    """`run_measured`, plus the CPU seconds the process, Postgres and the loopback server spent meanwhile."""
    pgdata = Path(env["STUDYLLM_HOME"]) / "pg"
    before = cpu_seconds(pgdata)
    seconds, rss, out, _ = run_measured(args, env)
    after = cpu_seconds(pgdata)
    return seconds, rss, out, {k: after[k] - before[k] for k in after}
