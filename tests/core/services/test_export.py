"""ExportService: files read back equal the stored rows; scope follows GroupLinks; bad input writes nothing."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from studyllm_core.db.calls import CallFilter, NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, NewVectors
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.services.study.export import ExportService

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def chat_calls(n: int, tag: str) -> list[NewCall]:
    out = []
    for i in range(n):
        ok = i % 5 != 0
        out.append(NewCall(
            provider="openai", model="gpt-4o-mini", modality="chat", status="success" if ok else "failed",
            request_json={"prompt": f"{tag} prompt {i} \u00e9\u4e2d, \"quoted\"\nnewline", "temperature": 0.5},
            response_json={"text": f"answer {i}", "nested": {"a": [1, 2]}} if ok else None,
            error_json=None if ok else {"type": "server_error", "message": "boom"},
            latency_ms=None if i % 7 == 0 else 10.5 + i,
            tokens_json={"prompt_tokens": i, "completion_tokens": 2 * i, "total_tokens": 3 * i} if ok else None,
            metadata_json={"tag": tag, "i": i}, request_hash=f"{tag}{i:04d}", created_at=T0 + timedelta(minutes=i),
        ))
    return out


def embed(engine, group: int, n: int, dim: int, model: str, prefix: str) -> tuple[list[str], np.ndarray]:
    repo = RawCallRepository(engine)
    call_id = repo.insert(NewCall(provider="local", model=model, modality="embedding", status="success", request_json={}))
    GroupRepository(engine).add_members(group, [call_id])
    vectors = np.random.default_rng(len(prefix) + n).normal(size=(n, dim)).astype(np.float32)
    hashes = [f"{prefix}{i:05d}" for i in range(n)]
    with engine.begin() as conn:
        EmbeddingCache.store(conn, NewVectors(hashes, [f"{prefix} text {i}" for i in range(n)], vectors, "local", model,
                                                call_id, set_id=EmbeddingCache(engine).new_set(group)))
    return hashes, vectors


@pytest.fixture
def study(engine):
    groups, calls = GroupRepository(engine), RawCallRepository(engine)
    ids = {name: groups.ensure_group(kind, name) for kind, name in
           [("run", "study"), ("step", "s1"), ("dataset", "derived"), ("step", "deeper"), ("batch", "bag"), ("batch", "other")]}
    groups.link(ids["study"], ids["s1"], "step", position=0)
    groups.link(ids["study"], ids["derived"], "depends_on")
    groups.link(ids["derived"], ids["deeper"], "depends_on")
    groups.link(ids["study"], ids["bag"], "contains")
    groups.link(ids["other"], ids["study"], "depends_on")  # an ancestor: not part of the export
    members = {}
    for name, n in [("study", 150), ("s1", 60), ("derived", 40), ("deeper", 30), ("bag", 20), ("other", 25)]:
        members[name] = calls.insert_many(chat_calls(n, name))
        groups.add_members(ids[name], members[name])
    groups.add_members(ids["s1"], members["study"][:10])  # shared members are exported once
    spaces = {
        "m8": embed(engine, ids["derived"], 70, 8, "m8", "d"),
        "m4": embed(engine, ids["bag"], 12, 4, "m4", "b"),
    }
    embed(engine, ids["other"], 5, 8, "m8", "o")  # outside the scope
    return ids, spaces


def missing_as_none(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def read_table(path, fmt) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return pd.read_json(path, lines=True, dtype=False)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_round_trips_calls_and_embeddings(engine, study, tmp_path, fmt):
    ids, spaces = study
    out = tmp_path / "export"
    result = ExportService(engine, chunk_size=64).export("study", out, fmt)

    scope = [ids[n] for n in ("study", "s1", "derived", "deeper", "bag")]
    stored = RawCallRepository(engine).list(CallFilter(group_ids=scope), limit=100_000)
    assert result.calls.rows == len(stored) == 150 + 60 + 40 + 30 + 20 + 2  # + the two embedding calls
    frame = read_table(out / f"calls.{fmt}", fmt)
    assert list(frame["id"]) == [c.id for c in stored]
    for row, call in zip(frame.to_dict("records"), stored):
        for name in ("provider", "model", "modality", "status", "request_hash", "latency_ms"):
            assert missing_as_none(row[name]) == getattr(call, name), name
        assert pd.Timestamp(row["created_at"]) == pd.Timestamp(call.created_at)
        for name in ("request_json", "response_json", "error_json", "tokens_json", "metadata_json"):
            value = missing_as_none(row[name])
            if fmt != "jsonl" and value is not None:
                value = json.loads(value)
            assert value == getattr(call, name), name
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert missing_as_none(row[name]) == (call.tokens_json or {}).get(name), name

    assert [(e["model"], e["dimension"], e["vectors"].rows) for e in result.embeddings] == [("m4", 4, 12), ("m8", 8, 70)]
    for model, (hashes, vectors) in spaces.items():
        stem = f"embeddings-local-{model}-{vectors.shape[1]}"
        np.testing.assert_array_equal(np.load(out / f"{stem}.npy"), vectors)
        index = read_table(out / f"{stem}_index.{fmt}", fmt)
        assert list(index["row"]) == list(range(len(hashes))) and list(index["request_hash"]) == hashes
        assert list(index["text"]) == [f"{hashes[0][0]} text {i}" for i in range(len(hashes))]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"calls.{fmt}"] + [f"embeddings-local-{m}-{d}{s}" for m, d in (("m4", 4), ("m8", 8)) for s in (".npy", f"_index.{fmt}")])
    assert result.summary()["calls"]["sha256"] and result.summary()["groups"] == 5


def test_one_embedding_model_gives_plain_file_names(engine, study, tmp_path):
    ids, spaces = study
    result = ExportService(engine).export(ids["derived"], tmp_path / "d", "parquet")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["calls.parquet", "embeddings.npy", "embeddings_index.parquet"]
    assert result.calls.rows == 40 + 30 + 1
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "embeddings.npy"), spaces["m8"][1])


def test_bad_input_writes_nothing(engine, study, tmp_path):
    service = ExportService(engine)
    with pytest.raises(NotFoundError, match="no group with id or name 'nope'; list groups with `studyllm groups`"):
        service.export("nope", tmp_path / "a", "csv")
    assert not (tmp_path / "a").exists()
    GroupRepository(engine).ensure_group("batch", "empty")
    empty = service.export("empty", tmp_path / "b", "csv")  # an empty group: an empty table, like any empty result
    assert empty.calls.rows == 0 and sorted(p.name for p in (tmp_path / "b").iterdir()) == ["calls.csv"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="is not empty; choose a new or empty folder"):
        service.export("study", tmp_path / "c", "csv")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match="--format must be one of parquet, csv, jsonl"):
        service.export("study", tmp_path / "d", "xlsx")


def test_export_of_a_group_holds_exactly_its_texts_not_the_rest_of_a_shared_call(engine, stub, tmp_path):
    """Run A embeds 40 texts in one API call; run B uses 5 of them from the cache (so A's call joins B's
    group). Exporting B writes B's 5 embeddings, not the 40 of the call they shared."""
    from studyllm_core.providers.registry import create_provider
    from studyllm_core.services.capture.embedding import EmbeddingService
    from support import TEST_API_KEY

    def service():
        provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=TEST_API_KEY)
        return EmbeddingService(engine, provider, provider_name="openai-compatible", model="stub-embedding", batch_size=64)

    texts = [f"shared call text {i}" for i in range(40)]
    service().embed(texts, group_name="run-a")
    mine = [texts[3], texts[7], texts[11], texts[20], texts[39], "a text only B has"]
    b = service().embed(mine, group_name="run-b")
    assert b.cached == 5 and b.embedded == 1

    result = ExportService(engine).export("run-b", tmp_path / "b", "parquet")
    [space] = result.embeddings
    index = pd.read_parquet(space["index"].path)
    assert sorted(index["text"]) == sorted(mine)
    vectors = np.load(space["vectors"].path)
    np.testing.assert_allclose(vectors[list(index["text"]).index(texts[7])], stub.embedding(texts[7]), rtol=1e-6)
    a = ExportService(engine).export("run-a", tmp_path / "a", "parquet")
    assert a.embeddings[0]["vectors"].rows == 40  # A's own items, not B's extra text
