"""IO manager: NPY for arrays, Parquet for tables, under the artifacts root, every file recorded.

The root is `$STUDYLLM_HOME/artifacts`, or STUDYLLM_ARTIFACTS_URL: a shared folder, or object
storage (`s3://bucket/prefix`, `gs://...`, any fsspec URL; its fsspec package, e.g. s3fs or gcsfs,
must be installed). Writes go through the core ArtifactService, so each file gets a
`call_artifacts` row (content type, size, sha256) attached to its materialization's group; reads
verify the file against that row first, so a changed or missing artifact stops the run with a
clear message.

Within one run the value a step wrote is handed to the next step that loads it (the run's steps share
one process and this IO manager: in_process_executor) instead of being read back: the embeddings of a
million texts are 1.5 GB to read and hash again. The handover still checks that the file is the one
this run wrote: its newest record is the write's (no other writer since) and, for a local file, its
size and modification time are unchanged; otherwise the file is read and verified as usual. It is
handed over once (the first loader gets it; any other loader reads the file), so no two steps share
one mutable value, and it is never held past the run.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from upath import UPath

from studyllm_core.config import get_settings
from studyllm_core.services.artifacts import ArtifactService, is_local
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.lineage import group_name, group_type_of
from studyllm_pipeline.resources import StudyllmDatabase


@dataclass(frozen=True)
class _Written:
    """A value this run wrote, with what identifies its file as the one written."""

    value: Any
    sha256: str
    stat: tuple[int, int] | None  # (size, mtime_ns) of a local file; None on object storage


def _stat(path: UPath) -> tuple[int, int] | None:
    if not is_local(path):
        return None
    found = Path(path).stat()
    return found.st_size, found.st_mtime_ns


class RecordedArtifactIOManager(dg.UPathIOManager):
    """One file per asset partition; `extension` is ".npy" or ".parquet"."""

    def __init__(self, base_path: UPath, artifacts: ArtifactService, extension: str) -> None:
        super().__init__(base_path=base_path)
        self.artifacts = artifacts
        self.extension = extension
        self._last: dict[str, Any] = {}
        self._written: dict[str, _Written] = {}  # path -> the value this run wrote there, until a step loads it

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        group_type = group_type_of(context.asset_key)
        group_id = ProvenanceService(self.artifacts.engine).ensure_group(group_type, group_name(context.asset_key, partition))
        stored = self.artifacts.write(
            obj,
            path,
            group_id=group_id,
            metadata={"asset_key": context.asset_key.to_user_string(), "partition": partition, "run_id": context.run_id},
        )
        self._last = {"sha256": stored.sha256, "byte_size": stored.byte_size, "artifact_id": stored.artifact_id}
        self._written[str(path)] = _Written(obj, stored.sha256, _stat(path))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        written = self._written.pop(str(path), None)
        if written is not None and self._unchanged(path, written):
            return written.value
        if not path.exists() and self.artifacts.record_for(path) is None:
            # Never written: a partition not materialized yet (skipped for allow_missing_partitions inputs).
            raise FileNotFoundError(str(path))
        return self.artifacts.read(path)

    def _unchanged(self, path: UPath, written: _Written) -> bool:
        """The file at `path` is still the one this run wrote (module docstring)."""
        record = self.artifacts.record_for(path)
        if record is None or record.sha256 != written.sha256:
            return False
        try:
            return _stat(path) == written.stat
        except OSError:  # removed since: the usual read says so
            return False

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        last, self._last = self._last, {}
        meta: dict[str, Any] = {
            "sha256": dg.MetadataValue.text(last.get("sha256", "")),
            "byte_size": dg.MetadataValue.text(f"{int(last.get('byte_size', 0)):,} bytes"),  # text: not a series to plot
            "artifact_id": dg.MetadataValue.text(str(last.get("artifact_id", ""))),
        }
        shape = getattr(obj, "shape", None)
        if shape is not None:
            meta["shape"] = dg.MetadataValue.text(" x ".join(str(s) for s in shape))
        return meta


class ArtifactIOManagerFactory(dg.ConfigurableIOManagerFactory):
    """Builds the IO manager for one file format; the database comes from the `database` resource.

    Nothing of it is run config: the format is the subclass's (changing it would make every stored
    artifact unreadable), so the Launchpad shows no IO manager settings.
    """

    database: dg.ResourceDependency[StudyllmDatabase]
    extension: ClassVar[str] = ".npy"

    def create_io_manager(self, context: dg.InitResourceContext) -> RecordedArtifactIOManager:
        root = get_settings().artifacts_dir
        return RecordedArtifactIOManager(UPath(root), self.database.artifacts(), self.extension)


class NpyArtifacts(ArtifactIOManagerFactory):
    """Arrays as .npy files."""

    extension: ClassVar[str] = ".npy"


class ParquetArtifacts(ArtifactIOManagerFactory):
    """Tables as .parquet files."""

    extension: ClassVar[str] = ".parquet"
