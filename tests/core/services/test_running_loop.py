"""Every synchronous core API works inside a running event loop (a Jupyter kernel), and the async variants await.

One bridge for the whole core: synchronous methods run their coroutines on a `LoopThread`, never with
`asyncio.run` (which raises "cannot be called from a running event loop").
"""

from __future__ import annotations

import asyncio
import pathlib
import re

import studyllm_core
from studyllm_core.algorithms import SweepConfig
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.conversation import ConversationService
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.capture.retry import RetryPolicy
from studyllm_core.services.study.similarity import SimilarityService
from studyllm_core.services.sweep.service import SweepService

from support import TEST_API_KEY as KEY
from support import topic_corpus

TEXTS, LABELS = topic_corpus()


def make_embedder(engine, stub) -> EmbeddingService:
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=KEY, timeout=5.0)
    return EmbeddingService(
        engine, provider, provider_name="openai-compatible", model="stub-embedding",
        retry=RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02),
    )


def test_synchronous_apis_work_inside_a_running_event_loop(engine, stub, tmp_path):
    embedder = make_embedder(engine, stub)
    config = SweepConfig(k_min=2, k_max=4, n_restarts=2, pca_dim=20, llm_rounds=1, seed=0)

    async def notebook_cell():
        asyncio.get_running_loop()  # the kernel's loop is running, as in every Jupyter cell
        outcome = embedder.embed(TEXTS[:10])
        with SweepService(embedder, "extractive") as sweeps:  # the summariser runs on InferenceService's loop
            swept = sweeps.run(TEXTS, config, tmp_path / "sweep")
        found = SimilarityService(engine).search_text(TEXTS[0], embedder, k=3)
        return outcome, swept, found

    outcome, swept, found = asyncio.run(notebook_cell())
    assert outcome.embedded == 10 and outcome.failed == 0
    assert swept.best_k in (2, 3, 4) and swept.report["counts"]["summarize_calls"] > 0
    assert len(found) == 3
    embedder.close()


def test_async_variants_await_without_blocking_the_loop(engine, stub, tmp_path):
    embedder = make_embedder(engine, stub)
    config = SweepConfig(k_min=2, k_max=4, n_restarts=2, pca_dim=20, llm_rounds=0, seed=0)

    async def notebook_cell():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.create_task(ticker())
        outcome = await embedder.aembed(TEXTS[:5])
        with SweepService(embedder) as sweeps:
            swept = await sweeps.arun(TEXTS, config, tmp_path / "sweep")
        found = await SimilarityService(engine).asearch_text(TEXTS[1], embedder, k=2)
        beat.cancel()
        return outcome, swept, found, ticks

    outcome, swept, found, ticks = asyncio.run(notebook_cell())
    assert outcome.embedded == 5 and swept.best_k in (2, 3, 4) and len(found) == 2
    assert ticks > 0  # the loop kept running while the sweep worked
    embedder.close()


def test_conversation_sync_api_inside_a_running_loop(engine, stub):
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=KEY, timeout=5.0)
    inference = InferenceService(engine, provider, provider_name="openai-compatible", model="stub-chat")
    service = ConversationService(inference)

    async def notebook_cell():
        conversation = service.start()
        return service.send(conversation, "hello")

    reply = asyncio.run(notebook_cell())
    assert reply.ok
    inference.close()


def test_the_core_never_calls_asyncio_run():
    """`asyncio.run` raises inside a running loop: the core bridges with LoopThread only."""
    root = pathlib.Path(studyllm_core.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\basyncio\.run\(|run_until_complete\(", line) and path.name != "loop_thread.py"
    ]
    assert offenders == []
