"""SweepRecipe on the real database, with summaries and embeddings over real HTTP to the loopback
server: every requested K ends done, failed (with its reason) or not run, and the done K survive a
failure or an interrupt."""

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig
from studyllm_core.errors import InputError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.capture.retry import RetryPolicy
from studyllm_core.services.capture.summarization import SummarizationService
from studyllm_core.services.sweep.recipe import (
    SweepRecipe,
    format_ks,
    metrics_table,
    summaries_table,
    sweep_report,
)
from support import TEST_API_KEY, topic_corpus

TEXTS, LABELS = topic_corpus(per_topic=10)
FAST_RETRY = RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02)


@pytest.fixture
def recipe(engine, stub):
    def provider():
        return create_provider("openai-compatible", base_url=stub.base_url, api_key=TEST_API_KEY, timeout=5.0)

    embedder = EmbeddingService(engine, provider(), provider_name="openai-compatible", model="stub-embedding", retry=FAST_RETRY)
    summarizer = SummarizationService(engine, provider(), provider_name="openai-compatible", model="stub-chat", retry=FAST_RETRY)
    yield SweepRecipe(embedder, summarizer)
    summarizer.close()


def vectors(recipe) -> np.ndarray:
    return recipe.embedder.embed(TEXTS).vectors


def settings(**kw) -> SweepConfig:
    return SweepConfig(**{"k_min": 2, "k_max": 4, "n_restarts": 2, "pca_dim": 8, "llm_rounds": 1, **kw})


def test_every_k_done_with_round_summaries_as_the_cluster_summaries(recipe):
    run = recipe.run(vectors(recipe), TEXTS, settings())
    assert run.complete and run.done == [2, 3, 4] and run.problem() is None
    assert run.n_summarize_calls == 2 + 3 + 4  # K x llm_rounds, on the chosen restart only
    table = summaries_table(run.results, np.arange(len(TEXTS)), TEXTS)
    assert table["summary"].notna().all() and len(table) == 2 + 3 + 4
    assert table[table["k"] == 3]["summary"].tolist() == run.results[1].clustering.summaries
    report = sweep_report(metrics_table(run))
    assert report.best_k == run.choice().k and report.problem() is None


def test_a_failed_k_keeps_the_done_ones_and_names_the_rest(recipe, stub):
    def break_the_summariser_after_k2(line: str) -> None:
        if line.startswith("K=2 "):
            stub.faults.set(known_models=["stub-embedding"])  # every chat call from now on: 404 unknown model

    run = recipe.run(vectors(recipe), TEXTS, settings(), notice=break_the_summariser_after_k2)
    assert run.done == [2] and list(run.failures) == [3] and run.not_run == [4]
    assert "stub-chat" in run.failures[3] and "\n" not in run.failures[3]
    assert run.problem().startswith("K=3 failed: ") and run.problem().endswith("; K 4 not run")
    assert run.statuses() == {"2": "done", "3": f"failed: {run.failures[3]}", "4": "not run"}
    table = metrics_table(run)
    assert table["status"].tolist() == ["done", "failed", "not run"]
    report = sweep_report(table)
    assert report.best_k == 2 and report.failed.keys() == {3} and report.not_done == [3, 4]


def test_an_interrupt_is_returned_with_the_done_k(recipe):
    def interrupt_after_k3(line: str) -> None:
        if line.startswith("K=3 "):
            raise KeyboardInterrupt

    run = recipe.run(vectors(recipe), TEXTS, settings(), notice=interrupt_after_k3)
    assert isinstance(run.error, KeyboardInterrupt)
    assert run.done == [2, 3] and run.failures == {} and run.not_run == [4]
    assert sweep_report(metrics_table(run)).problem() == "K 4 missing (not run)"


def test_k_the_texts_cannot_take_is_refused_before_any_call(recipe, stub):
    before = stub.stats.requests_total
    with pytest.raises(InputError, match=r"^k_max=31 exceeds the 30 usable texts: use k_max <= 30$"):
        recipe.run(np.zeros((30, 8)), TEXTS, settings(k_max=31))
    assert stub.stats.requests_total == before


def test_format_ks():
    assert format_ks([9, 3, 4, 5, 11, 12]) == "3..5, 9, 11..12"
