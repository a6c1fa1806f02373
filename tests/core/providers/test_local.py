"""The local provider for real: the packaged all-MiniLM-L6-v2, offline, loaded once for this module."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.registry import create_provider

pytestmark = pytest.mark.torch

TEXTS = ["The cat sits on the mat.", "A kitten rests on a rug.", "Quarterly revenue rose by ten percent."]


@pytest.fixture(scope="module")
def local_provider():
    """One provider (and so one model load) for the whole module."""
    return create_provider("local")


def test_local_embeddings_are_384d_normalised_deterministic(local_provider):
    async def go():
        # Concurrent calls share the one model; the first triggers the lazy load.
        return await asyncio.gather(
            local_provider.embed(TEXTS, model="all-MiniLM-L6-v2"),
            local_provider.embed(TEXTS, model="sentence-transformers/all-MiniLM-L6-v2"),
        )

    a, b = asyncio.run(go())
    assert a.vectors.shape == (3, 384) and a.vectors.dtype == np.float32
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    sims = a.vectors @ a.vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # cat/kitten closer than cat/revenue: a real model
    assert a.usage.prompt_tokens > 3 * 5 and a.provider == "local" and a.model == "all-MiniLM-L6-v2"
    # Same text, same vector, whatever else is in the batch.
    single = asyncio.run(local_provider.embed(TEXTS[:1], model="all-MiniLM-L6-v2"))
    np.testing.assert_allclose(single.vectors[0], a.vectors[0], atol=1e-5)


def test_local_model_loads_once(local_provider):
    from studyllm_core.providers import local

    asyncio.run(local_provider.embed(["warm"], model="all-MiniLM-L6-v2"))
    other = create_provider("local")
    asyncio.run(other.embed(["again"], model="all-MiniLM-L6-v2"))
    assert len(local._models) == 1  # offline: tests/core/test_process_policy.py


def test_local_rejects_what_it_cannot_do(local_provider):
    with pytest.raises(errors.ModelNotFoundError, match="all-MiniLM-L6-v2"):
        asyncio.run(local_provider.embed(["x"], model="text-embedding-3-small"))
    with pytest.raises(errors.BadRequestError, match="384"):
        asyncio.run(local_provider.embed(["x"], model="all-MiniLM-L6-v2", dimensions=128))
    with pytest.raises(errors.UnsupportedOperation):
        asyncio.run(local_provider.chat([], model="all-MiniLM-L6-v2"))
    assert asyncio.run(local_provider.embed([], model="all-MiniLM-L6-v2")).vectors.shape == (0, 384)


def test_missing_extra_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    with pytest.raises(errors.ConfigurationError, match=r"pip install 'studyllm\[local\]'"):
        create_provider("local")
