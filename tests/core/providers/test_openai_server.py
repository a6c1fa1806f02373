"""The stub server itself: admin endpoints, per-text counts, seeded random faults, concurrency, subprocess mode."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.base import ChatMessage
from studyllm_core.providers.registry import create_provider
from studyllm_core.testing import FAULT_KINDS, OpenAIStubServer, StubAdminClient, stub_embedding, stub_server_process


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_admin_endpoints_drive_faults_and_report_stats(stub, api_key):
    admin = StubAdminClient(stub.base_url)
    auth = {"Authorization": f"Bearer {api_key}"}
    cfg = admin.set_faults(latency_s=0.01, retry_after_s=2, fail_next={"n": 2, "kind": "429", "endpoint": "embeddings"})
    assert cfg["latency_s"] == 0.01 and [q["kind"] for q in cfg["queued"]] == ["rate_limit", "rate_limit"]
    assert _post(stub.base_url + "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, auth)[0] == 200
    status, headers, body = _post(stub.base_url + "/embeddings", {"model": "m", "input": ["a"]}, auth)
    assert status == 429 and headers["Retry-After"] == "2" and body["error"]["code"] == "rate_limit_exceeded"
    assert _post(stub.base_url + "/embeddings", {"model": "m", "input": ["a"]}, auth)[0] == 429
    status, _, body = _post(stub.base_url + "/embeddings", {"model": "m", "input": ["a", "b"]}, auth)
    assert status == 200 and body["data"][1]["embedding"] == stub_embedding("m", "b", 16)
    stats = admin.stats()
    assert stats["requests_total"] == 4
    assert stats["requests_by_endpoint"] == {"chat": 1, "embeddings": 3}
    assert stats["faults_injected"] == {"rate_limit": 2}
    assert stats["embedding_text_counts"] == {"a": {"ok": 1, "total": 3}, "b": {"ok": 1, "total": 1}}
    assert "embedding_text_counts" not in admin.stats(include_texts=False)
    assert admin.faults()["queued"] == []
    # Bad admin input is a 400 with a reason, not a crash.
    with pytest.raises(urllib.error.HTTPError) as info:
        admin.set_faults(kinds=["no-such-kind"])
    assert info.value.code == 400
    admin.reset()
    assert admin.stats()["requests_total"] == 0 and admin.faults()["latency_s"] == 0.0


def test_401_echoes_key_and_unknown_routes_are_404(stub):
    status, _, body = _post(stub.base_url + "/chat/completions", {"model": "m", "messages": []},
                            {"Authorization": "Bearer sk-not-valid-000000"})
    assert status == 401 and "sk-not-valid-000000" in body["error"]["message"]
    assert _post(stub.root_url + "/v2/nothing", {})[0] == 404
    status, _, body = _post(stub.root_url + "/openai/deployments/d/embeddings", {"input": ["x"]}, {"api-key": "k"})
    assert status == 400 and "api-version" in body["error"]["message"]
    with urllib.request.urlopen(stub.base_url + "/models", timeout=5) as resp:
        assert {m["id"] for m in json.loads(resp.read())["data"]} == {"stub-chat", "stub-embedding"}


def test_seeded_random_faults_are_reproducible():
    def run_once() -> list[str | None]:
        with OpenAIStubServer() as srv:
            srv.faults.set(rate=0.5, kinds={"rate_limit": 1, "nan": 1}, seed=42)
            return [srv.faults.draw("embeddings") for _ in range(40)] + [srv.faults.draw("chat") for _ in range(40)]

    a, b = run_once(), run_once()
    assert a == b and {"rate_limit", "nan", None} == set(a[:40])
    assert "nan" not in a[40:]  # embedding-only kinds are never drawn for chat
    assert set(FAULT_KINDS) >= {k for k in a if k}


def test_each_text_counted_and_first_success_recorded(stub, make_provider, run):
    """The per-text counts prove how many times each text reached /embeddings."""
    stub.faults.fail_next(1, "server_error", endpoint="embeddings")

    async def go():
        p = make_provider("openai")
        try:
            with pytest.raises(errors.ServerError):
                await p.embed(["u1", "u2"], model="m")
            await p.embed(["u1", "u2"], model="m")
            await p.embed(["u3"], model="m")
        finally:
            await p.aclose()

    run(go())
    assert stub.stats.text_count("u1") == {"ok": 1, "total": 2}
    assert stub.stats.text_count("u3") == {"ok": 1, "total": 1}
    snap = stub.stats.snapshot()
    assert snap["embedding_texts_max_ok_per_text"] == 1 and snap["embedding_texts_unique"] == 3


def test_handles_32_concurrent_requests_in_parallel(api_key):
    # Long enough that 32 requests sent at once are all still being answered when the last one arrives.
    latency = 1.0
    with OpenAIStubServer(latency_s=latency, dim=8, api_keys=[api_key]) as srv:

        async def go():
            p = create_provider("openai", base_url=srv.base_url, api_key=api_key, timeout=30)
            h = create_provider("hyperbolic", base_url=srv.base_url, api_key=api_key, timeout=30)
            try:
                return await asyncio.gather(
                    *[p.embed([f"text {i}"], model="m") for i in range(16)],
                    *[h.chat([ChatMessage("user", f"q {i}")], model="m") for i in range(16)],
                )
            finally:
                await p.aclose()
                await h.aclose()

        results = asyncio.run(go())
        assert len(results) == 32
        # A server that answered one request at a time would never have had more than one in flight.
        assert srv.stats.requests_in_flight_peak == 32
        assert srv.stats.requests_in_flight == 0
        for i, r in enumerate(results[:16]):
            np.testing.assert_array_equal(r.vectors[0], np.float32(stub_embedding("m", f"text {i}", 8)))
        assert [r.text for r in results[16:]] == [f"stub reply: q {i}" for i in range(16)]
        assert srv.stats.requests_total == 32
        snap = srv.stats.snapshot()
        assert snap["requests_in_flight_peak"] == 32 and snap["requests_in_flight"] == 0


def test_in_flight_peak_counts_overlap_not_requests(api_key):
    """Sequential requests leave the peak at 1: it measures overlap, not volume."""
    with OpenAIStubServer(latency_s=0.01, dim=8, api_keys=[api_key]) as srv:
        for i in range(5):
            status, _, _ = _post(srv.base_url + "/embeddings", {"model": "m", "input": f"seq {i}"},
                                 {"Authorization": f"Bearer {api_key}"})
            assert status == 200
        assert srv.stats.requests_total == 5
        assert srv.stats.requests_in_flight_peak == 1 and srv.stats.requests_in_flight == 0
        srv.stats.reset()
        assert srv.stats.requests_in_flight_peak == 0


def test_close_releases_hung_requests():
    # The hang outlasts the client's timeout, so a close() that did not wake the handler would show
    # up as a client timeout instead of an answer or a dropped connection.
    srv = OpenAIStubServer(hang_s=300).start()
    srv.faults.fail_next(1, "hang")
    outcome: dict = {}

    async def request():
        async with httpx.AsyncClient(timeout=120) as client:
            try:
                response = await client.post(srv.base_url + "/chat/completions",
                                             json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
                outcome["status"] = response.status_code
            except httpx.HTTPError as exc:
                outcome["error"] = exc

    async def go():
        task = asyncio.create_task(request())
        while not srv.stats.snapshot()["faults_injected"].get("hang"):  # wait until the handler hangs
            assert not task.done(), outcome
            await asyncio.sleep(0.01)
        assert srv.stats.requests_in_flight == 1
        await asyncio.to_thread(srv.close)
        await task

    asyncio.run(go())
    assert not srv.serving  # the serving thread has ended
    assert srv.stats.requests_in_flight == 0  # the hung handler was woken and finished
    assert srv.stats.snapshot()["faults_injected"] == {"hang": 1}
    # The client's request ended because of close(): with the hung answer or a dropped connection, not a timeout.
    assert outcome.get("status") == 504 or (
        isinstance(outcome.get("error"), httpx.TransportError) and not isinstance(outcome["error"], httpx.TimeoutException)
    ), outcome


def test_subprocess_mode_prints_url_and_is_driven_over_http(api_key, run):
    with stub_server_process("--latency", "0.01", "--dim", "64", "--api-key", api_key, "--model", "m") as (base_url, admin):
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        admin.fail_next(1, "wrong_dim")

        async def go():
            p = create_provider("openai-compatible", base_url=base_url, api_key=api_key, timeout=5)
            try:
                with pytest.raises(errors.MalformedResponseError):
                    await p.embed(["x", "y"], model="m")
                with pytest.raises(errors.ModelNotFoundError):
                    await p.embed(["x"], model="other")
                return await p.embed(["x"], model="m")
            finally:
                await p.aclose()

        r = run(go())
        assert r.vectors.shape == (1, 64)
        stats = admin.stats()
        assert stats["faults_injected"] == {"wrong_dim": 1} and stats["requests_by_endpoint"] == {"embeddings": 3}
