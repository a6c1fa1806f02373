"""RawCallRepository and GroupRepository against the real database."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from studyllm_core.db.calls import CallFilter, NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import DatabaseError, NotFoundError


def _calls(n: int, **overrides) -> list[NewCall]:
    out = []
    for i in range(n):
        status = "success" if i % 4 else "failed"
        out.append(
            NewCall(
                provider=overrides.get("provider", ["openai", "azure"][i % 2]),
                model=overrides.get("model", "m1"),
                modality="chat" if i % 3 else "embedding",
                status=status,
                request_json={"prompt": f"prompt number {i} about {'cats' if i % 5 == 0 else 'dogs'}"},
                response_json={"text": f"answer {i}"} if status == "success" else None,
                error_json=None if status == "success" else {"type": "server_error", "message": "boom"},
                latency_ms=float(i),
                tokens_json={"total_tokens": i},
                metadata_json={"i": i},
            )
        )
    return out


def test_bulk_insert_keeps_input_order_across_chunks(engine):
    repo = RawCallRepository(engine)
    calls = _calls(2_503)
    ids = repo.insert_many(calls, chunk_size=1_000)
    assert len(ids) == len(set(ids)) == 2_503
    assert ids == sorted(ids)
    stored = repo.list(limit=10_000)
    assert [s.id for s in stored] == ids
    assert [s.metadata_json["i"] for s in stored] == list(range(2_503))
    assert [s.request_json["prompt"] for s in stored] == [c.request_json["prompt"] for c in calls]


def test_values_that_jsonb_rejects_are_made_storable_not_dropped(engine):
    repo = RawCallRepository(engine)
    call_id = repo.insert(
        NewCall(provider="p", model="m", status="success", request_json={"prompt": "a\x00b", "x": float("nan")})
    )
    stored = repo.get(call_id)
    assert stored.request_json == {"prompt": "ab", "x": None}


def test_invalid_status_is_rejected_before_the_database(engine):
    with pytest.raises(ValueError, match="status must be one of"):
        RawCallRepository(engine).insert(NewCall(provider="p", model="m", status="ok", request_json={}))
    with pytest.raises(ValueError, match="needs error_json"):
        RawCallRepository(engine).insert(NewCall(provider="p", model="m", status="failed", request_json={}))


def test_filters_pagination_and_counts(engine):
    repo = RawCallRepository(engine)
    calls = _calls(200)
    repo.insert_many(calls)
    flt = CallFilter(provider="openai", status="success", modality="chat")
    expected = [i for i, c in enumerate(calls) if c.provider == "openai" and c.status == "success" and c.modality == "chat"]
    assert repo.count(flt) == len(expected)
    seen, after = [], None
    while True:
        page = repo.list(flt, limit=7, after_id=after)
        if not page:
            break
        seen += [p.metadata_json["i"] for p in page]
        after = page[-1].id
    assert seen == expected
    assert [p.metadata_json["i"] for p in repo.list(flt, limit=5, offset=5)] == expected[5:10]
    newest = repo.list(flt, limit=3, newest_first=True)
    assert [p.metadata_json["i"] for p in newest] == expected[::-1][:3]


def test_date_range_filter(engine):
    repo = RawCallRepository(engine)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    calls = _calls(10)
    for i, c in enumerate(calls):
        c.created_at = base + timedelta(days=i)
    repo.insert_many(calls)
    found = repo.list(CallFilter(since=base + timedelta(days=3), until=base + timedelta(days=6)))
    assert [f.metadata_json["i"] for f in found] == [3, 4, 5]


def test_provider_stats_match_a_direct_count(engine):
    repo = RawCallRepository(engine)
    calls = _calls(100)
    repo.insert_many(calls)
    stats = {(s["provider"], s["model"]): s for s in repo.provider_stats()}
    for provider in ("openai", "azure"):
        mine = [c for c in calls if c.provider == provider]
        s = stats[(provider, "m1")]
        assert s["calls"] == len(mine)
        assert s["succeeded"] == sum(c.status == "success" for c in mine)
        assert s["failed"] == sum(c.status != "success" for c in mine)
        assert s["total_tokens"] == sum(c.tokens_json["total_tokens"] for c in mine)
        assert s["avg_latency_ms"] == pytest.approx(sum(c.latency_ms for c in mine) / len(mine))


def test_prompt_search_finds_words_and_uses_the_fulltext_index(engine):
    repo = RawCallRepository(engine)
    repo.insert_many(_calls(300))
    found = repo.search_prompts("cats", limit=1000)
    assert {f.metadata_json["i"] for f in found} == {i for i in range(300) if i % 5 == 0}
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT id FROM raw_calls WHERE to_tsvector('simple', coalesce(request_json->>'prompt', '')) "
                    "@@ websearch_to_tsquery('simple', 'cats')"
                )
            ).scalars()
        )
    assert "ix_raw_calls_prompt_fts" in plan


def test_group_operations_are_idempotent(engine):
    calls = RawCallRepository(engine)
    groups = GroupRepository(engine)
    ids = calls.insert_many(_calls(5))
    run = groups.ensure_group("run", "sweep-1", metadata={"a": 1})
    assert groups.ensure_group("run", "sweep-1", metadata={"b": 2}) == run
    assert groups.get_group(run).metadata_json == {"a": 1, "b": 2}
    assert groups.add_members(run, ids) == 5
    assert groups.add_members(run, ids) == 0
    assert groups.member_ids(run) == ids

    steps = [groups.ensure_group("step", f"step-{i}") for i in range(3)]
    for position, step in reversed(list(enumerate(steps))):
        link = groups.link(run, step, "step", position=position)
        assert groups.link(run, step, "step", position=position) == link
    assert [g.id for g in groups.get_run_step_sequence(run)] == steps
    assert [link.child_group_id for link in groups.children(run, "step")] == steps
    assert [link.parent_group_id for link in groups.parents(steps[1])] == [run]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM group_links")).scalar_one() == 3

    with pytest.raises(ValueError, match="cannot link to itself"):
        groups.link(run, run, "step")
    with pytest.raises(ValueError, match="link_type must be one of"):
        groups.link(run, steps[0], "friend")

    report = groups.ensure_group("metrics", "report")
    assert groups.link_parents(steps, report, "depends_on") == 3
    assert groups.link_parents(steps, report, "depends_on") == 0
    assert [g.id for g in groups.parent_groups(report, "depends_on")] == steps
    assert groups.parent_groups(report, "step") == []
    with pytest.raises(ValueError, match="cannot link to itself"):
        groups.link_parents([report], report, "depends_on")


def test_find_group_by_id_or_name_and_unknown(engine):
    groups = GroupRepository(engine)
    gid = groups.ensure_group("dataset", "my-data")
    assert groups.find_group("my-data").id == gid
    assert groups.find_group(str(gid)).id == gid
    with pytest.raises(NotFoundError, match="no group with id or name 'nope'"):
        groups.find_group("nope")


def test_artifacts_are_recorded_with_checksums(engine):
    groups = GroupRepository(engine)
    gid = groups.ensure_group("step", "s")
    aid = groups.record_artifact(uri="file:///x.npy", content_type="application/x-npy", byte_size=10, sha256="0" * 64, group_id=gid)
    [art] = groups.artifacts(group_id=gid)
    assert (art.id, art.byte_size, art.sha256) == (aid, 10, "0" * 64)


def test_database_failures_surface_as_clear_errors(engine):
    """A member pointing at a missing call is refused loudly, not dropped."""
    groups = GroupRepository(engine)
    gid = groups.ensure_group("run", "r")
    with pytest.raises(DatabaseError, match="adding group members failed: .*foreign key"):
        groups.add_members(gid, [999_999])
