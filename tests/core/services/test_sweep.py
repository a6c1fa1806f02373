"""SweepService on the real database with the loopback server's embeddings (and the local model, marked torch).

The stub's vectors are random per text, so the topic corpus (support.topic_corpus) is made of texts
whose stub vectors lie close to one of three anchor directions: a known structure to recover.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from studyllm_core.algorithms import SweepConfig
from studyllm_core.db.calls import RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import InputError
from studyllm_core.providers.errors import ConfigurationError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.artifacts import ArtifactService
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.provenance import ProvenanceService
from studyllm_core.services.capture.retry import RetryPolicy
from studyllm_core.services.sweep.service import SweepService

from support import TEST_API_KEY as KEY
from support import topic_corpus

CORPUS = topic_corpus()


@pytest.fixture
def embedder(engine, stub):
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=KEY, timeout=5.0)
    return EmbeddingService(
        engine, provider, provider_name="openai-compatible", model="stub-embedding",
        retry=RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02),
    )


@pytest.fixture
def services():
    made: list[SweepService] = []
    yield made
    for service in made:
        service.close()


def sweep_service(embedder, services, summarizer=None) -> SweepService:
    service = SweepService(embedder, summarizer)
    services.append(service)
    return service


def config(**kw) -> SweepConfig:
    base = dict(k_min=2, k_max=5, n_restarts=3, pca_dim=50, metric="cosine", llm_rounds=0, seed=0,
                summarize_restarts="best")
    return SweepConfig(**{**base, **kw})


def embedding_requests(stub) -> int:
    return stub.stats.snapshot(include_texts=False)["requests_by_endpoint"].get("embeddings", 0)


def test_recovers_the_topics_and_writes_recorded_files(engine, embedder, services, tmp_path):
    texts, labels = list(CORPUS[0]), list(CORPUS[1])
    texts.insert(7, "   ")  # cannot be embedded: label -1, left out of the clustering
    labels.insert(7, "none")
    out = sweep_service(embedder, services).run(texts, config(), tmp_path / "out", labels=labels)

    assert out.best_k == 3
    by_k = {row["k"]: row for row in out.summary()["per_k"]}
    assert by_k[3]["ari"] == pytest.approx(1.0) and by_k[3]["acc"] == pytest.approx(1.0)
    assert set(by_k) == {2, 3, 4, 5}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["best_k"] == 3 and "BIC" in report["rule"] and report["choice"]["text"].startswith("K = 3")
    # the second pass ran on the K around the first choice and the report says so (algorithms/focus.py)
    assert report["choice"]["second_pass"]["ks"] == [2, 3, 4] and report["choice"]["second_pass"]["skipped"] is None
    assert "applied once more" in report["rule"] and any("second pass re-optimised K 2..4" in n
                                                          for n in report["choice"]["notes"])
    counts = report["counts"]
    assert (counts["texts"], counts["clustered"], counts["failed"], counts["summarize_calls"]) == (61, 60, 1, 0)
    assert report["failed_rows"] == [{"row": 7, "reason": "empty or whitespace-only text"}]
    assert (report["pca"]["requested_dim"], report["pca"]["dim"], report["pca"]["clamped"]) == (50, 16, True)
    assert any("pca_dim=50" in note for note in report["notes"])
    k3 = next(entry for entry in report["per_k"] if entry["k"] == 3)
    assert sorted(k3["sizes"]) == [20, 20, 20] and k3["summaries"] is None
    assert all(7 not in reps and all(0 <= r < 61 for r in reps) for reps in k3["representatives"])

    for k in range(2, 6):
        labels_k = np.load(tmp_path / "out" / f"labels_k{k}.npy")
        assert labels_k.dtype == np.int32 and labels_k.shape == (61,)
        assert labels_k[7] == -1 and set(np.delete(labels_k, 7)) == set(range(k))
        np.testing.assert_array_equal(labels_k, out.labels[k])
    table = pd.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert list(table.columns) == ["row", "k", "label", "text", "reference"] and len(table) == 61 * 4
    k3_rows = table[table["k"] == 3].sort_values("row")
    np.testing.assert_array_equal(k3_rows["label"].to_numpy(), out.labels[3])
    assert k3_rows["text"].tolist() == texts
    # Every file is recorded with its sha256 under the run group, and reads back verified.
    artifacts = ArtifactService(engine, tmp_path / "out")
    recorded = {row.uri.rsplit("/", 1)[1] for row in artifacts.groups.artifacts(group_id=out.run_group_id)}
    assert recorded == {"report.json", "clusters.parquet", *(f"labels_k{k}.npy" for k in range(2, 6))}
    assert artifacts.read(tmp_path / "out" / "report.json")["best_k"] == 3


def test_rows_the_provider_rejects_get_minus_one(engine, stub, services, tmp_path):
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=KEY, timeout=5.0)
    one_by_one = EmbeddingService(engine, provider, provider_name="openai-compatible", model="stub-embedding",
                                  batch_size=1, concurrency=1)
    stub.faults.fail_next(1, "content_filter", endpoint="embeddings")  # the first text's request is refused
    texts = CORPUS[0][:30]
    out = sweep_service(one_by_one, services).run(texts, config(k_max=3), tmp_path)
    assert list(out.failures) == [0] and out.report["counts"]["failed"] == 1
    assert all(out.labels[k][0] == -1 and (out.labels[k][1:] >= 0).all() for k in (2, 3))
    assert out.rows.tolist() == list(range(1, 30))


def test_kllmmeans_summaries_are_recorded_with_provenance(engine, embedder, services, tmp_path):
    out = sweep_service(embedder, services, "extractive").run(
        CORPUS[0], config(k_max=4, llm_rounds=2), tmp_path, labels=CORPUS[1], name="topics-sweep"
    )
    # summarize_restarts="best": K x llm_rounds calls per K
    assert out.report["counts"]["summarize_calls"] == (2 + 3 + 4) * 2
    groups = GroupRepository(engine)
    prov = ProvenanceService(engine).provenance("topics-sweep")
    assert [(g.group_type, g.name) for g in prov.steps] == [
        ("embedding_batch", "topics-sweep:embeddings"),
        ("summarization_batch", "topics-sweep:summaries"),
        ("embedding_batch", "topics-sweep:summary-embeddings"),
    ]
    emb, summaries, summary_emb = (g.id for g in prov.steps)
    assert out.report["summarizer"]["group_id"] == summaries and out.report["embedding"]["group_id"] == emb
    assert [g.id for g in ProvenanceService(engine).inputs_of(summaries)] == [emb]
    assert [g.id for g in ProvenanceService(engine).inputs_of(summary_emb)] == [summaries]
    calls = RawCallRepository(engine).list()
    summary_calls = [c for c in calls if c.id in set(groups.member_ids(summaries))]
    assert len(summary_calls) == 18 and all(c.provider == "extractive" and c.status == "success" for c in summary_calls)
    assert groups.member_ids(summary_emb)  # the summaries' vectors came through the embedding service
    assert prov.group.metadata_json["status"] == "done" and prov.group.metadata_json["best_k"] == out.best_k
    assert prov.group.metadata_json["config"]["llm_rounds"] == 2
    # Run history: the sweep (a cli-... run) recorded the run and its three steps, the steps' inputs this run's records.
    lineage = ProvenanceService(engine).run_lineage(prov.group.metadata_json["run_id"])
    assert [r.group_id for r in lineage] == [prov.group.id, emb, summaries, summary_emb]
    assert lineage[0].config["config"]["llm_rounds"] == 2 and lineage[0].run_id.startswith("cli-")
    assert [[(i["group_id"], i["same_run"]) for i in r.inputs] for r in lineage[2:]] == [[(emb, True)], [(summaries, True)]]
    for entry in out.report["per_k"]:
        assert len(entry["summaries"]) == entry["k"] and all(s.strip() for s in entry["summaries"])
        assert entry["n_summarize_calls"] == entry["k"] * 2


def test_same_seed_same_sweep_and_a_rerun_embeds_nothing(embedder, stub, services, tmp_path):
    service = sweep_service(embedder, services, "extractive")
    first = service.run(CORPUS[0], config(llm_rounds=2, seed=5), tmp_path / "a", labels=CORPUS[1])
    requests = embedding_requests(stub)
    assert requests > 0 and first.report["counts"]["api_requests"] == requests
    second = service.run(CORPUS[0], config(llm_rounds=2, seed=5), tmp_path / "b", labels=CORPUS[1])
    assert embedding_requests(stub) == requests and second.report["counts"]["api_requests"] == 0
    assert second.report["counts"]["cached"] == 60
    assert first.report["per_k"] == second.report["per_k"]
    for k in range(2, 6):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f"labels_k{k}.npy"), np.load(tmp_path / "b" / f"labels_k{k}.npy"))
    other = service.run(CORPUS[0], config(llm_rounds=2, seed=6), tmp_path / "c")
    assert [e["restart_seeds"] for e in other.report["per_k"]] != [e["restart_seeds"] for e in first.report["per_k"]]


def test_chat_summaries_go_to_the_server_and_their_embeddings_through_the_cache(embedder, stub, services, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", KEY)
    service = sweep_service(embedder, services, "openai-compatible:stub-chat")
    first = service.run(CORPUS[0], config(k_max=3, llm_rounds=1), tmp_path / "a")
    chat = stub.stats.snapshot(include_texts=False)["requests_by_endpoint"]["chat"]
    assert chat == first.report["counts"]["summarize_calls"] == 2 + 3
    assert first.report["counts"]["summary_embedding_api_requests"] == 2  # one embed call per round of each K
    assert all(s.startswith("stub reply: ") for e in first.report["per_k"] for s in e["summaries"])
    second = service.run(CORPUS[0], config(k_max=3, llm_rounds=1), tmp_path / "b")
    assert second.report["counts"]["api_requests"] == 0  # texts and summaries both cached


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"k_max": 61}, "k_max=61 exceeds the 60 usable texts"),
        ({"k_min": 1}, "k_min must be an integer >= 2"),
        ({"pca_dim": 0}, "pca_dim must be an integer >= 1"),
        ({"n_restarts": 0}, "n_restarts must be an integer >= 1"),
        ({"k_min": 4, "k_max": 3}, "k_min=4 is larger than k_max=3"),
        ({"llm_rounds": 60}, "leaves no iteration of max_iter=300"),
    ],
)
def test_bad_settings_fail_before_any_request(engine, embedder, stub, services, tmp_path, settings, message):
    service = sweep_service(embedder, services, "extractive")
    with pytest.raises(InputError, match=message):
        service.run(CORPUS[0], config(**settings), tmp_path)
    assert stub.stats.requests_total == 0
    assert GroupRepository(engine).list_groups() == [] and not tmp_path.joinpath("report.json").exists()


def test_bad_inputs_and_specs(embedder, stub, services, tmp_path):
    with pytest.raises(InputError, match="must be 'extractive' or PROVIDER:MODEL"):
        sweep_service(embedder, services, "gpt-4o")
    with pytest.raises(ConfigurationError, match="unknown provider 'nosuch'"):
        sweep_service(embedder, services, "nosuch:model")
    service = sweep_service(embedder, services)
    with pytest.raises(InputError, match="none of the 3 texts is usable"):
        service.run(["", " ", "\n"], config(k_max=2), tmp_path)
    with pytest.raises(InputError, match="2 labels for 3 texts"):
        service.run(["a", "b", "c"], config(k_max=2), tmp_path, labels=["x", "y"])
    assert stub.stats.requests_total == 0


LOCAL_TOPICS = {
    "cooking": [
        "Simmer the tomato sauce with garlic and basil for twenty minutes.",
        "Knead the bread dough until it is smooth and elastic.",
        "Roast the chicken at 200 degrees until the skin is crisp.",
        "Whisk the eggs with sugar before folding in the flour.",
        "Season the soup with salt, pepper and fresh thyme.",
        "Fry the onions slowly in butter until they caramelise.",
        "Marinate the beef overnight in soy sauce and ginger.",
        "Bake the chocolate cake for forty minutes in a hot oven.",
        "Chop the carrots and celery for the vegetable stock.",
        "Grill the salmon fillets with lemon and dill.",
        "Boil the pasta in salted water until al dente.",
        "Stir the risotto often and add the broth a ladle at a time.",
    ],
    "football": [
        "The striker scored twice in the second half of the match.",
        "The goalkeeper saved a penalty in the final minute.",
        "The referee showed a red card to the defender.",
        "The team won the league after a draw on the last matchday.",
        "The coach changed the formation at half time.",
        "Fans filled the stadium for the cup final.",
        "The midfielder signed a new contract with the club.",
        "A header from a corner kick decided the derby.",
        "The winger was caught offside three times.",
        "The club sacked its manager after five straight defeats.",
        "The captain lifted the trophy in front of the supporters.",
        "The match went to extra time and then to penalties.",
    ],
    "astronomy": [
        "The telescope captured images of a distant spiral galaxy.",
        "Jupiter's moons orbit the giant planet in a few days.",
        "A supernova explosion can outshine an entire galaxy.",
        "The probe measured the magnetic field of Saturn.",
        "Astronomers discovered an exoplanet in the habitable zone.",
        "The lunar eclipse turned the Moon a deep red.",
        "Black holes bend light with their enormous gravity.",
        "The comet's tail points away from the Sun.",
        "Mars has the tallest volcano in the solar system.",
        "Neutron stars spin hundreds of times per second.",
        "The Milky Way contains hundreds of billions of stars.",
        "A meteor shower lit up the night sky in August.",
    ],
}


@pytest.mark.torch
def test_local_model_recovers_three_topics(engine, services, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = [t for topic in LOCAL_TOPICS.values() for t in topic]
    labels = [name for name, topic in LOCAL_TOPICS.items() for _ in topic]
    embedder = EmbeddingService(engine, create_provider("local"), provider_name="local", model="all-MiniLM-L6-v2")
    out = sweep_service(embedder, services, "extractive").run(
        texts, config(k_min=2, k_max=5, llm_rounds=2), tmp_path, labels=labels
    )
    k3 = next(row for row in out.summary()["per_k"] if row["k"] == 3)
    assert k3["ari"] > 0.8 and k3["nmi"] > 0.8
    assert out.report["pca"]["dim"] == 36 and out.report["pca"]["clamped"]  # 36 texts < 50 dimensions
    assert any("more than the 36 embedded texts" in note for note in out.report["notes"])


def test_large_n_plan_is_reported_and_the_clusters_table_is_streamed_per_k(engine, services, tmp_path):
    """Above large_n (lowered here) the sweep samples and says so in the report; clusters.parquet is written
    one row group per K (streamed), holding every (row, K). Labelled blobs through the real embed path."""
    import pyarrow.parquet as pq

    from studyllm_core.testing import OpenAIStubServer

    blobs = [0, 4, 8]  # different parent directions: separated blobs
    texts = [f"c{blobs[i % 3]} item {i}" for i in range(120)]
    with OpenAIStubServer(dim=64, api_keys=[KEY], vectors="blobs") as srv:
        provider = create_provider("openai-compatible", base_url=srv.base_url, api_key=KEY, timeout=5.0)
        embedder = EmbeddingService(engine, provider, provider_name="openai-compatible", model="stub-blobs")
        settings = config(k_min=2, k_max=4, large_n=60, fit_sample_size=50, criteria_sample_size=40,
                          silhouette_sample_size=30)
        out = sweep_service(embedder, services).run(texts, settings, tmp_path / "out",
                                                    labels=[t.split()[0] for t in texts])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["plan"]["large"] and report["plan"]["fit_sample"] == 50
    assert any(note.startswith("N=120 > 60: sampled k-means") for note in report["notes"])
    by_k = {row["k"]: row for row in out.summary()["per_k"]}
    assert by_k[3]["nmi"] == pytest.approx(1.0)  # the blob number is the reference label
    # the second pass runs on the fit sample and refines on all rows, as the restarts do
    assert report["choice"]["second_pass"]["skipped"] is None and report["choice"]["second_pass"]["ks"] == [2, 3, 4]
    clusters = pq.ParquetFile(tmp_path / "out" / "clusters.parquet")
    assert clusters.metadata.num_row_groups == 3  # one per K, written as they are made
    table = clusters.read().to_pandas()
    assert len(table) == 3 * 120 and list(table.columns) == ["row", "k", "label", "text", "reference"]
    assert table[table["k"] == 3]["text"].tolist() == texts
    assert ArtifactService(engine, tmp_path).verify(tmp_path / "out" / "clusters.parquet")  # recorded sha256 matches


def test_blobs_mode_puts_texts_near_their_blob_and_leaves_the_default_alone():
    from studyllm_core.testing.openai_server import OpenAIStubServer, stub_embedding

    with OpenAIStubServer(dim=64) as plain, OpenAIStubServer(dim=64, vectors="blobs") as blob:
        assert plain.embedding("c3 item 1") == stub_embedding("stub-embedding", "c3 item 1", 64)
        assert blob.embedding("not a blob") == stub_embedding("stub-embedding", "not a blob", 64)
        same = np.array([blob.embedding(f"c0 item {i}") for i in range(20)])
        other = np.array([blob.embedding(f"c8 item {i}") for i in range(20)])
        within, across = (same @ same.T)[np.triu_indices(20, 1)].mean(), (same @ other.T).mean()
        assert within > 0.15 > abs(across)  # near their blob's direction; blobs of other parents apart
        assert blob.embedding("c0 item 1") == same[1].tolist()  # deterministic
    with pytest.raises(ValueError, match="vectors="):
        OpenAIStubServer(vectors="clusters")


def test_the_embeddings_are_freed_before_the_k_loop_and_each_step_says_its_time(embedder, services, tmp_path):
    """Bounded memory: once projected, the N x d embeddings are released, so the K loop holds only the
    N x pca_dim projection (at a million 384-d texts the embeddings are 1.5 GB of the peak). The progress
    lines say what each step took."""
    import re
    import weakref

    read = embedder.embed
    embeddings: list[weakref.ref] = []

    def embed(*args, **kwargs):
        outcome = read(*args, **kwargs)
        embeddings.append(weakref.ref(outcome.vectors))
        return outcome

    embedder.embed = embed
    lines: list[str] = []
    alive_during_k: list[bool] = []

    def notice(line: str) -> None:
        lines.append(line)
        if line.startswith("K="):
            alive_during_k.append(embeddings[0]() is not None)

    texts, labels = CORPUS
    sweep_service(embedder, services).run(list(texts), config(k_min=2, k_max=3), tmp_path / "out", notice=notice)
    assert alive_during_k == [False, False]
    timed = re.compile(r" in \d+\.\d s$")
    assert lines[0].startswith(f"{len(texts)} texts ({len(texts)} unique): ") and timed.search(lines[0])
    assert lines[1].startswith("PCA ") and timed.search(lines[1])
    assert all(timed.search(line) for line in lines if line.startswith("K="))


@pytest.mark.parametrize("bad", [None, "", "   ", "x" * 50, "nul\x00here", "lone \udc80"])
def test_usable_count_matches_the_check_of_each_text(bad):
    """A clean file is counted whole (one scan); one text the service would refuse makes it count text by text."""
    from studyllm_core.services.capture.cache_key import unusable_reason
    from studyllm_core.services.sweep.service import usable_count

    clean = [f"text {i}" for i in range(20)]
    assert usable_count(clean, 40) == 20
    mixed = clean[:7] + [bad] + clean[7:]
    assert usable_count(mixed, 40) == sum(unusable_reason(t, 40) is None for t in mixed) == 20
