"""Analytics over raw_calls: provider comparison, calls over time, failures, tokens and cost.

Each is one query of the core StudyService; the tables go to the UI as table metadata with described
columns (and as Parquet artifacts), a few headline numbers as metadata the Plots tab draws across
materializations.
"""

from typing import Optional

import dagster as dg
import pandas as pd

from studyllm_core.charts import bar_chart, time_chart
from studyllm_core.columns import round_value
from studyllm_core.services.study.analytics import StudyService
from studyllm_pipeline.assets.common import PARQUET, user_errors_as_failures
from studyllm_pipeline.resources import StudyllmDatabase
from studyllm_pipeline.tables import as_table, chart, table_asset_metadata

ANALYTICS_GROUP = "analytics"
# Reading raw_calls costs nothing, so the analytics refresh on their own every hour (the sensor
# analytics_automation, on by default), and whenever someone materializes them.
HOURLY = (dg.AutomationCondition.cron_tick_passed("0 * * * *") & ~dg.AutomationCondition.in_progress()).with_label("hourly")
_ARGS = {"group_name": ANALYTICS_GROUP, "io_manager_key": "parquet_io", "kinds": PARQUET | {"postgres"},
         "deps": ["raw_calls"], "automation_condition": HOURLY}


def _table_output(frame: pd.DataFrame, *, shown: pd.DataFrame | None = None, **metadata) -> dg.Output:
    """The frame as the asset's value, with its schema, row count and the table (`shown` rows of it)."""
    return dg.Output(frame, metadata={**table_asset_metadata(frame), "table": as_table(frame if shown is None else shown),
                                      **metadata})


@dg.asset(**_ARGS)
@user_errors_as_failures
def provider_comparison(database: StudyllmDatabase):
    """Per provider and model: calls, success rate, p50/p95 latency, tokens and estimated cost."""
    frame = StudyService(database.engine()).provider_comparison()
    latency = {
        f"p50_latency_ms/{r.provider}/{r.model}": round_value("p50_latency_ms", r.p50_latency_ms)
        for r in frame.itertuples()
        if pd.notna(getattr(r, "p50_latency_ms", None))
    }
    charts = {}
    if len(frame):
        models = [f"{r.provider}/{r.model}" for r in frame.itertuples()]
        charts["calls_chart"] = chart(bar_chart(models, {"succeeded": frame["succeeded"].tolist(),
                                                         "failed": frame["failed"].tolist()},
                                                title="Calls per model", y_label="calls"), "calls per model")
        charts["latency_chart"] = chart(bar_chart(models, {"p50": frame["p50_latency_ms"].tolist(),
                                                           "p95": frame["p95_latency_ms"].tolist()},
                                                  title="Latency per model", y_label="ms"), "latency per model")
    return _table_output(frame, **charts, **latency)


@dg.asset(**_ARGS)
@user_errors_as_failures
def calls_over_time(database: StudyllmDatabase):
    """Calls, failures, latency and tokens per hour, with a chart of the last week."""
    frame = StudyService(database.engine()).calls_over_time(bucket="hour")
    metadata = {}
    recent = frame.tail(24 * 7)
    if len(recent):
        svg = time_chart(list(recent["bucket"]), {"calls": recent["calls"].tolist(), "failed": recent["failed"].tolist()},
                         title="Calls per hour (last week)", y_label="calls")
        metadata["chart"] = chart(svg, "calls per hour")
    return _table_output(frame, shown=frame.tail(48).iloc[::-1], **metadata)


@dg.asset(**_ARGS)
@user_errors_as_failures
def failure_rates(database: StudyllmDatabase):
    """Failures by provider, model, status and error type, with an example message of each."""
    frame = StudyService(database.engine()).failure_breakdown()
    return _table_output(frame, failed_calls=int(frame["calls"].sum()) if len(frame) else 0)


@dg.asset(**_ARGS)
@user_errors_as_failures
def usage_summary(database: StudyllmDatabase):
    """Totals: calls, success rate, tokens and estimated cost (null when a model has no price)."""
    stats = StudyService(database.engine()).summary_stats()
    frame = pd.DataFrame([stats]).astype(object)
    numeric = {k: round_value(k, v) for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return dg.Output(frame.astype(str), metadata={**numeric, "summary": dg.MetadataValue.json(_jsonable(stats)),
                                                  "dagster/row_count": 1})


class CallsQuery(dg.Config):
    """Which calls to list: the newest, or those whose prompt matches `search` (web-search syntax:
    words, "a phrase", -word, or)."""

    search: Optional[str] = None
    limit: int = 50


@dg.asset(**_ARGS)
@user_errors_as_failures
def recent_calls(config: CallsQuery, database: StudyllmDatabase):
    """The newest recorded calls, or with `search` in the Launchpad the calls whose prompt matches it:
    time, provider, model, status, prompt and reply (first 120 characters), latency, tokens, cost."""
    service = StudyService(database.engine())
    frame = (service.search_prompts(config.search, limit=config.limit) if config.search is not None
             else service.recent_calls(limit=config.limit))
    return _table_output(frame, search=config.search or "(none: the newest calls)")


def _jsonable(stats: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in stats.items()}


ANALYTICS_ASSETS = [provider_comparison, calls_over_time, failure_rates, usage_summary, recent_calls]
