"""Fault soak (small): 30% of requests fail in every transient way; every text still ends embedded,
every failed attempt is recorded, nothing is sent twice; then every systemic fault (a revoked key,
an HTML page, NaN or zero vectors, `dimensions` refused or ignored, no quota, no server, a bad URL,
--timeout 0) stops the command after at most 10 requests with one line."""

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_fault_soak_small():
    result = subprocess.run(
        [sys.executable, str(SOAK), "--texts", "3000", "--systemic-texts", "512", "--json"],
        capture_output=True, text=True, timeout=600,
        cwd=SOAK.parent,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["embedded"] == report["vectors_stored"] == 3000 and report["failed_texts"] == 0
    assert report["faults_injected"] > 0
    # Each injected fault is one recorded failed (or timed-out) attempt, with its error_json.
    assert report["failed_attempts_recorded"] == report["faults_injected"]
    assert report["failed_attempts_without_error_json"] == 0
    assert report["failed_attempts_by_status"].get("timeout", 0) == report["faults_by_kind"].get("hang", 0)
    assert report["api_requests"] == report["server_requests"]
    assert report["duplicates_sent"] == 0
    # Systemic faults: a handful of requests each, a clear one-line message, a non-zero exit.
    rows = {row["fault"]: row for row in report["systemic"]}
    assert len(rows) == 10
    for row in rows.values():
        assert row["exit_code"] in (2, 4) and row["stderr_lines"] == 1 and row["message"].startswith("error: "), row
        assert row["requests_recorded"] <= 10 and row["requests_at_server"] <= 10, row
    assert rows["revoked key (401)"]["requests_at_server"] == 1 and "401" in rows["revoked key (401)"]["message"]
    assert rows["URL without a scheme"]["requests_recorded"] == rows["--timeout 0"]["requests_recorded"] == 0
    assert report["key_in_output"] is False
