"""ConversationService over real HTTP (loopback server) and the real database."""

import json

import pytest

from studyllm_core.db.calls import CallFilter, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.providers.base import ChatMessage
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.conversation import ConversationService
from studyllm_core.services.capture.inference import InferenceService
from studyllm_core.services.capture.retry import RetryPolicy

from support import TEST_API_KEY as KEY


@pytest.fixture
def make_conversations(engine, stub):
    made = []

    def make(**kw):
        provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=KEY, timeout=5.0)
        inference = InferenceService(
            engine, provider, provider_name="openai-compatible", model="stub-chat",
            retry=RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.02),
        )
        made.append(inference)
        return ConversationService(inference, **kw)

    yield make
    for inference in made:
        inference.close()


def sent_messages(stub):
    return json.loads(stub.last_request["body"])["messages"]


def test_each_turn_sends_the_history_and_is_recorded(engine, stub, make_conversations):
    conversations = make_conversations(system_prompt="You are terse.")
    cid = conversations.start("c-1")
    first = conversations.send(cid, "hello")
    second = conversations.send(cid, "and then?")
    assert first.ok and second.ok
    assert sent_messages(stub) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "stub reply: hello"},
        {"role": "user", "content": "and then?"},
    ]
    assert [m.role for m in conversations.history(cid)] == ["system", "user", "assistant", "user", "assistant"]
    calls = RawCallRepository(engine).list()
    assert [c.metadata_json["conversation_id"] for c in calls] == ["c-1", "c-1"]
    assert [c.metadata_json["turn"] for c in calls] == [0, 1]
    assert calls[1].request_json["prompt"] == "and then?"
    group = GroupRepository(engine).lookup("conversation", "c-1")
    assert group.id == conversations.group_id(cid)
    assert GroupRepository(engine).member_ids(group.id) == [c.id for c in calls]


def test_history_survives_a_new_service_and_the_conversation_continues(engine, stub, make_conversations):
    first_service = make_conversations()
    cid = first_service.start(system_prompt="Be kind.")
    first_service.send(cid, "one")
    first_service.send(cid, "two")
    expected = first_service.history(cid)

    fresh = make_conversations()  # nothing in memory: everything comes from raw_calls
    assert fresh.history(cid) == expected
    assert expected[0] == ChatMessage("system", "Be kind.")
    result = fresh.send(cid, "three")
    assert result.ok
    assert [m["content"] for m in sent_messages(stub)] == [
        "Be kind.", "one", "stub reply: one", "two", "stub reply: two", "three",
    ]
    assert RawCallRepository(engine).list()[-1].metadata_json["turn"] == 2
    assert fresh.reload(cid)[-1] == ChatMessage("assistant", "stub reply: three")


def test_a_failed_turn_is_recorded_but_leaves_the_history_unchanged(engine, stub, make_conversations):
    conversations = make_conversations()
    cid = conversations.start()
    conversations.send(cid, "fine")
    stub.faults.fail_next(1, "content_filter")
    failed = conversations.send(cid, "filtered")
    assert not failed.ok and failed.error_type == "content_filter"
    assert [m.content for m in conversations.history(cid)] == ["fine", "stub reply: fine"]
    assert [m.content for m in conversations.reload(cid)] == ["fine", "stub reply: fine"]
    failed_rows = RawCallRepository(engine).list(CallFilter(status="failed", group_id=conversations.group_id(cid)))
    assert len(failed_rows) == 1 and failed_rows[0].metadata_json["turn"] == 1


def test_unknown_and_duplicate_conversations_are_reported(engine, stub, make_conversations):
    conversations = make_conversations()
    with pytest.raises(NotFoundError, match="no conversation 'nope'"):
        conversations.send("nope", "hi")
    conversations.start("42")
    with pytest.raises(InputError, match="already exists"):
        make_conversations().start("42")
    assert stub.stats.requests_total == 0
