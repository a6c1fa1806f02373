"""`studyllm sweep` end to end: real console script, real HTTP to the loopback server, real database."""

import json

import numpy as np
import pandas as pd
import pytest

from support import TEST_API_KEY, topic_corpus

TEXTS, LABELS = topic_corpus()


@pytest.fixture
def env(db_env):
    return {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}


@pytest.fixture
def corpus(tmp_path):
    """TSV without a header like the benchmark sets: label<TAB>text, one unusable row (row 5)."""
    rows = [f"{label}\t{text}" for label, text in zip(LABELS, TEXTS)]
    rows.insert(5, "cooking\t   ")
    path = tmp_path / "topics.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def sweep_args(path, out, stub, *extra):
    return ["sweep", str(path), "--no-header", "--text-column", "1", "--embed-provider", "openai-compatible",
            "--embed-model", "stub-embedding", "--base-url", stub.base_url, "--k-min", "2", "--k-max", "4",
            "--restarts", "3", "--out", str(out), *extra]


def test_sweep_writes_report_labels_and_table(cli, env, corpus, tmp_path, stub):
    out = tmp_path / "out"
    result = cli(sweep_args(corpus, out, stub, "--label-column", "0", "--summarizer", "extractive", "--json"), env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["best_k"] == 3
    k3 = next(row for row in summary["per_k"] if row["k"] == 3)
    assert k3["nmi"] == pytest.approx(1.0) and {"score", "silhouette", "stability_ari", "acc", "ari"} <= set(k3)
    counts = summary["counts"]
    assert (counts["texts"], counts["clustered"], counts["failed"]) == (61, 60, 1)
    assert counts["summarize_calls"] == (2 + 3 + 4) * 2  # default: 2 rounds, on the best restart only
    assert "warning: row 5: empty or whitespace-only text" in result.stderr
    assert "note: pca_dim=50 is more than the 16 embedding dimensions" in result.stderr
    seconds = summary["seconds"]  # each step's wall seconds (what benchmarks/_scale_sweep.py reads)
    assert set(seconds) == {"embed", "pca", "k_loop", "per_k", "second_pass", "write"} and set(seconds["per_k"]) == {"2", "3", "4"}
    assert all(v >= 0 for v in [*seconds["per_k"].values(), seconds["embed"], seconds["pca"], seconds["write"]])
    assert seconds["k_loop"] >= sum(seconds["per_k"].values())
    assert "seconds" not in json.loads((out / "report.json").read_text())  # the artifact has no timings

    assert summary["files"]["report"] == str(out / "report.json")
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["n_restarts"] == 3 and report["config"]["llm_rounds"] == 2
    assert report["config"]["metric"] == "cosine" and report["config"]["summarize_restarts"] == "best"
    assert report["source"]["label_column"] == "0"
    labels = np.load(out / "labels_k3.npy")
    assert labels.shape == (61,) and labels[5] == -1
    table = pd.read_parquet(out / "clusters.parquet")
    assert len(table) == 61 * 3 and set(table["k"]) == {2, 3, 4}

    requests = stub.stats.requests_total
    again = cli(sweep_args(corpus, tmp_path / "again", stub, "--label-column", "0", "--summarizer", "extractive", "--json"), env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["api_requests"] == 0 and stub.stats.requests_total == requests
    assert json.loads(again.stdout)["per_k"] == summary["per_k"]

    shown = cli(["provenance", str(summary["group_id"]), "--json"], env)
    steps = [s["type"] for s in json.loads(shown.stdout)["steps"]]
    assert steps == ["embedding_batch", "summarization_batch", "embedding_batch"]
    assert len(json.loads(shown.stdout)["artifacts"]) == 5  # report, clusters, three labels files


def test_human_output_is_a_table_per_k(cli, env, corpus, tmp_path, stub):
    with_labels = cli(sweep_args(corpus, tmp_path / "a", stub, "--label-column", "0"), env)
    assert with_labels.returncode == 0, with_labels.stderr
    lines = with_labels.stdout.splitlines()
    header = next(line for line in lines if line.startswith("K "))
    assert header.split() == ["K", "stability", "BIC", "objective", "silhouette", "score", "ACC", "NMI", "ARI"]
    assert any(line.startswith("rule: the median of three Ks") for line in lines)
    assert any(line.startswith("3 *") for line in lines) and "best K (*): K = 3" in with_labels.stdout
    assert "summarize_calls 0" in with_labels.stdout

    plain = cli(sweep_args(corpus, tmp_path / "b", stub), env)
    assert plain.returncode == 0, plain.stderr
    header = next(line for line in plain.stdout.splitlines() if line.startswith("K "))
    assert header.split() == ["K", "stability", "BIC", "objective", "silhouette", "score"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k-max", "62"], "k_max=62 exceeds the 60 usable texts (1 of 61 rows are empty or unreadable)"),
        (["--k-min", "1"], "k_min must be an integer >= 2"),
        (["--pca-dim", "0"], "pca_dim must be an integer >= 1"),
        (["--restarts", "0"], "n_restarts must be an integer >= 1"),
        (["--summarizer", "bogus"], "summarizer 'bogus' must be 'extractive' or PROVIDER:MODEL"),
        (["--summarizer", "nosuch:model"], "unknown provider 'nosuch'"),
        (["--llm-rounds", "3"], "--llm-rounds needs --summarizer"),
        (["--breathing-depth", "-1"], "--breathing-depth must be 0 (off) or a positive number of centroids; got -1"),
        (["--label-column", "label"], "has no column 'label'"),
        (["--label-column", "7"], "label column index 7 is out of range"),
    ],
)
def test_bad_input_fails_in_one_line_before_any_request(cli, env, corpus, tmp_path, stub, args, message):
    argv = sweep_args(corpus, tmp_path / "out", stub)
    for flag, value in zip(args[::2], args[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    result = cli(argv, env)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stub.stats.requests_total == 0 and not (tmp_path / "out").exists()


def test_cli_file_names_match_the_service():
    from studyllm_core.cli import sweep as cli_sweep
    from studyllm_core.services.sweep import service as service_sweep

    assert (cli_sweep.REPORT_FILE, cli_sweep.CLUSTERS_FILE) == (service_sweep.REPORT_FILE, service_sweep.CLUSTERS_FILE)


def test_cli_defaults_are_the_recipe_defaults():
    """`studyllm sweep` names its defaults in --help without importing the algorithms; they are SweepConfig's."""
    from studyllm_core.algorithms import SweepConfig
    from studyllm_core.cli import sweep as cli_sweep

    defaults = SweepConfig()
    assert (cli_sweep.DEFAULT_RESTARTS, cli_sweep.DEFAULT_LLM_ROUNDS) == (defaults.n_restarts, defaults.llm_rounds)
    assert defaults.summarize_restarts == "best" and defaults.seed == 0


@pytest.mark.parametrize("extra, message", [
    (["--rank", "2"], "--rank is the subspace rank of ksubspaces; drop it or use --method ksubspaces"),
    (["--method", "ksubspaces", "--rank", "20"], "ksubspaces with rank 20 needs k_max x (rank + 1) = 84 texts"),
])
def test_method_settings_that_cannot_work_fail_before_any_request(cli, env, corpus, tmp_path, stub, extra, message):
    result = cli(sweep_args(corpus, tmp_path / "out", stub, *extra), env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and stub.stats.requests_total == 0


@pytest.mark.parametrize("depth, breathing, stated", [("0", False, None), ("3", True, "breathing k-means (depth 3)")])
def test_breathing_depth_is_the_sweeps_and_said(cli, env, corpus, tmp_path, stub, depth, breathing, stated):
    """--breathing-depth 0 turns breathing k-means off, a positive depth sets it; the report's config and plan say so."""
    out = tmp_path / "out"
    result = cli(sweep_args(corpus, out, stub, "--breathing-depth", depth, "--json"), env)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["breathing"] is breathing
    assert report["config"]["breathing_depth"] == (int(depth) if breathing else None)
    plan = report["plan"]["text"]
    assert (stated in plan) if stated else ("breathing" not in plan)
