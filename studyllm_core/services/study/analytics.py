"""StudyService: analytics over `raw_calls` as pandas DataFrames (no Dagster needed).

Every figure is one SQL statement: Postgres aggregates, Python only shapes the result. All methods
take a `CallFilter` (since/until, provider, model, status, modality, group). Costs come from the
price table (`services/study/prices.py`), joined in SQL; a model without a price has a NULL cost, and
aggregates that include such calls have a NULL cost too (with `unpriced_calls` saying how many).

Per provider/model statistics read the covering index `ix_raw_calls_provider_model_created`
(migration 0003) rather than the table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from studyllm_core.db.calls import CallFilter
from studyllm_core.db.engine import driver_sql, translate_db_errors
from studyllm_core.db.vocabulary import PROMPT_TSVECTOR_SQL
from studyllm_core.errors import InputError
from studyllm_core.services.study.prices import (
    INPUT_TOKENS_SQL,
    OUTPUT_TOKENS_SQL,
    PRICED_SQL,
    PRICES_CTE,
    TOTAL_TOKENS_SQL,
    PriceTable,
    cost_sql,
    load_prices,
    price_join,
)

BUCKETS = {"minute": "1 minute", "hour": "1 hour", "day": "1 day"}
BUCKET_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"  # date_bin from a UTC midnight: buckets align to UTC
FAILED_STATUSES = ("failed", "timeout", "cancelled")
SORT_MEMORY = "64MB"  # per-statement work_mem: percentiles over a million latencies sort in memory

COMPARISON_COLUMNS = [
    "provider", "model", "calls", "succeeded", "failed", "success_rate", "mean_latency_ms", "p50_latency_ms",
    "p95_latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd",
]
CALL_ROW_COLUMNS = [
    "id", "created_at", "provider", "model", "modality", "status", "prompt", "response", "error_type",
    "latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd",
]

# Per-call token figures, as SQL over raw_calls' generated token columns.
_TOKEN_SELECT = (
    f"{INPUT_TOKENS_SQL} AS input_tokens, {OUTPUT_TOKENS_SQL} AS output_tokens, {TOTAL_TOKENS_SQL} AS total_tokens"
)
_TOKEN_SUMS = (
    f"sum({INPUT_TOKENS_SQL})::bigint AS input_tokens, sum({OUTPUT_TOKENS_SQL})::bigint AS output_tokens, "
    f"sum({TOTAL_TOKENS_SQL})::bigint AS total_tokens"
)


class StudyService:
    """Provider comparison, recent calls, calls over time, failures, prompt search and a summary."""

    def __init__(self, engine: Engine, prices: PriceTable | None = None) -> None:
        self.engine = engine
        self.prices = prices if prices is not None else load_prices()

    # -- aggregates -----------------------------------------------------------------------------

    def provider_comparison(self, filters: CallFilter | None = None) -> pd.DataFrame:
        """Per provider and model: calls, success rate, mean/p50/p95 latency, tokens and estimated cost."""
        where, params = self._where(filters)
        sql = f"""
            WITH {PRICES_CTE},
            agg AS (
                SELECT provider, model, count(*) AS calls,
                       count(*) FILTER (WHERE status = 'success') AS succeeded,
                       avg(latency_ms) AS mean_latency_ms,
                       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms) AS pct,
                       {_TOKEN_SUMS}
                FROM raw_calls{where}
                GROUP BY provider, model
            )
            SELECT a.provider, a.model, a.calls, a.succeeded, a.calls - a.succeeded AS failed,
                   a.succeeded::float8 / a.calls AS success_rate, a.mean_latency_ms,
                   a.pct[1] AS p50_latency_ms, a.pct[2] AS p95_latency_ms,
                   a.input_tokens, a.output_tokens, a.total_tokens,
                   {cost_sql("a.input_tokens", "a.output_tokens")} AS cost_usd
            FROM agg a{price_join("a")}
            ORDER BY a.provider, a.model
        """
        return self._frame(sql, params, COMPARISON_COLUMNS, "comparing providers")

    def calls_over_time(self, filters: CallFilter | None = None, *, bucket: str = "hour") -> pd.DataFrame:
        """Calls, outcomes, latency, tokens and cost per UTC minute, hour or day (buckets without calls are absent).

        Cost needs token sums per model in each bucket. Grouping a million rows by (bucket, provider,
        model) hashes text for every row; instead the distinct models are found by a skip scan of
        the covering index (one probe per model), and each model's calls are bucketed on their own
        (an index-only range scan each). Then the few rows per bucket are priced and summed.
        """
        if bucket not in BUCKETS:
            raise InputError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
        where, params = self._where(filters)
        params["step"] = BUCKETS[bucket]
        per_model = " WHERE r.provider = m.provider AND r.model = m.model" + where.replace(" WHERE ", " AND ", 1)
        sql = f"""
            WITH RECURSIVE {PRICES_CTE},
            models(provider, model) AS (
                (SELECT provider, model FROM raw_calls ORDER BY provider, model LIMIT 1)
                UNION ALL
                SELECT n.provider, n.model FROM models m CROSS JOIN LATERAL (
                    SELECT provider, model FROM raw_calls r WHERE (r.provider, r.model) > (m.provider, m.model)
                    ORDER BY provider, model LIMIT 1) n
            ),
            agg AS (
                SELECT m.provider, m.model, b.* FROM models m CROSS JOIN LATERAL (
                    SELECT date_bin(CAST(:step AS interval), created_at, {BUCKET_ORIGIN}) AS bucket, count(*) AS calls,
                           count(*) FILTER (WHERE status = 'success') AS succeeded,
                           sum(latency_ms) AS latency_sum, count(latency_ms) AS latency_n,
                           sum(({INPUT_TOKENS_SQL})::float8) AS input_tokens,
                           sum(({OUTPUT_TOKENS_SQL})::float8) AS output_tokens,
                           sum(({TOTAL_TOKENS_SQL})::float8) AS total_tokens
                    FROM raw_calls r{per_model}
                    GROUP BY 1) b
            )
            SELECT a.bucket, sum(a.calls)::bigint AS calls, sum(a.succeeded)::bigint AS succeeded,
                   sum(a.calls - a.succeeded)::bigint AS failed,
                   sum(a.latency_sum) / nullif(sum(a.latency_n), 0) AS mean_latency_ms,
                   sum(a.input_tokens)::bigint AS input_tokens, sum(a.output_tokens)::bigint AS output_tokens,
                   sum(a.total_tokens)::bigint AS total_tokens,
                   CASE WHEN bool_and({PRICED_SQL}) THEN sum({cost_sql("a.input_tokens", "a.output_tokens")}) END AS cost_usd,
                   coalesce(sum(a.calls) FILTER (WHERE NOT {PRICED_SQL}), 0)::bigint AS unpriced_calls
            FROM agg a{price_join("a")}
            GROUP BY a.bucket ORDER BY a.bucket
        """
        columns = ["bucket", "calls", "succeeded", "failed", "mean_latency_ms", "input_tokens", "output_tokens",
                   "total_tokens", "cost_usd", "unpriced_calls"]
        return self._frame(sql, params, columns, "computing calls over time")

    def failure_breakdown(self, filters: CallFilter | None = None) -> pd.DataFrame:
        """Failed, timed-out and cancelled calls by provider, model, status and error type, most frequent first."""
        where, params = self._where(filters)
        failed = ", ".join(f"'{status}'" for status in FAILED_STATUSES)
        where += (" AND " if where else " WHERE ") + f"status IN ({failed})"
        sql = f"""
            SELECT provider, model, status, coalesce(error_json->>'type', 'unknown') AS error_type,
                   count(*) AS calls, min(created_at) AS first_at, max(created_at) AS last_at,
                   min(left(error_json->>'message', 200)) AS example_message
            FROM raw_calls{where}
            GROUP BY provider, model, status, 4
            ORDER BY calls DESC, provider, model, status, error_type
        """
        columns = ["provider", "model", "status", "error_type", "calls", "first_at", "last_at", "example_message"]
        return self._frame(sql, params, columns, "breaking down failures")

    def summary_stats(self, filters: CallFilter | None = None) -> dict[str, Any]:
        """Overall figures: calls, outcomes, providers, models, time range, latency, tokens, cost and unpriced models."""
        where, params = self._where(filters)
        sql = f"""
            WITH {PRICES_CTE},
            agg AS (
                SELECT provider, model, count(*) AS calls,
                       count(*) FILTER (WHERE status = 'success') AS succeeded,
                       sum(latency_ms) AS latency_sum, count(latency_ms) AS latency_n,
                       min(created_at) AS first_at, max(created_at) AS last_at,
                       {_TOKEN_SUMS}
                FROM raw_calls{where}
                GROUP BY provider, model
            ),
            priced AS (
                SELECT a.*, {PRICED_SQL} AS is_priced, {cost_sql("a.input_tokens", "a.output_tokens")} AS cost
                FROM agg a{price_join("a")}
            )
            SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(succeeded), 0)::bigint AS succeeded,
                   coalesce(sum(calls - succeeded), 0)::bigint AS failed,
                   sum(succeeded)::float8 / nullif(sum(calls), 0) AS success_rate,
                   count(DISTINCT provider) AS providers, count(*) AS models,
                   min(first_at) AS first_call_at, max(last_at) AS last_call_at,
                   sum(latency_sum) / nullif(sum(latency_n), 0) AS mean_latency_ms,
                   coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
                   coalesce(sum(output_tokens), 0)::bigint AS output_tokens,
                   coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
                   CASE WHEN count(*) = 0 THEN 0.0 WHEN bool_and(is_priced) THEN sum(cost) END AS cost_usd,
                   coalesce(sum(cost), 0.0) AS priced_cost_usd,
                   coalesce(array_agg(provider || '/' || model ORDER BY provider, model)
                            FILTER (WHERE NOT is_priced), ARRAY[]::text[]) AS unpriced_models
            FROM priced
        """
        with translate_db_errors("computing summary stats"), self.engine.connect() as conn:
            row = conn.execute(text(sql), params).mappings().one()
        return dict(row)

    # -- rows -----------------------------------------------------------------------------------

    def recent_calls(self, filters: CallFilter | None = None, *, limit: int = 50, text_chars: int = 120) -> pd.DataFrame:
        """The newest calls (by created_at, then id) with prompt and response cut to `text_chars`."""
        where, params = self._where(filters)
        return self._call_rows(where, params, "r.created_at DESC, r.id DESC", limit, text_chars, "listing recent calls")

    def search_prompts(
        self, query: str, filters: CallFilter | None = None, *, limit: int = 50, text_chars: int = 120
    ) -> pd.DataFrame:
        """Calls whose prompt matches `query` (web-search syntax: words, "phrases", -not, or), newest first.

        Uses the GIN index `ix_raw_calls_prompt_fts` (the WHERE clause repeats its expression).
        """
        if not query.strip():
            raise InputError("the search query is empty; give one or more words to look for in prompts")
        where, params = self._where(filters)
        where += (" AND " if where else " WHERE ") + f"{PROMPT_TSVECTOR_SQL} @@ websearch_to_tsquery('simple', :query)"
        params["query"] = query
        return self._call_rows(where, params, "r.id DESC", limit, text_chars, "searching prompts")

    def _call_rows(
        self, where: str, params: dict[str, Any], order: str, limit: int, text_chars: int, action: str
    ) -> pd.DataFrame:
        params.update(limit=limit, chars=text_chars)
        sql = f"""
            WITH {PRICES_CTE}
            SELECT r.id, r.created_at, r.provider, r.model, r.modality, r.status,
                   left(coalesce(r.request_json->>'prompt', r.request_json::text), :chars) AS prompt,
                   left(coalesce(r.response_json->>'text', r.response_json::text), :chars) AS response,
                   r.error_json->>'type' AS error_type, r.latency_ms,
                   r.input_tokens, r.output_tokens, r.total_tokens,
                   {cost_sql("r.input_tokens", "r.output_tokens")} AS cost_usd
            FROM (SELECT id, created_at, provider, model, modality, status, request_json, response_json, error_json,
                         latency_ms, {_TOKEN_SELECT}
                  FROM raw_calls r{where} ORDER BY {order} LIMIT :limit) r{price_join("r")}
            ORDER BY {order}
        """
        return self._frame(sql, params, CALL_ROW_COLUMNS, action)

    # -- helpers --------------------------------------------------------------------------------

    def _where(self, filters: CallFilter | None) -> tuple[str, dict[str, Any]]:
        where, params = (filters or CallFilter()).where()
        return where, {**params, **self.prices.sql_params()}

    def _frame(self, sql: str, params: dict[str, Any], columns: list[str], action: str) -> pd.DataFrame:
        with translate_db_errors(action), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # plain tuples: pandas builds a frame from them fast
            cursor.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
            cursor.execute(driver_sql(conn, sql), params)
            rows = cursor.fetchall()
        frame = pd.DataFrame.from_records(rows, columns=columns)
        if "cost_usd" in frame:
            frame["cost_usd"] = frame["cost_usd"].astype("float64")  # NULL (no price) becomes NaN, never 0
        return frame
