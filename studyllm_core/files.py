"""Writing output files safely: checked before any work, written whole or not at all, private to the user.

- `check_output_path` fails at once (before any API call) when a path cannot be written: a parent
  that is a file, a folder given where a file is wanted, a parent that is not writable.
- `atomic_write` writes to a temporary file beside the target and renames it into place, so a
  reader never sees half a file and a failed write (a full disk) leaves no corrupt file behind.
- `file_error` turns the OSError of a failed write into one line that says what happened
  ("the disk is full") and what to do.

Files are created with mode 0600 (`tempfile.mkstemp`), so outputs that hold prompts, replies or
vectors are readable by their owner only.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from studyllm_core.errors import InputError, StudyllmError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class OutputError(StudyllmError):
    """An output file could not be written (disk full, no permission); nothing partial was left."""


def check_output_path(path: str | Path, *, folder: bool = False, option: str = "--out") -> Path:
    """`path` as a Path if it can be written as a file (or, with `folder`, a folder); InputError naming the problem."""
    target = Path(path).expanduser()
    if target.exists():
        if folder and not target.is_dir():
            raise InputError(f"{option} {target} is a file; give a folder (new or empty) to write into")
        if not folder and target.is_dir():
            raise InputError(f"{option} {target} is a folder; give a file name, e.g. {target / 'out'}")
    parent = target if folder and not target.exists() else target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {target}: {existing} is a file, not a folder; choose a path in a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {target}: the folder {existing} is not writable; choose another path")
    return target


def file_error(exc: OSError, path: Path) -> OutputError:
    """One line for a failed write: what happened and the fix."""
    if exc.errno is None and _no_space_left(path.parent):  # numpy's short write: "4800 requested and 992 written"
        exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is used up"
        return OutputError(f"cannot write {path}: {what}; free space there or choose another path (nothing was written)")
    if exc.errno == errno.EFBIG:
        return OutputError(f"cannot write {path}: the file is larger than this system allows (nothing was written)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: {os.strerror(exc.errno).lower()}; choose another path")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(handle)` on a new private file beside `path`, then rename it to `path`; on any failure the
    temporary file is removed and an OSError becomes `file_error` (so no half-written file is ever left)."""
    try:
        make_private_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise file_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        error = file_error(exc, path)  # before the temporary file goes: a full disk is still full now
        _remove(tmp)
        raise error from None
    except BaseException:
        _remove(tmp)
        raise


def make_private_dirs(folder: Path) -> None:
    """Create `folder` (and missing parents) readable by the user only; existing folders are left as they are."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass


def _no_space_left(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
