"""`studyllm backfill` queues one sweep_k run per K on the durable instance (the daemon runs them)."""

import os

import dagster as dg

from studyllm_pipeline.instance import prepare_dagster_home
from studyllm_pipeline.partitions import datasets


def test_backfill_queues_one_run_per_k(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("STUDYLLM_DATABASE_URL", raising=False)
    monkeypatch.setenv("STUDYLLM_HOME", str(tmp_path / "home"))
    unknown = cli(["backfill", "nosuch", "--k-min", "2", "--k-max", "3"])
    assert unknown.returncode != 0 and "has no partition yet" in unknown.stderr
    bad = cli(["backfill", "demo", "--k-min", "1", "--k-max", "3"])
    assert bad.returncode != 0 and "K must lie in" in bad.stderr

    # Register the dataset partition on the durable instance, as `studyllm demo` or the sensor would.
    _, _, dagster_env = prepare_dagster_home()
    for key, value in dagster_env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(datasets.name, ["demo"])
        result = cli(["backfill", "demo", "--k-min", "4", "--k-max", "6"], dict(os.environ), timeout=300)
        assert result.returncode == 0, result.stderr
        assert "queued 3 sweep_k runs" in result.stdout
        runs = instance.get_runs(dg.RunsFilter(job_name="sweep_k"))
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["demo|4", "demo|5", "demo|6"]
        assert {r.tags.get("studyllm/dataset") for r in runs} == {"demo"}
