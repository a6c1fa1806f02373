"""ArtifactService: files written under `$STUDYLLM_HOME/artifacts`, each recorded with its sha256.

The root is a local folder (a Path: files are written to a temporary name and renamed into place)
or object storage (a UPath such as `s3://bucket/prefix`: each file is one whole-object upload, as
object stores have no rename; an object becomes visible only when its upload completed).

Arrays are NPY, tables Parquet and small documents (reports) JSON. Every write records a `call_artifacts` row (URI, content
type, byte size, sha256, group); every read checks the file against the newest record for its
URI, so a changed or missing file is a clear `IntegrityError`, not silently different data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from studyllm_core.db.groups import ArtifactRow, GroupRepository
from studyllm_core.errors import IntegrityError
from studyllm_core.files import OutputError, atomic_write

if TYPE_CHECKING:
    from upath import UPath

CONTENT_TYPES = {".npy": "application/x-npy", ".parquet": "application/vnd.apache.parquet", ".json": "application/json"}
_CHUNK = 1 << 20
_NPY_CHUNK = 1 << 24  # bytes of an array's data hashed and moved per call: 16 MiB, as numpy's own writer


@dataclass(frozen=True)
class StoredArtifact:
    """A file on disk and its record."""

    artifact_id: int
    path: Path | UPath
    content_type: str
    byte_size: int
    sha256: str


def is_local(path: Path | UPath) -> bool:
    """True for a file on this machine's file system (a plain Path or a local UPath)."""
    return getattr(path, "protocol", "") in ("", "file", "local")


def uri_of(path: Path | UPath) -> str:
    """The URI an artifact is recorded under: `file:///abs/path` for a local file, the object's URL
    (`s3://bucket/key`) otherwise."""
    return Path(path).resolve().as_uri() if is_local(path) else str(path)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def encode(value: Any, suffix: str) -> bytes:
    """The bytes of `value` as NPY (arrays), Parquet (DataFrames, Arrow tables) or JSON (strict: no NaN)."""
    if suffix == ".npy":
        if not isinstance(value, np.ndarray):
            raise TypeError(f"an .npy artifact takes a numpy array, not {type(value).__name__}")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()
    if suffix == ".parquet":
        if isinstance(value, pd.DataFrame):
            value = pa.Table.from_pandas(value, preserve_index=False)
        if not isinstance(value, pa.Table):
            raise TypeError(f"a .parquet artifact takes a DataFrame or Arrow table, not {type(value).__name__}")
        sink = pa.BufferOutputStream()
        pq.write_table(value, sink)
        return sink.getvalue().to_pybytes()
    if suffix == ".json":
        return (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    raise TypeError(f"artifacts are .npy, .parquet or .json, not {suffix!r}")


def decode(path: Path | UPath, data: bytes | None = None) -> Any:
    """Read an artifact written by `encode` from `data` (its bytes, when already read) or the file
    (no pickles: NPY of object dtype is refused)."""
    if path.suffix not in (".npy", ".parquet", ".json"):
        raise TypeError(f"artifacts are .npy, .parquet or .json, not {path.suffix!r}")
    data = path.read_bytes() if data is None else data
    if path.suffix == ".npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if path.suffix == ".parquet":
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    return json.loads(data.decode("utf-8"))


class ArtifactService:
    """Write, record, verify and read artifact files for groups."""

    def __init__(self, engine: Engine, root: Path | UPath) -> None:
        self.engine = engine
        self.root = Path(root) if is_local(root) else root
        self.groups = GroupRepository(engine)

    def path_for(self, *parts: str, suffix: str) -> Path | UPath:
        """A path under the artifact root (parts become folders; the last gets `suffix`)."""
        *folders, name = [p.replace("/", "_") for p in parts]
        return self.root.joinpath(*folders, name + suffix)

    def write(
        self,
        value: Any,
        path: Path | UPath,
        *,
        group_id: int | None,
        call_id: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StoredArtifact:
        """Write `value` whole at `path` (NPY, Parquet or JSON by suffix), then record it. A local NPY file is
        streamed (hashed as it is written, no copy of the array in memory: the embeddings of a million texts
        are 1.5 GB)."""
        if is_local(path) and path.suffix == ".npy" and isinstance(value, np.ndarray):
            sink = _Hashed(None)
            atomic_write(Path(path), lambda handle: write_npy(sink.over(handle), value))
            size, digest = sink.size, sink.hexdigest()
        else:
            data = encode(value, path.suffix)
            if is_local(path):
                atomic_write(Path(path), lambda handle: handle.write(data))  # readers never see half a file; a full disk leaves none
            else:
                _put_object(path, data)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        content_type = CONTENT_TYPES[path.suffix]
        artifact_id = self.groups.record_artifact(
            uri=uri_of(path),
            content_type=content_type,
            byte_size=size,
            sha256=digest,
            group_id=group_id,
            call_id=call_id,
            metadata=metadata,
        )
        return StoredArtifact(artifact_id, path, content_type, size, digest)

    def write_parquet_parts(
        self,
        parts: Iterable[pa.Table],
        path: Path | UPath,
        *,
        group_id: int | None,
        metadata: dict[str, Any] | None = None,
    ) -> StoredArtifact:
        """Write Arrow tables of one schema as the row groups of one Parquet file, streamed (only one part
        is in memory at a time, so a table of N x K rows costs the memory of one part), atomically, and
        record it; its sha256 is read back from the file in chunks."""
        if path.suffix != ".parquet":
            raise TypeError(f"write_parquet_parts writes .parquet files, not {path.suffix!r}")

        def write(handle: Any) -> None:
            writer = None
            for part in parts:
                if writer is None:
                    writer = pq.ParquetWriter(handle, part.schema)
                writer.write_table(part)
            if writer is None:
                raise ValueError("write_parquet_parts needs at least one part")
            writer.close()

        if is_local(path):
            atomic_write(Path(path), write)
            size, digest = Path(path).stat().st_size, sha256_of(Path(path))
        else:  # object storage: one whole object (no partial uploads, no rename there)
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            _put_object(path, data)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        content_type = CONTENT_TYPES[path.suffix]
        artifact_id = self.groups.record_artifact(
            uri=uri_of(path), content_type=content_type, byte_size=size, sha256=digest,
            group_id=group_id, call_id=None, metadata=metadata,
        )
        return StoredArtifact(artifact_id, path, content_type, size, digest)

    def record_for(self, path: Path | UPath) -> ArtifactRow | None:
        """The newest record of the file at `path`."""
        rows = self.groups.artifacts(uri=uri_of(path), limit=1)
        return rows[0] if rows else None

    def verify(self, path: Path | UPath) -> ArtifactRow:
        """Check the file against its record; IntegrityError names what is wrong and what to do."""
        return self._verified(path)[0]

    def read(self, path: Path | UPath) -> Any:
        """Verify, then load the artifact (the file is read once for both; a local NPY file straight into its
        array, hashed as it is read, so loading costs the array's memory only)."""
        if is_local(path) and path.suffix == ".npy":
            record = self._record_of_existing(path)
            with Path(path).open("rb") as handle:
                source = _Hashed(handle)
                try:
                    array = read_npy(source)
                except ValueError:  # cut short or garbled: the hash says so first, when the file changed
                    while source.read(_CHUNK):
                        pass
                    _check(path, record, source.hexdigest())
                    raise
                while source.read(_CHUNK):  # anything after the array counts too
                    pass
            _check(path, record, source.hexdigest())
            return array
        _, data = self._verified(path)
        return decode(path, data)

    def _record_of_existing(self, path: Path | UPath) -> ArtifactRow:
        record = self.record_for(path)
        if record is None:
            raise IntegrityError(f"{path} is not a recorded artifact; re-materialize the step that writes it")
        if not path.exists():
            raise IntegrityError(f"artifact {path} was removed (recorded sha256 {record.sha256[:12]}...); re-materialize it")
        return record

    def _verified(self, path: Path | UPath) -> tuple[ArtifactRow, bytes]:
        record = self._record_of_existing(path)
        data = path.read_bytes()
        _check(path, record, hashlib.sha256(data).hexdigest())
        return record, data


def _check(path: Path | UPath, record: ArtifactRow, actual: str) -> None:
    if actual != record.sha256:
        raise IntegrityError(
            f"artifact {path} was changed after it was written (sha256 {actual[:12]}... instead of "
            f"{record.sha256[:12]}...); re-materialize it"
        )


def _plain_bytes(array: np.ndarray) -> np.ndarray | None:
    """The data of a C-contiguous array of a plain numeric dtype as a flat uint8 view (no copy), or None when
    numpy's own NPY code must handle it (any other dtype, Fortran order, no data)."""
    if array.size == 0 or array.dtype.kind not in "biufc" or not array.flags.c_contiguous:
        return None
    return array.reshape(-1).view(np.uint8)


def write_npy(sink: _Hashed, array: np.ndarray) -> None:
    """Write `array` as NPY through `sink`, byte for byte what np.save writes (no pickles). A plain C-ordered
    array goes straight from its memory in 16 MiB slices (numpy would copy each slice to bytes first)."""
    data = _plain_bytes(array)
    if data is None:
        np.lib.format.write_array(sink, array, allow_pickle=False)
        return
    np.lib.format.write_array_header_1_0(sink, np.lib.format.header_data_from_array_1_0(array))
    view = memoryview(data)
    for start in range(0, len(view), _NPY_CHUNK):
        sink.write(view[start : start + _NPY_CHUNK])


def read_npy(source: _Hashed) -> np.ndarray:
    """Read an NPY array through `source` (no pickles). The data of a plain array is read straight into the new
    array in 16 MiB slices (numpy's reader, for what is not a real file, copies every 256 KiB it reads)."""
    version = np.lib.format.read_magic(source)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(source)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(source)
    else:  # version 3 (utf-8 field names): numpy's reader, from the start again
        source.restart()
        return np.lib.format.read_array(source, allow_pickle=False)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    data = _plain_bytes(array)
    if data is None:  # no data, or a dtype numpy's reader handles: its own reader, from the start again
        source.restart()
        return np.lib.format.read_array(source, allow_pickle=False)
    view = memoryview(data)
    start = 0
    while start < len(view):
        got = source.readinto(view[start : start + _NPY_CHUNK])
        if not got:
            raise ValueError(f"EOF: reading array data, expected {len(view)} bytes got {start}")
        start += got
    return array.T if fortran else array


_BACKGROUND_HASH = 1 << 20  # slices from this size on are hashed on the helper thread
_HASHER: ThreadPoolExecutor | None = None
_HASHER_LOCK = threading.Lock()


class _Hashed:
    """A file object that hashes (sha256) and counts the bytes read from or written to the file it wraps (NPY
    data in 16 MiB slices, read_npy and write_npy).

    A large slice is hashed on a helper thread while the caller moves the next one (hashlib and file I/O both
    release the GIL): hashing a million embeddings (1.5 GB) takes about as long as writing them, so doing both
    at once saves most of one. One slice is in flight at a time, so the digest sees the bytes in file order;
    the slices are parts of an array or buffer the caller keeps, not copies."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0
        self._pending: Future[None] | None = None

    def over(self, handle: Any) -> _Hashed:
        self.handle = handle
        return self

    def _update(self, data: Any) -> None:
        self._wait()
        if len(data) >= _BACKGROUND_HASH:
            self._pending = _hasher().submit(self.digest.update, data)
        else:
            self.digest.update(data)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def write(self, data: bytes) -> int:
        self._update(data)
        self.size += len(data)
        return self.handle.write(data)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self._update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        got = self.handle.readinto(buffer) or 0
        self._update(buffer[:got])
        self.size += got
        return got

    def restart(self) -> None:
        """Back to the start of the file, hashing from scratch."""
        self._wait()
        self.handle.seek(0)
        self.digest, self.size = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        self._wait()
        return self.digest.hexdigest()


def _hasher() -> ThreadPoolExecutor:
    """The one helper thread that hashes large slices (started on first use; idle otherwise)."""
    global _HASHER
    with _HASHER_LOCK:
        if _HASHER is None:
            _HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifact-sha256")
        return _HASHER


def _forget_hasher() -> None:
    """In a forked child: the parent's helper thread is not there, start a new one when needed."""
    global _HASHER, _HASHER_LOCK
    _HASHER, _HASHER_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_hasher)


def _put_object(path: UPath, data: bytes) -> None:
    """Upload `data` as the whole object at `path` (object stores have no rename: a reader sees the
    previous object or this one, never part of it); a failed upload is one line naming the object."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as Dagster's UPathIOManager does before each write
        path.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check the storage's credentials and "
                          "STUDYLLM_ARTIFACTS_URL (nothing was recorded)") from None
