"""Fault soak: `studyllm embed` against a server where 30% of requests fail, then systemic faults.

Run: python benchmarks/soak.py [--texts 20000] [--fault-rate 0.3] [--systemic-texts 2048] [--json]
The loopback server (its own process) injects 429 with Retry-After, 500, 503 and hangs longer than
the client's timeout, at random with a fixed seed. Printed: texts submitted, embedded, API
requests, failed attempts recorded (and the server's count of injected faults: they must match),
duplicates sent (successful sends of one text beyond the first), wall time.

Then the systemic faults, each on `--systemic-texts` new texts: a revoked key (401), an HTML page
answering 200 (a proxy or login portal), a model that rejects `dimensions` (400), NaN vectors,
all-zero vectors, a server that ignores `dimensions`, an account out of quota (429
insufficient_quota), a refused connection, a URL without a scheme, `--timeout 0`. For each: the
requests it cost (recorded attempts; the server's count where there is a server), the seconds
until the command stopped, its exit code and its one-line message. Goal: at most 10 requests and
30 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from _db import scratch_database
from _measure import STUDYLLM
from studyllm_core.testing import stub_server_process

KEY = "sk-soak-0123456789abcdefSECRET"


def embed(path: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", "soak-embed",
         "--batch-size", "128", "--concurrency", "8", "--json", *extra],
        env=env, capture_output=True, text=True,
    )
    return result, time.perf_counter() - start


def refused_url() -> str:
    """A loopback URL where nothing listens (a port bound and released again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# name -> (fault settings of the server, extra CLI arguments or a replacement base URL)
SYSTEMIC = {
    "revoked key (401)": ({"valid_keys": ["sk-some-other-key-entirely"]}, ()),
    "HTML page with 200": ({"rate": 1.0, "kinds": ["html"]}, ()),
    "400 for dimensions": ({"reject_dimensions": True}, ("--dimensions", "16")),
    "NaN vectors": ({"rate": 1.0, "kinds": ["nan"]}, ()),
    "all-zero vectors": ({"rate": 1.0, "kinds": ["zero_vectors"]}, ()),
    "dimensions ignored": ({"ignore_dimensions": True}, ("--dimensions", "16")),
    "out of quota (429)": ({"rate": 1.0, "kinds": ["insufficient_quota"]}, ()),
    "connection refused": ({}, ("--base-url", "REFUSED")),
    "URL without a scheme": ({}, ("--base-url", "NOSCHEME")),
    "--timeout 0": ({}, ("--timeout", "0")),
}


def attempts_recorded(engine) -> int:
    """Raw calls of requests that were sent (inputs rejected before sending are recorded too, with sent=false)."""
    with engine.connect() as conn:
        sql = "SELECT count(*) FROM raw_calls WHERE NOT coalesce(metadata_json @> '{\"sent\": false}', false)"
        return int(conn.execute(text(sql)).scalar_one())


def systemic(work: Path, texts: list[str], env: dict[str, str], base: str, admin, engine) -> list[dict]:
    """Each systemic fault on its own new texts: requests, seconds to stop, exit code, message."""
    rows = []
    for i, (name, (faults, extra)) in enumerate(SYSTEMIC.items()):
        admin.reset(stats=False, faults=True)
        if faults:
            admin.set_faults(**faults)
        path = work / f"systemic-{i}.txt"
        path.write_text("\n".join(f"systemic {i}: {t}" for t in texts) + "\n")
        args = [a.replace("REFUSED", refused_url()).replace("NOSCHEME", base.split("://", 1)[1]) for a in extra]
        before_server = admin.stats(include_texts=False)["requests_total"]
        before_calls = attempts_recorded(engine)
        result, seconds = embed(path, env, *args)
        after_calls = attempts_recorded(engine)
        server = admin.stats(include_texts=False)["requests_total"] - before_server
        message = result.stderr.strip().splitlines()
        rows.append({
            "fault": name,
            "requests_recorded": after_calls - before_calls,
            "requests_at_server": server,
            "seconds": round(seconds, 2),
            "exit_code": result.returncode,
            "stderr_lines": len(message),
            "message": message[-1] if message else "",
        })
    admin.reset(stats=False, faults=True)
    return rows


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--systemic-texts", type=int, default=2048, help="texts per systemic-fault run (0: skip them)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sl-soak-"))
    try:
        return soak(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # its texts and logs: nothing left behind


def soak(args: argparse.Namespace, work: Path) -> dict:
    """The soak and the systemic-fault runs in the folder `work`; the report."""
    texts = [f"soak text {i}: about item {i * 7 % 1009} and topic {i % 13}" for i in range(args.texts)]
    path = work / "soak.txt"
    path.write_text("\n".join(texts) + "\n")
    server_args = ("--latency", "0.02", "--dim", "32", "--seed", "7", "--api-key", KEY, "--hang", "3")
    with scratch_database() as (engine, url), stub_server_process(*server_args) as (base, admin):
        admin.set_faults(
            rate=args.fault_rate,
            kinds={"rate_limit": 1, "server_error": 1, "unavailable": 1, "hang": 1},
            retry_after_s=0.5,
        )
        env = {
            **os.environ, "STUDYLLM_DATABASE_URL": url, "STUDYLLM_HOME": str(work), "OPENAI_COMPATIBLE_BASE_URL": base,
            "OPENAI_COMPATIBLE_API_KEY": KEY, "STUDYLLM_REQUEST_TIMEOUT": "1",  # hangs last 3 s: each one times out
        }
        result, seconds = embed(path, env)
        if result.returncode != 0:
            raise SystemExit(f"soak run failed: {result.stderr}")
        summary = json.loads(result.stdout)
        stats = admin.stats(include_texts=True)
        with engine.connect() as conn:
            by_status = dict(conn.execute(text("SELECT status, count(*) FROM raw_calls GROUP BY status")).all())
            without_error = conn.execute(
                text("SELECT count(*) FROM raw_calls WHERE status <> 'success' AND error_json IS NULL")
            ).scalar_one()
            vectors = conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one()
        duplicates = sum(max(c["ok"] - 1, 0) for c in stats["embedding_text_counts"].values())
        outputs = result.stdout + result.stderr
        faults = systemic(work, texts[: args.systemic_texts], env, base, admin, engine) if args.systemic_texts else []

    report = {
        "texts_submitted": args.texts,
        "embedded": summary["embedded"] + summary["cached"],
        "failed_texts": summary["failed"],
        "vectors_stored": vectors,
        "api_requests": summary["api_requests"],
        "server_requests": stats["requests_by_endpoint"].get("embeddings", 0),
        "failed_attempts_recorded": sum(n for s, n in by_status.items() if s != "success"),
        "failed_attempts_by_status": {s: n for s, n in by_status.items() if s != "success"},
        "faults_injected": sum(stats["faults_injected"].values()),
        "faults_by_kind": stats["faults_injected"],
        "failed_attempts_without_error_json": without_error,
        "duplicates_sent": duplicates,
        "wall_seconds": round(seconds, 2),
        "systemic_texts": args.systemic_texts,
        "systemic": faults,
        "key_in_output": KEY in outputs + "".join(row["message"] for row in faults),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"fault soak: {args.fault_rate:.0%} of requests fail (429 + Retry-After, 500, 503, hang > timeout)")
        for key in ("texts_submitted", "embedded", "failed_texts", "vectors_stored", "api_requests",
                    "failed_attempts_recorded", "faults_injected", "failed_attempts_without_error_json",
                    "duplicates_sent", "wall_seconds"):
            print(f"  {key:<38} {report[key]}")
        print(f"  {'failed attempts by status':<38} {report['failed_attempts_by_status']}")
        print(f"  {'faults injected by kind':<38} {report['faults_by_kind']}")
        if faults:
            print(f"systemic faults, {args.systemic_texts:,} texts each (goal: <= 10 requests, <= 30 s):")
            print(f"  {'fault':<24} {'requests':>8} {'at server':>9} {'seconds':>8} {'exit':>4}  message")
            for row in faults:
                print(f"  {row['fault']:<24} {row['requests_recorded']:>8} {row['requests_at_server']:>9} "
                      f"{row['seconds']:>8} {row['exit_code']:>4}  {row['message'][:160]}")
        print(f"key found in CLI output: {report['key_in_output']}")
    return report


if __name__ == "__main__":
    main()
