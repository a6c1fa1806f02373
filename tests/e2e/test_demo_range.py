"""`studyllm demo --k-min A --k-max B` reports exactly K = A..B and picks the best among them, also
when other K were swept before in the same home."""

import json
import os
import re

import pytest

from support import run_on_terminal

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_demo_reports_exactly_the_requested_range(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(tmp_path / "home")
    code, stdout, shown = run_on_terminal(["demo", "--k-min", "9", "--k-max", "12", "--json"], env, timeout=600)
    assert code == 0, shown
    wide = json.loads(stdout)
    assert [row["k"] for row in wide["per_k"]] == [9, 10, 11, 12] and wide["best_k"] == 10  # the ten topics
    assert "demo:" not in shown  # --json: quiet, also on a terminal

    code, stdout, shown = run_on_terminal(["demo", "--k-min", "5", "--k-max", "7"], env, timeout=600)
    assert code == 0, shown
    # On a terminal: what it is doing, per step and per K, as it happens.
    steps = [line.split("demo: ", 1)[1] for line in shown.splitlines() if "demo: " in line]
    assert steps[0].startswith("starting the embedded Postgres") and steps[1].startswith("preparing the demo dataset")
    assert [s for s in steps if s.startswith("K=")] == ["K=5 done (1/3)", "K=6 done (2/3)", "K=7 done (3/3)"]
    assert steps[-2:] == ["choosing K: the sweep report", "done"]
    lines = stdout.splitlines()
    assert lines[0].startswith("demo sweep over K=5..7 on 450 texts")
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("K "))) + 1:]
    ks = [int(line.split()[0]) for line in table if line.strip() and line.split()[0].isdigit()]
    assert ks == [5, 6, 7]
    best = int(re.match(r"best K: K = (\d+) \(plausible (\d+)\.\.(\d+)\)", lines[1]).group(1))
    assert best in (5, 6, 7)
    assert "the largest swept: the best may lie above" in lines[1]  # ten topics, swept up to 7
