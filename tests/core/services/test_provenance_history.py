"""Run history in provenance on the real database: each materialisation is its own record, one run's
lineage is told apart from another's, member calls carry their role, and a database made before the
records existed is migrated to one record per group."""

import json

import pytest
from sqlalchemy import text

from studyllm_core.cli import main
from studyllm_core.db.engine import make_engine
from studyllm_core.db.migrate import upgrade
from studyllm_core.errors import NotFoundError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture import embedding as embedding_module
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.provenance import Materialization, ProvenanceService
from support import TEST_API_KEY


def materialize(prov, run_id, asset, partition, upstream=(), **config):
    return prov.record_materialization(Materialization(
        asset=asset, partition=partition, run_id=run_id, config=config,
        upstream={(a, p): "step" for a, p in upstream},
    ))


def two_runs(engine):
    """Run A makes snapshot and clusters of demo|3; run B makes clusters of demo|3 again from A's snapshot."""
    prov = ProvenanceService(engine)
    materialize(prov, "run-a", "dataset_snapshot", "demo", source_path="a.csv")
    materialize(prov, "run-a", "clusters", "demo|3", upstream=[("dataset_snapshot", "demo")], n_restarts=3, api_key="sk-abcdef0123456789xyz")
    materialize(prov, "run-b", "clusters", "demo|3", upstream=[("dataset_snapshot", "demo")], n_restarts=5)
    return prov


def test_each_materialisation_is_its_own_record_and_one_runs_lineage_is_its_own(engine):
    prov = two_runs(engine)
    history = prov.history("clusters", "demo|3")
    assert [(r.run_id, r.config["n_restarts"]) for r in history] == [("run-b", 5), ("run-a", 3)]  # newest first
    assert history[0].group_id == history[1].group_id  # one group, two records
    assert history[1].config["api_key"] == "***"  # secrets masked as everywhere
    assert {"studyllm", "numpy", "dagster"} <= set(history[0].versions) and history[0].code_version.startswith("studyllm ")
    # Run B read A's snapshot: its input points at the record A made, not at a record of its own.
    [snapshot_input] = history[0].inputs
    assert snapshot_input["group"] == "dataset_snapshot[demo]" and snapshot_input["run_id"] == "run-a"
    assert not snapshot_input["same_run"]

    lineage_a = prov.run_lineage("run-a")
    assert [(r.asset, r.partition) for r in lineage_a] == [("dataset_snapshot", "demo"), ("clusters", "demo|3")]
    assert lineage_a[1].inputs[0]["same_run"] and lineage_a[1].config["n_restarts"] == 3
    assert [(r.asset, r.config["n_restarts"]) for r in prov.run_lineage("run-b")] == [("clusters", 5)]
    with pytest.raises(NotFoundError, match="no materialisation recorded for run 'nope'"):
        prov.run_lineage("nope")
    with pytest.raises(NotFoundError, match="no materialisation of 'clusters' at partition 'demo|9'"):
        prov.history("clusters", "demo|9")


def test_the_cli_shows_a_runs_lineage_and_an_asset_partitions_history(engine, db_env, capsys, cli):
    two_runs(engine)
    assert main(["provenance", "--run", "run-b", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(r["asset"], r["partition"], r["config"]["n_restarts"]) for r in payload["records"]] == [("clusters", "demo|3", 5)]
    assert payload["records"][0]["inputs"][0]["run_id"] == "run-a"

    assert main(["provenance", "--asset", "clusters", "--partition", "demo|3", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)["history"]
    assert [r["run_id"] for r in history] == ["run-b", "run-a"]
    assert history[0]["config_changes"] == {"api_key": ["***", None], "n_restarts": [3, 5]} and history[1]["config_changes"] is None
    assert history[0]["config_hash"] != history[1]["config_hash"]

    assert main(["provenance", "--asset", "clusters", "--partition", "demo|3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("history of clusters[demo|3]: 2 materialisation(s), newest first")
    assert out.index("run run-b") < out.index("run run-a") and "n_restarts: 3 -> 5" in out
    assert "sk-abcdef" not in out

    assert main(["provenance", "--run", "run-a"]) == 0
    out = capsys.readouterr().out
    assert "clusters[demo|3]" in out and "dataset_snapshot[demo]" in out and "<- dataset_snapshot[demo]" in out

    assert main(["provenance", "clusters[demo|3]"]) == 0
    out = capsys.readouterr().out
    assert "history (newest first):" in out and out.index("run run-b") < out.index("run run-a")

    done = cli(["provenance", "--run", "nope"], db_env)  # the real console script: exactly what a user reads
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: no materialisation recorded for run 'nope'") and "Dagster UI" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert main(["provenance", "--asset", "clusterz"]) == 2
    assert "no materialisation of 'clusterz'" in capsys.readouterr().err
    assert main(["provenance", "--partition", "demo|3"]) == 2
    assert "give exactly one of GROUP, --run RUN_ID or --asset" in capsys.readouterr().err


def test_member_calls_carry_their_role_made_or_reused(engine, stub):
    """A batch's own calls are its outputs; the cached calls a later batch reuses are its inputs."""
    embedding_module._validated_models.clear()
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=TEST_API_KEY, timeout=5.0)
    service = EmbeddingService(engine, provider, provider_name="openai-compatible", model="stub-embedding")
    first = service.embed(["alpha one", "beta two"], group_name="first")
    second = service.embed(["alpha one", "gamma three"], group_name="second")
    with engine.connect() as conn:
        roles = {(g, r): n for g, r, n in conn.execute(text(
            "SELECT group_id, role, count(*) FROM group_members GROUP BY 1, 2"))}
    assert roles == {(first.group_id, "output"): 1, (second.group_id, "output"): 1, (second.group_id, "input"): 1}
    shown = ProvenanceService(engine).provenance(second.group_id).to_dict()
    assert shown["member_roles"] == {"input": 1, "output": 1}
    # the CLI's own embedding run is a record of its own (a cli-... run id)
    [record] = shown["history"]
    assert record["run_id"].startswith("cli-") and record["versions"]["embedding"] == "openai-compatible:stub-embedding"


OLD_DATA = """
INSERT INTO groups (id, group_type, name, metadata_json, created_at) VALUES
  (1, 'dataset', 'dataset_snapshot[demo]',
   '{"dagster_run_id": "old-run", "asset_key": "dataset_snapshot", "partition": "demo", "config": {"source_path": "d.csv"}}',
   '2026-11-01T10:00:00Z'),
  (2, 'step', 'clusters[demo|3]',
   '{"dagster_run_id": "old-run", "asset_key": "clusters", "partition": "demo|3", "config": {"n_restarts": 3}}',
   '2026-11-01T10:05:00Z'),
  (3, 'batch', 'prompts:2026', NULL, '2026-11-01T09:00:00Z');
SELECT setval(pg_get_serial_sequence('groups', 'id'), 3);
INSERT INTO group_links (parent_group_id, child_group_id, link_type) VALUES (1, 2, 'depends_on');
"""


def test_the_migration_gives_every_existing_group_one_record_and_keeps_its_links(empty_database_url):
    engine = make_engine(empty_database_url)
    upgrade(engine, "0004_server_group_embeddings")
    with engine.begin() as conn:
        conn.execute(text(OLD_DATA))
    upgrade(engine)
    prov = ProvenanceService(engine)
    [clusters] = prov.history("clusters", "demo|3")
    assert (clusters.run_id, clusters.config, clusters.group_id) == ("old-run", {"n_restarts": 3}, 2)
    assert clusters.created_at.isoformat().startswith("2026-11-01T10:05")
    assert [(i["group"], i["run_id"], i["same_run"]) for i in clusters.inputs] == [("dataset_snapshot[demo]", "old-run", True)]
    assert [r.asset for r in prov.run_lineage("old-run")] == ["dataset_snapshot", "clusters"]
    [batch] = prov.records_of(3)
    assert (batch.run_id, batch.asset, batch.partition) == ("before-0005", "prompts:2026", None)
    # the migrated database records new runs as usual
    materialize(prov, "new-run", "clusters", "demo|3", upstream=[("dataset_snapshot", "demo")], n_restarts=4)
    assert [r.run_id for r in prov.history("clusters", "demo|3")] == ["new-run", "old-run"]
    engine.dispose()


def _ranged_run(run_id, dataset, ks):
    """What a ranged sweep run records: the three tables of every K, each read from the prepared dataset and
    the summaries and metrics from the K's clusters."""
    prepared = {("dataset_snapshot", dataset): "dataset", ("pca_projection", dataset): "step"}
    made = []
    for k in ks:
        part = f"{dataset}|{k}"
        made.append(Materialization(asset="clusters", partition=part, run_id=run_id, group_type="step", position=3,
                                    upstream=prepared, config={"n_restarts": 3, "api_key": "sk-abcdef0123456789xyz"}))
        for asset, kind, position in (("cluster_summaries", "summarization_batch", 4), ("cluster_metrics", "metrics", 5)):
            made.append(Materialization(asset=asset, partition=part, run_id=run_id, group_type=kind, position=position,
                                        upstream={("clusters", part): "step"}, config={"n_restarts": 3}))
    return made


def _stored(engine, dataset):
    """Groups, links (with positions) and records (with their inputs) of one dataset, by name, comparable across datasets."""
    rename = lambda name: name.replace(dataset, "D")  # noqa: E731
    with engine.connect() as conn:
        groups = {(t, rename(n)) for t, n in conn.execute(text(
            "SELECT group_type, name FROM groups WHERE name LIKE :p"), {"p": f"%[{dataset}%"})}
        links = {(rename(p), rename(c), t, pos) for p, c, t, pos in conn.execute(text(
            "SELECT gp.name, gc.name, l.link_type, l.position FROM group_links l JOIN groups gp ON gp.id = l.parent_group_id "
            "JOIN groups gc ON gc.id = l.child_group_id WHERE gc.name LIKE :p"), {"p": f"%[{dataset}%"})}
        records = {(rename(g), a, rename(p), json.dumps(c, sort_keys=True), code, rename(i or ""), same)
                   for g, a, p, c, code, i, same in conn.execute(text(
                       "SELECT g.name, m.asset_key, m.partition, m.config, m.code_version, gi.name, mi.run_id = m.run_id "
                       "FROM materializations m JOIN groups g ON g.id = m.group_id "
                       "LEFT JOIN materialization_inputs i ON i.materialization_id = m.id "
                       "LEFT JOIN groups gi ON gi.id = i.input_group_id "
                       "LEFT JOIN materializations mi ON mi.id = i.input_materialization_id "
                       "WHERE m.partition LIKE :p"), {"p": f"{dataset}%"})}
    return groups, links, records


def test_the_k_of_a_run_are_recorded_in_one_transaction_as_one_at_a_time_would(engine):
    """record_materializations stores what record_materialization of each stores, in one transaction and a
    number of statements that does not grow with the K of the run (set-based)."""
    from sqlalchemy import event

    prov = ProvenanceService(engine)
    for dataset in ("one", "bulk", "six"):
        prov.record_materialization(Materialization(asset="dataset_snapshot", partition=dataset, run_id="prep", group_type="dataset"))
        prov.record_materialization(Materialization(asset="pca_projection", partition=dataset, run_id="prep", group_type="step",
                                                    upstream={("dataset_snapshot", dataset): "dataset"}))
        prov.record_materialization(Materialization(asset="clusters", partition=f"{dataset}|4", run_id="before"))  # an older run's
    one_at_a_time = [prov.record_materialization(m) for m in _ranged_run("run-1", "one", [3, 4, 5])]

    counts = {"begin": 0, "statements": 0}

    def begin(conn):
        counts["begin"] += 1

    def statement(*args):
        counts["statements"] += 1

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        bulk = prov.record_materializations(_ranged_run("run-2", "bulk", [3, 4, 5]))
        three = dict(counts)
        counts.update(begin=0, statements=0)
        prov.record_materializations(_ranged_run("run-3", "six", [3, 4, 5, 6, 7, 8]))
        six = dict(counts)
    finally:
        event.remove(engine, "begin", begin)
        event.remove(engine, "before_cursor_execute", statement)
    assert three["begin"] == 1 and six["begin"] == 1  # one transaction per run
    assert six["statements"] == three["statements"]  # set-based: not one statement per K
    assert len(bulk) == len(one_at_a_time) == 9 and len(set(bulk)) == 9
    assert _stored(engine, "bulk") == _stored(engine, "one")
    # Within the run, the summaries' record reads the clusters' record this run made.
    [summaries] = prov.history("cluster_summaries", "bulk|4")
    assert summaries.inputs[0]["group"] == "clusters[bulk|4]" and summaries.inputs[0]["same_run"]
    assert prov.history("clusters", "bulk|4")[0].config["api_key"] == "***"
