"""Fault soak: `studyllm embed` against a server where 30% of requests fail, then a permanent 401.

Run: python benchmarks/soak.py [--texts 20000] [--fault-rate 0.3] [--json]
The loopback server (its own process) injects 429 with Retry-After, 500, 503 and hangs longer than
the client's timeout, at random with a fixed seed. Printed: texts submitted, embedded, API
requests, failed attempts recorded (and the server's count of injected faults: they must match),
duplicates sent (successful sends of one text beyond the first), wall time; then how long a run
with a revoked key takes to stop, and its message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from _db import scratch_database
from studyllm_core.testing import stub_server_process

STUDYLLM = str(Path(sys.executable).with_name("studyllm"))
KEY = "sk-soak-0123456789abcdefSECRET"


def embed(path: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", "soak-embed",
         "--batch-size", "128", "--concurrency", "8", "--json", *extra],
        env=env, capture_output=True, text=True,
    )
    return result, time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sl-soak-"))
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

        # A key revoked mid-study: every request answers 401. It must stop at once, not retry for minutes.
        admin.set_faults(rate=0.0, valid_keys=["sk-some-other-key-entirely"])
        revoked_path = work / "revoked.txt"
        revoked_path.write_text("\n".join(t.replace("soak", "revoked") for t in texts[:1000]) + "\n")
        requests_before = admin.stats(include_texts=False)["requests_total"]
        revoked, revoked_s = embed(revoked_path, env)
        revoked_requests = admin.stats(include_texts=False)["requests_total"] - requests_before

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
        "revoked_key_exit_code": revoked.returncode,
        "revoked_key_seconds": round(revoked_s, 2),
        "revoked_key_requests": revoked_requests,
        "revoked_key_message": revoked.stderr.strip().splitlines()[-1] if revoked.stderr.strip() else "",
        "key_in_output": KEY in (result.stdout + result.stderr + revoked.stdout + revoked.stderr),
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
        print(f"revoked key: exit {report['revoked_key_exit_code']} after {report['revoked_key_seconds']} s and "
              f"{report['revoked_key_requests']} request(s): {report['revoked_key_message']}")
        print(f"key found in CLI output: {report['key_in_output']}")
    return report


if __name__ == "__main__":
    main()
