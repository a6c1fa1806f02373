"""The report of a sweep run that stopped part-way: two run-status sensors (failed, cancelled).

A sweep step that fails on a K, or whose run is cancelled, stores the K it finished (cluster_metrics
says which are missing) but its run never reaches the report. The report's automation condition
does not fire for it: `any_deps_updated` ignores updates from a run that also targeted the report.
These sensors request the report of that dataset once such a run ended, so it names the missing K.
"""

import dagster as dg

from studyllm_pipeline.jobs import report_job

METRICS = dg.AssetKey("cluster_metrics")


def _report_after(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    if not partition:
        return dg.SkipReason(f"run {run.run_id} has no dataset partition")
    latest = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=METRICS, asset_partitions=[partition]), limit=1, ascending=False
    ).records
    if not latest or latest[0].run_id != run.run_id:
        return dg.SkipReason(f"run {run.run_id} stored no sweep results for {partition}")
    return dg.RunRequest(run_key=f"report-after:{run.run_id}", partition_key=partition,
                         tags={"studyllm/after_run": run.run_id})


@dg.run_failure_sensor(request_job=report_job, default_status=dg.DefaultSensorStatus.RUNNING,
                       description="The report of a sweep run that failed on a K: it names the missing K.")
def report_after_failed_sweep(context: dg.RunFailureSensorContext):
    return _report_after(context)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.CANCELED, request_job=report_job,
                      default_status=dg.DefaultSensorStatus.RUNNING,
                      description="The report of a sweep run that was cancelled part-way: it names the missing K.")
def report_after_cancelled_sweep(context: dg.RunStatusSensorContext):
    return _report_after(context)
