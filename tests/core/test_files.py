"""Output files: checked before any work, written whole or not at all, private to the user."""

import errno
import stat

import pytest

from studyllm_core.errors import InputError
from studyllm_core.files import OutputError, atomic_write, check_output_path


def test_a_failed_write_leaves_nothing_and_says_why(tmp_path):
    target = tmp_path / "out" / "v.npy"

    def write_then_fail(handle):
        handle.write(b"x" * 128)  # what np.save had written when the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*v.npy: the disk is full; free space there"):
        atomic_write(target, write_then_fail)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_written_file_is_whole_and_private(tmp_path):
    target = tmp_path / "new" / "deeper" / "v.bin"
    atomic_write(target, lambda handle: handle.write(b"payload"))
    assert target.read_bytes() == b"payload"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


@pytest.mark.parametrize("make, folder, words", [
    (lambda p: (p / "f").write_text("x"), False, "f is a file, not a folder"),
    (lambda p: (p / "f").write_text("x"), True, "is a file; give a folder"),
    (lambda p: (p / "f").mkdir(), False, "is a folder; give a file name"),
])
def test_unusable_output_paths_are_refused_up_front(tmp_path, make, folder, words):
    make(tmp_path)
    path = tmp_path / "f" / "out.npy" if words.endswith("not a folder") else tmp_path / "f"
    with pytest.raises(InputError, match=words):
        check_output_path(path, folder=folder)
