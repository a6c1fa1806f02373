"""The Dagster side of bench_scale.py: the code location's jobs on one file dataset, as `studyllm demo` runs them
(prepare_dataset for the dataset partition, sweep_k over the K partitions as one run per contiguous range,
sweep_report_job), in this process. Run as its own process so its wall time and peak RSS are its own.

python _scale_pipeline.py DATASET TEXTS_FILE K1,K2,... RESTARTS PCA_DIM

The embedder comes from the environment (STUDYLLM_EMBED_PROVIDER/MODEL/BASE_URL), the database from
STUDYLLM_HOME (the bench's embedded server, attached through postmaster.pid). Prints one JSON line:
seconds per job and the best K.
"""

import json
import sys
import time
import uuid

import dagster as dg

from studyllm_core.db.engine import open_database
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.instance import apply_environment, prepare_dagster_home
from studyllm_pipeline.jobs import prepare_job, report_job, sweep_k_job
from studyllm_pipeline.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    contiguous_ranges,
    datasets,
    k_values,
    new_k_values,
    partition_key,
)

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run(job: str, instance: dg.DagsterInstance, run_config: dict, **options) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config={**QUIET, **run_config}, raise_on_error=False, **options
    )
    if not result.success:
        failures = [e.event_specific_data.error.message.strip() for e in result.get_step_failure_events()]
        raise SystemExit(f"{job} failed: {'; '.join(failures)}")
    return result


def main(dataset: str, path: str, ks: list[int], restarts: int, pca_dim: int) -> None:
    _, _, env = prepare_dagster_home()
    apply_environment(env)
    DatasetRegistry(open_database()).register(DatasetSource(name=dataset, kind="file", path=path))
    seconds: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=5)
        instance.add_dynamic_partitions(datasets.name, [dataset])
        axis = instance.get_dynamic_partitions(k_values.name)
        added = new_k_values(axis, ks)
        instance.add_dynamic_partitions(k_values.name, added)
        start = time.perf_counter()
        run(prepare_job.name, instance, {"ops": {"pca": {"config": {"pca_dim": pca_dim}}}}, partition_key=dataset)
        seconds["prepare"] = time.perf_counter() - start
        start = time.perf_counter()
        sweep_config = {"ops": {"sweep": {"config": {"n_restarts": restarts, "llm_rounds": 0}}}}
        for part in contiguous_ranges(axis + added, ks):
            tags = {RANGE_START_TAG: partition_key(dataset, part[0]), RANGE_END_TAG: partition_key(dataset, part[-1])}
            run(sweep_k_job.name, instance, sweep_config, tags=tags, run_id=str(uuid.uuid4()))
        seconds["sweep_k"] = time.perf_counter() - start
        start = time.perf_counter()
        run(report_job.name, instance, {}, partition_key=dataset)
        seconds["report"] = time.perf_counter() - start
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(k) for k in sys.argv[3].split(",")], int(sys.argv[4]), int(sys.argv[5]))
