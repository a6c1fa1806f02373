"""Test helpers shipped with studyllm: a loopback OpenAI-compatible server with switchable faults.

Stdlib and numpy only, so benchmarks and other projects' tests can use it without extra dependencies. The names
below are imported on first use (PEP 562), so `python -m studyllm_core.testing.openai_server` runs the
server module once, without runpy's "found in sys.modules" RuntimeWarning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FAULT_KINDS": "faults",
    "FaultConfig": "faults",
    "Faults": "faults",
    "Stats": "faults",
    "OpenAIStubServer": "openai_server",
    "stub_embedding": "openai_server",
    "stub_embeddings": "openai_server",
    "stub_reply": "openai_server",
    "StubAdminClient": "stub_control",
    "stub_server_process": "stub_control",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
