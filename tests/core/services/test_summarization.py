"""SummarizationService with the offline extractive provider and with the loopback server's chat."""

import pytest

from studyllm_core.db.calls import RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import InputError
from studyllm_core.providers.errors import AuthenticationError, ContentFilterError
from studyllm_core.providers.extractive import summarize_texts
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.retry import RetryPolicy
from studyllm_core.services.capture.summarization import NO_TEXTS, SummarizationService, summarizer_from_spec

from support import TEST_API_KEY as KEY

CLUSTERS = [
    ["The cat sat on the mat.", "A cat slept on the warm mat.", "Dogs bark at night."],
    ["Stocks fell sharply today.", "Markets and stocks fell after the report.", "It rained."],
]


@pytest.fixture
def services():
    made = []
    yield made
    for service in made:
        service.close()


def stub_service(engine, stub, services, **kw):
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=kw.pop("key", KEY), timeout=5.0)
    service = SummarizationService(
        engine, provider, provider_name="openai-compatible", model="stub-chat",
        retry=RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02), **kw,
    )
    services.append(service)
    return service


def test_extractive_summaries_are_deterministic_and_recorded(engine, services):
    service = summarizer_from_spec("extractive", engine)
    services.append(service)
    first = service.summarize_batch(CLUSTERS, group_name="run-1")
    second = service.summarize_batch(CLUSTERS)
    assert first.ok and first.summaries == second.summaries
    assert first.summaries == [summarize_texts(cluster) for cluster in CLUSTERS]  # the provider's own answer
    assert all(summary in " ".join(cluster) for summary, cluster in zip(first.summaries, CLUSTERS))
    calls = RawCallRepository(engine).list()
    assert len(calls) == 4 and all(c.status == "success" and c.provider == "extractive" for c in calls)
    assert "- The cat sat on the mat." in calls[0].request_json["prompt"]
    group = GroupRepository(engine).find_group("run-1", "summarization_batch")
    assert group.id == first.group_id and first.group_id != second.group_id
    assert sorted(GroupRepository(engine).member_ids(group.id)) == sorted(first.raw_call_ids)


def test_chat_summaries_through_the_stub_and_partial_failures_are_reported(engine, stub, services):
    service = stub_service(engine, stub, services)
    stub.faults.fail_next(1, "content_filter")  # the first call (the first list) is refused
    out = service.summarize_batch([["alpha one", "alpha two"], [], ["  "], ["gamma"]])
    assert out.summaries[0] is None and out.summaries[1] is None and out.summaries[2] is None
    assert out.summaries[3].startswith("stub reply: ") and "- gamma" in out.summaries[3]
    assert sorted(out.failures) == [0, 1, 2]
    assert "filtered" in out.failures[0] and out.failures[1] == out.failures[2] == NO_TEXTS
    assert all(call_id is not None for call_id in out.raw_call_ids)  # failures are recorded too
    assert stub.stats.requests_total == 2
    members = GroupRepository(engine).member_ids(out.group_id)
    assert sorted(members) == sorted(out.raw_call_ids)


def test_the_summarize_fn_works_from_synchronous_code(engine, stub, services):
    service = stub_service(engine, stub, services)
    summarize = service.as_summarize_fn(group_name="kmeans-round")
    replies = [summarize([f"text {i}", f"other {i}"]) for i in range(3)]
    assert all(r.startswith("stub reply: ") for r in replies)
    group = GroupRepository(engine).find_group("kmeans-round", "summarization_batch")
    assert summarize.group_id == group.id
    assert GroupRepository(engine).member_ids(group.id) == summarize.raw_call_ids
    assert len(summarize.raw_call_ids) == 3
    stub.faults.fail_next(1, "content_filter")
    with pytest.raises(ContentFilterError):
        summarize(["refused"])
    with pytest.raises(InputError, match="none has content"):
        summarize(["", " "])


def test_the_summarize_fn_sends_a_round_of_clusters_concurrently(engine, stub, services):
    service = stub_service(engine, stub, services)
    summarize = service.as_summarize_fn(group_name="kmeans-many")
    stub.faults.set(latency_s=0.3)
    replies = summarize.many([[f"cluster {i} text", f"cluster {i} other"] for i in range(6)])
    assert len(replies) == 6 and all(r.startswith("stub reply: ") for r in replies)
    assert all(f"cluster {i} text" in reply for i, reply in enumerate(replies))  # in cluster order
    assert stub.stats.requests_in_flight_peak > 1  # sent concurrently, not one after another
    assert sorted(GroupRepository(engine).member_ids(summarize.group_id)) == sorted(summarize.raw_call_ids)
    assert len(set(summarize.raw_call_ids)) == 6


def test_a_bad_key_stops_the_batch_with_one_request(engine, stub, services):
    service = stub_service(engine, stub, services, key="sk-wrong-9876543210zyxwvuSECRET")
    with pytest.raises(AuthenticationError):
        service.summarize_batch(CLUSTERS * 5)
    assert stub.stats.requests_total == 1


def test_specs_are_checked(engine, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir("/")
    with pytest.raises(InputError, match="must be 'extractive' or PROVIDER:MODEL"):
        summarizer_from_spec("gpt-4o", engine)
    with pytest.raises(AuthenticationError, match="needs OPENAI_API_KEY"):
        summarizer_from_spec("openai:gpt-4o-mini", engine)
    with pytest.raises(InputError, match="must not have lines starting with '- '"):
        summarizer_from_spec("extractive", engine, instructions="Summarise:\n- be brief")
