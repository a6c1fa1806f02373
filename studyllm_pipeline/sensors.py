"""A sensor that turns files dropped in a watched folder into datasets and prepares them."""

import json
import os
from pathlib import Path

import dagster as dg

from studyllm_core.config import get_settings
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource, dataset_name
from studyllm_core.services.inputs import FORMATS
from studyllm_pipeline.jobs import prepare_job
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase


def watched_folder() -> Path:
    """STUDYLLM_WATCH_DIR, or $STUDYLLM_HOME/datasets."""
    raw = os.environ.get("STUDYLLM_WATCH_DIR")
    return Path(raw).expanduser() if raw else get_settings().home / "datasets"


@dg.sensor(job=prepare_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_dataset_files(context: dg.SensorEvaluationContext, database: StudyllmDatabase):
    """Each new (or changed) CSV/TSV/Parquet/JSONL/TXT file becomes a dataset partition and a prepare run.

    The cursor remembers each file's modification time, so a file is picked up once per change.
    """
    folder = watched_folder()
    if not folder.is_dir():
        return dg.SkipReason(f"{folder} does not exist: create it and drop dataset files there")
    seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    fresh = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in FORMATS and seen.get(path.name) != path.stat().st_mtime
    ]
    if not fresh:
        return dg.SkipReason(f"no new files in {folder}")
    registry = DatasetRegistry(database.engine())
    names, requests = [], []
    for path in fresh:
        name = dataset_name(path.stem)
        registry.register(DatasetSource(name=name, path=str(path.resolve()), label_column=None))
        names.append(name)
        requests.append(dg.RunRequest(run_key=f"{name}:{path.stat().st_mtime}", partition_key=name))
        seen[path.name] = path.stat().st_mtime
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datasets.build_add_request(names)],
        cursor=json.dumps(seen),
    )
