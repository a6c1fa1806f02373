"""Test helpers shipped with studyllm: a loopback OpenAI-compatible server with switchable faults.

Stdlib only, so benchmarks and other projects' tests can use it without extra dependencies.
"""

from studyllm_core.testing.faults import FAULT_KINDS, FaultConfig, Faults, Stats
from studyllm_core.testing.openai_server import OpenAIStubServer, stub_embedding, stub_reply
from studyllm_core.testing.stub_control import StubAdminClient, stub_server_process

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "Faults",
    "OpenAIStubServer",
    "Stats",
    "StubAdminClient",
    "stub_embedding",
    "stub_reply",
    "stub_server_process",
]
