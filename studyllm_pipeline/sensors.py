"""A sensor that turns files dropped in a watched folder into datasets and prepares them."""

import json
import os
from pathlib import Path

import dagster as dg

from studyllm_core.config import get_settings
from studyllm_core.errors import InputError
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource, dataset_name
from studyllm_core.services.inputs import FORMATS, LABEL_COLUMN, column_names
from studyllm_pipeline.jobs import prepare_job
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase


def watched_folder() -> Path:
    """STUDYLLM_WATCH_DIR, or $STUDYLLM_HOME/datasets."""
    raw = os.environ.get("STUDYLLM_WATCH_DIR")
    return Path(raw).expanduser() if raw else get_settings().home / "datasets"


def label_column_of(path: Path) -> str | None:
    """LABEL_COLUMN when the file's header has it; None otherwise, or when the header cannot be read
    (the prepare run reads the file for real and reports what is wrong with it)."""
    try:
        return LABEL_COLUMN if LABEL_COLUMN in column_names(path) else None
    except InputError:
        return None


@dg.sensor(job=prepare_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_dataset_files(context: dg.SensorEvaluationContext, database: StudyllmDatabase):
    """Each new (or changed) CSV/TSV/Parquet/JSONL/TXT file becomes a dataset partition and a prepare run.

    The cursor remembers each file's modification time, so a file is picked up once per change.
    A `label` column, if the file has one, becomes the dataset's reference labels (for ACC/NMI/ARI).
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
        registry.register(DatasetSource(name=name, path=str(path.resolve()), label_column=label_column_of(path)))
        names.append(name)
        requests.append(dg.RunRequest(run_key=f"{name}:{path.stat().st_mtime}", partition_key=name))
        seen[path.name] = path.stat().st_mtime
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datasets.build_add_request(names)],
        cursor=json.dumps(seen),
    )
