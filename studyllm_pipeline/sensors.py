"""Sensors that prepare new datasets (files dropped in a watched folder, the replies of prompt runs) and sweep
K over a reply dataset once it is prepared, so a prompt run ends in its comparison of models without a click."""

import json
from pathlib import Path

import dagster as dg

from studyllm_core.config import get_settings, sensor_interval_s, sweep_k_range
from studyllm_core.errors import InputError
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_core.services.inputs import FORMATS, LABEL_COLUMN, column_names
from studyllm_pipeline.jobs import prepare_job, sweep_k_job
from studyllm_pipeline.partitions import datasets, sweep_run_requests
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource

INTERVAL_S = sensor_interval_s()  # how often each sensor here and the report automation look (default 30 s)


def watched_folder() -> Path:
    """STUDYLLM_WATCH_DIR, or $STUDYLLM_HOME/datasets."""
    return get_settings().datasets_dir


def label_column_of(path: Path) -> str | None:
    """LABEL_COLUMN when the file's header has it; None otherwise, or when the header cannot be read
    (the prepare run reads the file for real and reports what is wrong with it)."""
    try:
        return LABEL_COLUMN if LABEL_COLUMN in column_names(path) else None
    except InputError:
        return None


def _mtime(path: Path) -> float | None:
    """The file's modification time, or None when it is gone (deleted between listing and looking)."""
    try:
        return path.stat().st_mtime if path.is_file() else None
    except OSError:
        return None


@dg.sensor(
    job=prepare_job, minimum_interval_seconds=INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Every {INTERVAL_S} s (STUDYLLM_SENSOR_INTERVAL_S): each new or changed CSV/TSV/Parquet/JSONL/TXT file in STUDYLLM_WATCH_DIR (default "
                "$STUDYLLM_HOME/datasets) becomes a dataset partition and a prepare_dataset run (snapshot, embed, "
                "project). On by default: with the default local embedder this costs nothing; with a paid embedder "
                "each new file is embedded once (the cache keeps it from being paid twice).",
)
def new_dataset_files(context: dg.SensorEvaluationContext, database: StudyllmDatabase):
    """Each new (or changed) CSV/TSV/Parquet/JSONL/TXT file becomes a dataset partition and a prepare run.

    The cursor remembers each file's modification time, so a file is picked up once per change.
    A `label` column, if the file has one, becomes the dataset's reference labels (for ACC/NMI/ARI).
    A file that cannot become a dataset (a name with no letter or digit, a file that vanished) is
    skipped with its reason in the sensor's log, never stopping the files beside it; distinct files
    get distinct names (`DatasetRegistry.file_dataset_name`).
    """
    folder = watched_folder()
    if not folder.is_dir():
        return dg.SkipReason(f"{folder} does not exist: create it and drop dataset files there")
    seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    fresh = [
        (path, mtime)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in FORMATS and (mtime := _mtime(path)) is not None and seen.get(path.name) != mtime
    ]
    if not fresh:
        return dg.SkipReason(f"no new files in {folder}")
    registry = DatasetRegistry(database.engine())
    names, requests = [], []
    for path, mtime in fresh:
        seen[path.name] = mtime  # skipped files too: their reason is logged once per change, not every tick
        try:
            name = registry.file_dataset_name(path)
            registry.register(DatasetSource(name=name, path=str(path.resolve()), label_column=label_column_of(path)))
        except (InputError, OSError) as exc:
            context.log.warning(f"skipped {path.name}: {exc}")
            continue
        names.append(name)
        requests.append(dg.RunRequest(run_key=f"{name}:{mtime}", partition_key=name))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datasets.build_add_request(names)] if names else [],
        cursor=json.dumps(seen),
    )


@dg.asset_sensor(
    asset_key=dg.AssetKey("prompt_run"), job=prepare_job, default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    description="After each prompt_run materialization, prepares the dataset its replies became (snapshot, embed, "
                "project) in a prepare_dataset run of the same partition. On by default: whoever ran the prompts "
                "chose to study the replies; with a paid embedder this embeds each reply once.",
)
def replies_to_prepare(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """A prompt run's replies are a dataset partition: prepare it."""
    partition = asset_event.dagster_event.partition if asset_event.dagster_event else None
    if not partition:
        return dg.SkipReason("the prompt_run materialization has no partition")
    return dg.RunRequest(run_key=f"{partition}:{asset_event.run_id}", partition_key=partition)


# The automatic sweep of replies runs k-LLMmeans' summary rounds only when they cost nothing (the offline
# summariser and the local embedder); otherwise it runs spherical k-means alone (llm_rounds 0: no API call).
OFFLINE_SUMMARIZER, OFFLINE_EMBEDDER = "extractive", "local"
PREPARED = dg.AssetKey("pca_basis")  # the last table of prepare_dataset


def replies_k_range(n_texts: int) -> list[int]:
    """The K a reply dataset is swept over on its own: STUDYLLM_SWEEP_K_MIN..STUDYLLM_SWEEP_K_MAX (default 2..12),
    cut to half its replies (at least two replies per cluster on average); empty when not even K_MIN fits."""
    low, high = sweep_k_range()
    return list(range(max(2, low), min(high, n_texts // 2) + 1))


@dg.sensor(
    job=sweep_k_job, minimum_interval_seconds=INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once a dataset of prompt_run replies is prepared (pca_basis materialized), sweeps K over "
                "STUDYLLM_SWEEP_K_MIN..MAX (default 2..12) cut to half its replies, in one sweep_k run; the sweep "
                "report and study_comparison (do the models answer differently, and how) follow through "
                "report_automation. On by default and free: with the offline summariser and the local embedder it "
                "runs k-LLMmeans; with a paid summariser or embedder it runs k-means alone (llm_rounds 0, no API "
                "call); sweep again by hand (studyllm backfill) to summarise with a paid model.",
)
def replies_to_sweep(context: dg.SensorEvaluationContext, database: StudyllmDatabase, embedder: EmbedderResource,
                     summarizer: SummarizerResource):
    """A prepared reply dataset is swept over its default K range, for free; file datasets are left to the user."""
    found = context.instance.fetch_materializations(PREPARED, limit=100, cursor=context.cursor, ascending=True)
    if not found.records:
        return dg.SkipReason("no dataset prepared since the last tick")
    registry = DatasetRegistry(database.engine())
    free = summarizer.spec == OFFLINE_SUMMARIZER and embedder.provider == OFFLINE_EMBEDDER
    run_config = {} if free else {"ops": {"sweep": {"config": {"llm_rounds": 0}}}}
    requests = []
    for record in found.records:
        name = record.partition_key
        if not name or registry.kind_of(name) != "prompt_run":
            continue  # a file or the demo: its sweep is the user's choice (backfill, the nightly schedule)
        ks = replies_k_range(registry.usable_texts(name) or 0)
        if not ks:
            context.log.warning(f"{name}: too few replies to sweep (K from {sweep_k_range()[0]} needs twice as many)")
            continue
        requests += sweep_run_requests(context.instance, {name: ks}, record.run_id, run_config)
    return dg.SensorResult(run_requests=requests, cursor=found.cursor)
