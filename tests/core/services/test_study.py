"""StudyService on the real database: every figure checked against pandas on the generated rows."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_core.db.calls import CallFilter, NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import ConfigError, InputError
from studyllm_core.services.study.prices import Price, PriceTable, load_prices
from studyllm_core.services.study.analytics import StudyService

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("azure", "gpt-4o-mini"), ("local", "minilm"), ("hyperbolic", "mystery")]
PRICES = PriceTable({
    ("openai", "gpt-4o-mini"): Price(0.15, 0.60),
    ("openai", "gpt-4o"): Price(2.5, 10.0),
    ("azure", "gpt-4o-mini"): Price(0.15, 0.60),
    ("local", "*"): Price(0.0, 0.0),
})  # hyperbolic/mystery has no price
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
WORDS = ["cats", "dogs", "owls", "rain", "tax", "moon", "jazz", "salt"]


def generate(n: int, seed: int = 7) -> tuple[list[NewCall], pd.DataFrame]:
    """Calls with every kind of token record (split, total only, none) and some NULL latencies."""
    rng = np.random.default_rng(seed)
    calls, rows = [], []
    for i in range(n):
        provider, model = MODELS[rng.integers(len(MODELS))]
        status = rng.choice(["success", "failed", "timeout", "cancelled"], p=[0.8, 0.1, 0.07, 0.03])
        kind = rng.integers(3)
        p, c = int(rng.integers(1, 400)), int(rng.integers(0, 200))
        tokens = None if status != "success" else (
            {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c} if kind == 0 else
            {"total_tokens": p + c} if kind == 1 else {"prompt_tokens": p, "total_tokens": p})
        latency = None if i % 37 == 0 else float(rng.gamma(2.0, 120.0))
        created = T0 + timedelta(seconds=int(rng.integers(0, 3 * 86400)))
        prompt = " ".join(rng.choice(WORDS, 3))
        error_type = None if status == "success" else ["rate_limit", "server_error", "bad_request"][i % 3]
        calls.append(NewCall(
            provider=provider, model=model, status=str(status), modality="chat",
            request_json={"prompt": prompt}, response_json={"text": f"answer {i}"} if status == "success" else None,
            error_json=None if status == "success" else {"type": error_type, "message": f"message {i % 5}"},
            latency_ms=latency, tokens_json=tokens, created_at=created,
        ))
        rows.append({"provider": provider, "model": model, "status": str(status), "latency_ms": latency,
                     "created_at": pd.Timestamp(created), "prompt": prompt, "error_type": error_type,
                     "prompt_tokens": (tokens or {}).get("prompt_tokens"),
                     "completion_tokens": (tokens or {}).get("completion_tokens"),
                     "total_tokens": (tokens or {}).get("total_tokens")})
    frame = pd.DataFrame(rows)
    for col in ("prompt_tokens", "completion_tokens", "total_tokens"):
        frame[col] = frame[col].astype("float64")
    # The documented split: prompt tokens, else total minus completion; output = completion tokens.
    frame["in_tok"] = frame["prompt_tokens"].fillna((frame["total_tokens"] - frame["completion_tokens"].fillna(0)).clip(lower=0)).fillna(0)
    frame["out_tok"] = frame["completion_tokens"].fillna(0)
    frame["all_tok"] = frame["total_tokens"].fillna(frame["prompt_tokens"].fillna(0) + frame["completion_tokens"].fillna(0))
    return calls, frame


def expected_cost(provider: str, model: str, in_tok: float, out_tok: float) -> float:
    cost = PRICES.cost(provider, model, in_tok, out_tok)
    return np.nan if cost is None else cost


@pytest.fixture
def loaded(engine):
    calls, frame = generate(3_000)
    ids = RawCallRepository(engine).insert_many(calls, chunk_size=1_000)
    frame["id"] = ids
    group = GroupRepository(engine).ensure_group("batch", "half")
    GroupRepository(engine).add_members(group, ids[::2])
    return StudyService(engine, PRICES), frame, group


def test_provider_comparison_matches_pandas(loaded):
    service, frame, _ = loaded
    got = service.provider_comparison().sort_values(["provider", "model"]).reset_index(drop=True)
    g = frame.groupby(["provider", "model"], sort=True)
    want = pd.DataFrame({
        "calls": g.size(),
        "succeeded": g["status"].apply(lambda s: (s == "success").sum()),
        "mean_latency_ms": g["latency_ms"].mean(),
        "p50_latency_ms": g["latency_ms"].quantile(0.5),
        "p95_latency_ms": g["latency_ms"].quantile(0.95),
        "input_tokens": g["in_tok"].sum(), "output_tokens": g["out_tok"].sum(), "total_tokens": g["all_tok"].sum(),
    }).reset_index()
    want["failed"] = want["calls"] - want["succeeded"]
    want["success_rate"] = want["succeeded"] / want["calls"]
    want["cost_usd"] = [expected_cost(*r) for r in want[["provider", "model", "input_tokens", "output_tokens"]].itertuples(index=False)]
    assert list(got["provider"] + "/" + got["model"]) == list(want["provider"] + "/" + want["model"])
    for col in ["calls", "succeeded", "failed", "input_tokens", "output_tokens", "total_tokens"]:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    for col in ["success_rate", "mean_latency_ms", "p50_latency_ms", "p95_latency_ms", "cost_usd"]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9, err_msg=col)
    # An unknown model's cost is NULL (NaN), not 0; a free local model's is 0.
    costs = dict(zip(got["provider"], got["cost_usd"]))
    assert np.isnan(costs["hyperbolic"]) and costs["local"] == 0.0


def test_filters_narrow_every_figure(loaded):
    service, frame, group = loaded
    since, until = T0 + timedelta(hours=20), T0 + timedelta(hours=50)
    flt = CallFilter(provider="openai", since=since, until=until)
    got = service.provider_comparison(flt)
    sub = frame[(frame.provider == "openai") & (frame.created_at >= since) & (frame.created_at < until)]
    assert dict(zip(got["model"], got["calls"])) == sub.groupby("model").size().to_dict()

    in_group = service.summary_stats(CallFilter(group_id=group))
    assert in_group["calls"] == len(frame.iloc[::2])
    assert in_group["total_tokens"] == frame.iloc[::2]["all_tok"].sum()
    assert service.summary_stats(CallFilter(model="gpt-4o"))["calls"] == (frame.model == "gpt-4o").sum()


@pytest.mark.parametrize("bucket, freq", [("minute", "min"), ("hour", "h"), ("day", "D")])
def test_calls_over_time_matches_pandas(loaded, bucket, freq):
    service, frame, _ = loaded
    got = service.calls_over_time(bucket=bucket)
    f = frame.assign(bucket=frame["created_at"].dt.floor(freq))
    f["cost"] = [expected_cost(p, m, i, o) for p, m, i, o in f[["provider", "model", "in_tok", "out_tok"]].itertuples(index=False)]
    g = f.groupby("bucket", sort=True)
    want = pd.DataFrame({
        "calls": g.size(), "succeeded": g["status"].apply(lambda s: (s == "success").sum()),
        "mean_latency_ms": g["latency_ms"].mean(), "total_tokens": g["all_tok"].sum(),
        "cost_usd": g["cost"].apply(lambda c: c.sum() if c.notna().all() else np.nan),
        "unpriced_calls": g["cost"].apply(lambda c: int(c.isna().sum())),
    }).reset_index()
    assert list(pd.to_datetime(got["bucket"], utc=True)) == list(want["bucket"])
    for col in ["calls", "succeeded", "total_tokens", "unpriced_calls"]:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    for col in ["mean_latency_ms", "cost_usd"]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9, err_msg=col)
    assert (got["failed"] == got["calls"] - got["succeeded"]).all()


def test_failure_breakdown_matches_pandas(loaded):
    service, frame, _ = loaded
    got = service.failure_breakdown()
    failed = frame[frame.status != "success"]
    want = failed.groupby(["provider", "model", "status", "error_type"]).size()
    assert {tuple(r[:4]): r[4] for r in got[["provider", "model", "status", "error_type", "calls"]].itertuples(index=False)} == want.to_dict()
    assert list(got["calls"]) == sorted(got["calls"], reverse=True)
    assert got["calls"].sum() == len(failed)


def test_summary_stats_match_pandas(loaded):
    service, frame, _ = loaded
    got = service.summary_stats()
    costs = [expected_cost(p, m, i, o) for p, m, i, o in frame[["provider", "model", "in_tok", "out_tok"]].itertuples(index=False)]
    assert got["calls"] == len(frame) and got["succeeded"] == (frame.status == "success").sum()
    assert got["failed"] == (frame.status != "success").sum()
    assert got["providers"] == frame.provider.nunique() and got["models"] == frame.groupby(["provider", "model"]).ngroups
    assert got["first_call_at"] == frame.created_at.min() and got["last_call_at"] == frame.created_at.max()
    assert got["mean_latency_ms"] == pytest.approx(frame.latency_ms.mean(), rel=1e-9)
    assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == (
        frame.in_tok.sum(), frame.out_tok.sum(), frame.all_tok.sum())
    assert got["cost_usd"] is None  # a model without a price makes the total unknown ...
    assert got["priced_cost_usd"] == pytest.approx(np.nansum(costs), rel=1e-9)  # ... and the priced part is given
    assert got["unpriced_models"] == ["hyperbolic/mystery"]


def test_recent_calls_and_prompt_search_match_pandas(loaded):
    service, frame, _ = loaded
    recent = service.recent_calls(limit=25)
    want = frame.sort_values(["created_at", "id"], ascending=False).head(25)
    assert list(recent["id"]) == list(want["id"])
    row = recent.iloc[0]
    src = want.iloc[0]
    assert row["prompt"] == src["prompt"] and row["total_tokens"] == src["all_tok"]
    cost = expected_cost(src["provider"], src["model"], src["in_tok"], src["out_tok"])
    assert (np.isnan(row["cost_usd"]) and np.isnan(cost)) or row["cost_usd"] == pytest.approx(cost)

    found = service.search_prompts("cats -dogs", limit=10_000)
    has = frame.prompt.str.split().apply(lambda w: "cats" in w and "dogs" not in w)
    assert sorted(found["id"]) == sorted(frame[has]["id"])
    assert list(found["id"]) == sorted(found["id"], reverse=True)
    only_local = service.search_prompts("cats", CallFilter(provider="local"), limit=10_000)
    assert set(only_local["provider"]) == {"local"}
    assert len(only_local) == (frame.prompt.str.split().apply(lambda w: "cats" in w) & (frame.provider == "local")).sum()


def test_prompt_search_uses_the_full_text_index(loaded, engine):
    service, _, _ = loaded
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # 3,000 rows are few enough for a scan otherwise
        from studyllm_core.db.vocabulary import PROMPT_TSVECTOR_SQL

        plan = "\n".join(conn.execute(text(
            f"EXPLAIN SELECT id FROM raw_calls WHERE {PROMPT_TSVECTOR_SQL} @@ websearch_to_tsquery('simple', 'cats')")).scalars())
    assert "ix_raw_calls_prompt_fts" in plan


def test_empty_database_gives_empty_frames_and_zero_summary(engine):
    service = StudyService(engine, PRICES)
    assert service.provider_comparison().empty and service.calls_over_time().empty
    assert service.failure_breakdown().empty and service.recent_calls().empty
    summary = service.summary_stats()
    assert summary["calls"] == 0 and summary["cost_usd"] == 0.0 and summary["unpriced_models"] == []


def test_bad_arguments_are_input_errors(engine):
    service = StudyService(engine, PRICES)
    with pytest.raises(InputError, match="bucket must be one of"):
        service.calls_over_time(bucket="week")
    with pytest.raises(InputError, match="search query is empty"):
        service.search_prompts("  ")


def test_token_columns_ignore_values_that_are_not_counts(engine):
    repo = RawCallRepository(engine)
    call_id = repo.insert(NewCall(provider="p", model="m", status="success", request_json={},
                                  tokens_json={"prompt_tokens": "many", "completion_tokens": -3, "total_tokens": 12.4}))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT prompt_tokens, completion_tokens, total_tokens FROM raw_calls WHERE id = :i"), {"i": call_id}).one()
    assert tuple(row) == (None, None, 12)


def test_price_file_overrides_defaults(tmp_path, monkeypatch):
    defaults = load_prices()
    assert defaults.price("openai", "gpt-4o-mini") is not None and defaults.price("local", "anything") == Price(0.0, 0.0)
    assert defaults.price("openai", "no-such-model") is None
    path = tmp_path / "prices.toml"
    path.write_text('[prices.openai."gpt-4o-mini"]\ninput = 1.0\noutput = 2.0\n[prices.acme."*"]\ninput = 3.0\n')
    monkeypatch.setenv("STUDYLLM_PRICES", str(path))
    table = load_prices()
    assert table.price("openai", "gpt-4o-mini") == Price(1.0, 2.0)
    assert table.price("openai", "gpt-4o") == defaults.price("openai", "gpt-4o")  # merged, not replaced
    assert table.price("acme", "x") == Price(3.0, 0.0)
    assert table.cost("acme", "x", 1_000_000, 5) == pytest.approx(3.0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"openai": {}}', 'has no "prices" table'),
    ('{"prices": {"openai": {"m": {"output": 1}}}}', 'needs an "input" price'),
    ('{"prices": {"openai": {"m": {"input": -1}}}}', "must be non-negative numbers"),
])
def test_bad_price_files_are_config_errors(tmp_path, monkeypatch, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content)
    monkeypatch.setenv("STUDYLLM_PRICES", str(path))
    with pytest.raises(ConfigError, match=message):
        load_prices()
    monkeypatch.setenv("STUDYLLM_PRICES", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot read the price file"):
        load_prices()


def test_calls_over_time_with_filters_matches_pandas(loaded):
    service, frame, group = loaded
    since = T0 + timedelta(hours=10)
    got = service.calls_over_time(CallFilter(group_id=group, provider="openai", since=since), bucket="hour")
    f = frame.iloc[::2]
    f = f[(f.provider == "openai") & (f.created_at >= since)]
    want = f.groupby(f["created_at"].dt.floor("h")).agg(calls=("id", "size"), total_tokens=("all_tok", "sum"))
    assert list(pd.to_datetime(got["bucket"], utc=True)) == list(want.index)
    np.testing.assert_array_equal(got["calls"], want["calls"])
    np.testing.assert_array_equal(got["total_tokens"], want["total_tokens"])
    assert (got["unpriced_calls"] == 0).all() and got["cost_usd"].notna().all()
