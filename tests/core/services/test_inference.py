"""InferenceService over real HTTP (loopback server) and the real database."""

import asyncio
import json
import time

import pytest
from sqlalchemy import text

from studyllm_core.db.calls import CallFilter, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.providers.base import ChatMessage
from studyllm_core.providers.errors import AuthenticationError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.capture.preprocess import Preprocessor
from studyllm_core.services.capture.ratelimit import RateLimit
from studyllm_core.services.capture.retry import RetryPolicy

from support import TEST_API_KEY as KEY
from support import WRONG_API_KEY

FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait_s=0.01, max_wait_s=0.05)


@pytest.fixture
def make_service(engine, stub):
    made = []

    def make(*, key=KEY, timeout=5.0, retry=FAST_RETRY, provider_name="openai-compatible", **kw):
        provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=key, timeout=timeout)
        service = InferenceService(engine, provider, provider_name=provider_name, model="stub-chat", retry=retry, **kw)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


def all_rows_text(engine) -> str:
    with engine.connect() as conn:
        return "\n".join(conn.execute(text("SELECT row_to_json(r)::text FROM raw_calls r")).scalars())


def test_a_call_is_recorded_with_prompt_messages_and_metadata(engine, stub, make_service):
    result = make_service().run("What is   a cluster?", temperature=0.5, max_tokens=50, seed=7)
    assert result.ok and result.text == "stub reply: What is a cluster?" and result.attempts == 1
    assert result.usage.total_tokens > 0 and result.latency_ms > 0
    [call] = RawCallRepository(engine).list()
    assert call.id == result.raw_call_id and call.status == "success" and call.modality == "chat"
    assert call.request_json["prompt"] == "What is   a cluster?"
    assert call.request_json["messages"] == [{"role": "user", "content": "What is   a cluster?"}]
    assert call.request_json["temperature"] == 0.5 and call.request_json["params"] == {"seed": 7}
    assert call.response_json["text"] == result.text and call.tokens_json["total_tokens"] == result.usage.total_tokens
    meta = call.metadata_json
    assert meta["attempt"] == 1 and meta["sample_index"] == 0 and meta["request_hash"] == result.request_hash
    assert call.request_hash == result.request_hash
    assert json.loads(stub.last_request["body"])["seed"] == 7
    assert [c.id for c in RawCallRepository(engine).search_prompts("cluster")] == [call.id]


def test_transient_faults_are_retried_and_each_attempt_recorded_before_the_success(engine, stub, make_service):
    stub.faults.fail_next(1, "server_error")
    stub.faults.fail_next(1, "unavailable")
    stub.faults.fail_next(1, "malformed_json")
    result = make_service().run("retry me")
    assert result.ok and result.attempts == 4
    calls = RawCallRepository(engine).list()
    assert [c.status for c in calls] == ["failed", "failed", "failed", "success"]
    assert [c.error_json["attempt"] for c in calls[:3]] == [1, 2, 3]
    assert [c.error_json["type"] for c in calls[:3]] == ["server_error", "server_error", "malformed_response"]
    assert calls[3].metadata_json["attempt"] == 4 and calls[3].id == result.raw_call_id
    assert result.attempt_call_ids == [c.id for c in calls]
    assert len({c.request_hash for c in calls}) == 1


def test_retry_after_is_honoured(engine, stub, make_service):
    stub.faults.set(retry_after_s=1.0)
    stub.faults.fail_next(1, "rate_limit")
    started = time.perf_counter()
    result = make_service().run("wait for me")
    assert time.perf_counter() - started >= 0.95  # the server's Retry-After, not the 10 ms backoff
    assert result.ok and result.attempts == 2
    failed = RawCallRepository(engine).list(CallFilter(status="failed"))[0]
    assert failed.error_json["type"] == "rate_limit" and failed.error_json["retry_after"] == pytest.approx(1.0)


def test_a_request_timeout_is_recorded_as_timeout(engine, stub, make_service):
    stub.faults.set(hang_s=3.0)
    stub.faults.fail_next(1, "hang")
    result = make_service(timeout=0.3, retry=RetryPolicy(max_attempts=1)).run("slow")
    assert not result.ok and result.error_type == "timeout"
    [call] = RawCallRepository(engine).list()
    assert call.status == "timeout" and call.error_json["attempt"] == 1


def test_a_bad_key_is_attempted_once_and_stops_the_batch(engine, stub, make_service):
    with pytest.raises(AuthenticationError) as info:
        make_service(key=WRONG_API_KEY, concurrency=4).run_batch([f"prompt {i}" for i in range(20)])
    assert WRONG_API_KEY not in str(info.value)
    assert stub.stats.requests_total == 1
    [call] = RawCallRepository(engine).list()
    assert call.status == "failed" and call.error_json["type"] == "auth" and call.error_json["attempt"] == 1
    assert WRONG_API_KEY not in all_rows_text(engine)


def test_a_single_run_reports_a_fatal_error_in_its_result(engine, stub, make_service):
    result = make_service(key=WRONG_API_KEY).run("hello")
    assert not result.ok and result.attempts == 1 and result.error_type == "auth"
    assert WRONG_API_KEY not in result.error
    with pytest.raises(AuthenticationError):
        result.raise_for_error()
    assert stub.stats.requests_total == 1


def test_a_fatal_error_mid_batch_stops_it_at_once(engine, stub, make_service):
    # Seeded random faults: with seed 0 and rate 0.3 the first three requests pass and the fourth gets a 401.
    stub.faults.set(latency_s=0.05, rate=0.3, kinds=["unauthorized"], seed=0)
    with pytest.raises(AuthenticationError):
        make_service(concurrency=2).run_batch([f"prompt {i}" for i in range(40)])
    assert stub.stats.requests_total < 10  # stopped at once, not 40 requests
    calls = RawCallRepository(engine).list(limit=1000)
    assert {c.status for c in calls} <= {"success", "failed", "cancelled"}
    assert [c.error_json["type"] for c in calls if c.status == "failed"] == ["auth"]
    assert KEY not in all_rows_text(engine)


def test_attempts_in_flight_when_a_run_is_cancelled_are_recorded_as_cancelled(engine, stub, make_service):
    # Every answer takes long enough that nothing after the probe can finish before the cancel.
    stub.faults.set(latency_s=3.0)
    service = make_service(concurrency=3, timeout=30.0)

    async def cancel_midway():
        task = asyncio.create_task(service.arun_batch([f"prompt {i}" for i in range(20)]))
        # Wait until the probe is done and three requests are in flight at the server.
        while not (stub.stats.requests_total == 4 and stub.stats.requests_in_flight == 3):
            assert not task.done() and stub.stats.requests_total <= 4
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await service.provider.aclose()

    asyncio.run(cancel_midway())
    calls = RawCallRepository(engine).list()
    assert calls[0].status == "success"
    assert len(calls) == 4  # the probe and the three that were in flight; nothing else started
    assert [c.status for c in calls[1:]] == ["cancelled"] * 3
    assert all(c.error_json["type"] == "cancelled" and c.error_json["attempt"] == 1 for c in calls[1:])


def test_identical_concurrent_requests_make_one_api_call(engine, stub, make_service):
    stub.faults.set(latency_s=0.3)
    service = make_service()
    groups = GroupRepository(engine)
    g1, g2 = groups.ensure_group("batch", "one"), groups.ensure_group("batch", "two")

    async def both():
        try:
            return await asyncio.gather(service.arun("same prompt", group_id=g1), service.arun("same prompt", group_id=g2))
        finally:
            await service.provider.aclose()

    first, second = asyncio.run(both())
    assert stub.stats.requests_total == 1
    assert first.raw_call_id == second.raw_call_id and first.text == second.text
    assert sorted([first.shared, second.shared]) == [False, True]
    assert RawCallRepository(engine).count() == 1
    assert groups.member_ids(g1) == groups.member_ids(g2) == [first.raw_call_id]


def test_samples_are_separate_calls(engine, stub, make_service):
    out = make_service().run_samples("tell me a story", 3, temperature=1.0, group_name="stories")
    assert out.calls == 3 and out.succeeded == 3 and out.api_requests == 3
    assert stub.stats.requests_total == 3
    assert [r.sample_index for r in out.results] == [0, 1, 2]
    assert len({r.raw_call_id for r in out.results}) == 3 and len({r.request_hash for r in out.results}) == 3
    group = GroupRepository(engine).find_group("stories", "prompt_run")
    assert group.id == out.group_id
    assert sorted(GroupRepository(engine).member_ids(group.id)) == sorted(r.raw_call_id for r in out.results)
    calls = RawCallRepository(engine).list()
    assert sorted(c.metadata_json["sample_index"] for c in calls) == [0, 1, 2]


def test_a_batch_continues_past_empty_prompts_and_reports_them(engine, stub, make_service):
    prompts = ["first", "", "   \n\t", "second", "first", "bad \udcff utf8", [ChatMessage("system", "be brief")]]
    out = make_service().run_batch(prompts)
    assert (out.calls, out.succeeded, out.failed) == (7, 3, 4)
    assert sorted(out.failures) == [1, 2, 5, 6]
    assert "empty" in out.failures[1] and "UTF-8" in out.failures[5] and "no user message" in out.failures[6]
    assert out.api_requests == 2  # the repeated "first" shares the first one's call
    assert out.results[4].raw_call_id == out.results[0].raw_call_id and out.results[4].shared
    rejected = RawCallRepository(engine).list(CallFilter(status="failed"))
    assert len(rejected) == 4
    assert all(c.error_json["type"] == "invalid_input" and c.error_json["attempt"] == 0 for c in rejected)
    members = GroupRepository(engine).member_ids(out.group_id)
    assert sorted(members) == [c.id for c in RawCallRepository(engine).list()]
    assert GroupRepository(engine).get_group(out.group_id).group_type == "batch"


def test_the_rate_limit_spaces_requests(engine, stub, make_service):
    service = make_service(rate_limit=RateLimit(requests_per_minute=120), provider_name="rate-limited-stub", concurrency=8)
    started = time.perf_counter()
    out = service.run_batch([f"prompt {i}" for i in range(124)])
    elapsed = time.perf_counter() - started
    assert out.succeeded == 124
    # 120 per minute lets a burst of 120 through, then one every 0.5 s: the last 4 wait about 2 s.
    assert elapsed >= 1.5


def test_preprocessing_is_applied_and_both_prompts_are_recorded(engine, stub, make_service):
    pre = Preprocessor(redact_pii=True, template="Answer briefly.\n{prompt}")
    result = make_service(preprocess=pre).run("  mail  me at jane@example.org  ")
    sent = json.loads(stub.last_request["body"])["messages"][-1]["content"]
    assert sent == "Answer briefly.\nmail me at [EMAIL]" == result.prompt
    [call] = RawCallRepository(engine).list()
    assert call.request_json["prompt"] == sent
    assert call.request_json["original_prompt"] == "  mail  me at jane@example.org  "
    assert call.request_json["preprocess"]["template"] == "Answer briefly.\n{prompt}"


def test_the_sync_api_works_inside_a_running_event_loop(engine, stub, make_service):
    service = make_service()

    async def caller():
        return service.run("from a notebook")

    assert asyncio.run(caller()).text == "stub reply: from a notebook"
