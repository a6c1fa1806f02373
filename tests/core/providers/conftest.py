"""Fixtures for provider tests: a real loopback OpenAI stub server and providers pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from studyllm_core.providers.base import Provider
from studyllm_core.providers.registry import create_provider
from studyllm_core.providers.settings import PROVIDER_ENV, REQUEST_TIMEOUT_ENV
from studyllm_core.testing import OpenAIStubServer

T = TypeVar("T")

from support import TEST_API_KEY as API_KEY
from support import WRONG_API_KEY as WRONG_KEY

HTTP_PROVIDERS = ("openai", "openai-compatible", "azure", "hyperbolic")
STUB_DIM = 16


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    """`run(coro)`: one coroutine on a fresh event loop (create providers inside it)."""
    return asyncio.run


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def wrong_key() -> str:
    return WRONG_KEY


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No provider variables in the environment and no .env in the cwd."""
    for variables in PROVIDER_ENV.values():
        for var in variables:
            monkeypatch.delenv(var.name, raising=False)
    monkeypatch.delenv(REQUEST_TIMEOUT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def provider_for(name: str, srv: OpenAIStubServer, *, api_key: str = API_KEY, timeout: float = 5.0, **extra: Any) -> Provider:
    """Provider `name` configured against `srv`."""
    if name == "azure":
        return create_provider(name, endpoint=srv.azure_endpoint, api_key=api_key, api_version="2024-10-21", timeout=timeout, **extra)
    return create_provider(name, base_url=srv.base_url, api_key=api_key, timeout=timeout, **extra)


@pytest.fixture
def make_provider(stub: OpenAIStubServer) -> Callable[..., Provider]:
    """`make_provider(name, **settings)` -> a provider pointed at the `stub` server."""
    return lambda name, **kw: provider_for(name, stub, **kw)
