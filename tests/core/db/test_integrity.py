"""The database itself enforces immutability and the schema's constraints."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from studyllm_core.db.calls import NewCall, RawCallRepository


def _one_call(engine) -> int:
    return RawCallRepository(engine).insert(
        NewCall(provider="openai", model="m", status="success", request_json={"prompt": "p"})
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE raw_calls SET model = 'changed' WHERE id = :id",
        "UPDATE raw_calls SET status = 'failed', error_json = '{}' WHERE id = :id",
        "DELETE FROM raw_calls WHERE id = :id",
        "TRUNCATE raw_calls CASCADE",
    ],
)
def test_raw_calls_reject_update_delete_truncate(engine, statement):
    call_id = _one_call(engine)
    with pytest.raises(DBAPIError, match="raw_calls is immutable"):
        with engine.begin() as conn:
            conn.execute(text(statement), {"id": call_id})
    with engine.connect() as conn:
        row = conn.execute(text("SELECT model, status FROM raw_calls WHERE id = :id"), {"id": call_id}).one()
    assert tuple(row) == ("m", "success")


def test_status_is_constrained(engine):
    with pytest.raises(IntegrityError, match="ck_raw_calls_status"):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO raw_calls (provider, model, status, request_json, error_json) VALUES ('p','m','weird','{}','{}')")
            )


def test_failed_call_needs_error_json(engine):
    with pytest.raises(IntegrityError, match="ck_raw_calls_failure_has_error"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO raw_calls (provider, model, status, request_json) VALUES ('p','m','failed','{}')"))


def test_embedding_request_hash_is_unique_and_dimension_checked(engine):
    call_id = _one_call(engine)
    insert = text(
        "INSERT INTO embedding_vectors (request_hash, provider, model, dimension, text, vector, norm, raw_call_id) "
        "VALUES (:h, 'p', 'm', :d, 't', :v, 1.0, :c)"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"h": "a" * 64, "d": 3, "v": "[1,0,0]", "c": call_id})
    with pytest.raises(IntegrityError, match="uq_embedding_vectors_request_hash"):
        with engine.begin() as conn:
            conn.execute(insert, {"h": "a" * 64, "d": 3, "v": "[0,1,0]", "c": call_id})
    with pytest.raises(IntegrityError, match="ck_embedding_vectors_dims_match"):
        with engine.begin() as conn:
            conn.execute(insert, {"h": "b" * 64, "d": 4, "v": "[0,1,0]", "c": call_id})


def test_group_constraints(engine):
    with engine.begin() as conn:
        gid = conn.execute(text("INSERT INTO groups (group_type, name) VALUES ('run', 'r') RETURNING id")).scalar_one()
    with pytest.raises(IntegrityError, match="uq_groups_type_name"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO groups (group_type, name) VALUES ('run', 'r')"))
    with pytest.raises(IntegrityError, match="ck_group_links_no_self"):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO group_links (parent_group_id, child_group_id, link_type) VALUES (:g, :g, 'step')"), {"g": gid}
            )
    call_id = _one_call(engine)
    member = text("INSERT INTO group_members (group_id, call_id) VALUES (:g, :c)")
    with engine.begin() as conn:
        conn.execute(member, {"g": gid, "c": call_id})
    with pytest.raises(IntegrityError, match="uq_group_members_group_call"):
        with engine.begin() as conn:
            conn.execute(member, {"g": gid, "c": call_id})
