"""Fault soak (small): 30% of requests fail in every transient way; every text still ends embedded,
every failed attempt is recorded, nothing is sent twice, and a revoked key stops at once."""

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_fault_soak_small():
    result = subprocess.run(
        [sys.executable, str(SOAK), "--texts", "3000", "--json"], capture_output=True, text=True, timeout=600,
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
    # A permanent 401: one request, a clear one-line message, a non-zero exit, no retrying.
    assert report["revoked_key_exit_code"] != 0 and report["revoked_key_requests"] == 1
    assert "401" in report["revoked_key_message"] and report["key_in_output"] is False
