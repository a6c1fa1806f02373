"""`studyllm demo --k-min A --k-max B` reports exactly K = A..B and picks the best among them, also
when other K were swept before in the same home."""

import json
import os
import re

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_demo_reports_exactly_the_requested_range(cli, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(tmp_path / "home")
    first = cli(["demo", "--k-min", "9", "--k-max", "12", "--json"], env, timeout=600)
    assert first.returncode == 0, first.stderr
    wide = json.loads(first.stdout)
    assert [row["k"] for row in wide["per_k"]] == [9, 10, 11, 12] and wide["best_k"] == 10  # the ten topics

    second = cli(["demo", "--k-min", "5", "--k-max", "7"], env, timeout=600)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0].startswith("demo sweep over K=5..7 on 450 texts")
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("K "))) + 1:]
    ks = [int(line.split()[0]) for line in table if line.strip() and line.split()[0].isdigit()]
    assert ks == [5, 6, 7]
    best = int(re.match(r"best K: K = (\d+) \(plausible (\d+)\.\.(\d+)\)", lines[1]).group(1))
    assert best in (5, 6, 7)
    assert "the largest swept: the best may lie above" in lines[1]  # ten topics, swept up to 7
