"""Tests of data.files: the destination holds the old content or the new, never a mix or a temp."""

import errno
import os

import numpy as np
import pytest

from data.errors import UserError
from data.files import atomic_write, atomic_write_text, remove_leftover_temporaries

OLD = b"old content, must survive a failed write"


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(OLD)
    return path


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _write_half_then(error):
    """A writer that leaves half a file behind, then fails with ``error``."""

    def write(tmp):
        tmp.write_bytes(b"PK\x03\x04 half of a zip")
        raise error

    return write


def test_replaces_the_file_and_leaves_no_temp(target):
    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_bytes(b"new")

    assert atomic_write(target, write) == target
    assert target.read_bytes() == b"new"
    assert _names(target.parent) == ["model.npz"]
    (tmp,) = seen
    assert tmp.parent == target.parent
    assert tmp.name.startswith(".model.npz.") and tmp.name.endswith(".tmp.npz")


def test_the_temp_keeps_the_suffix_so_np_savez_appends_nothing(tmp_path):
    path = tmp_path / "weights.npz"
    atomic_write(path, lambda tmp: np.savez(tmp, w=np.arange(3.0)))
    assert _names(tmp_path) == ["weights.npz"]
    with np.load(path, allow_pickle=False) as f:
        assert f["w"].tolist() == [0.0, 1.0, 2.0]


def test_a_new_file_gets_the_usual_permissions(tmp_path):
    reference = tmp_path / "reference.txt"
    reference.write_text("made by open()")
    written = atomic_write_text(tmp_path / "written.txt", "made atomically")
    assert written.stat().st_mode == reference.stat().st_mode


def test_data_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "log.csv", "epoch,loss\n1,0.5\n")
    assert calls[:2] == ["fsync", "replace"]


def test_text_round_trips_as_utf8(tmp_path):
    path = atomic_write_text(tmp_path / "meta.json", '{"class": "Ankle boot", "µ": 1}')
    assert path.read_bytes().decode("utf-8") == '{"class": "Ankle boot", "µ": 1}'


@pytest.mark.parametrize("error", [RuntimeError("writer bug"), KeyboardInterrupt()])
def test_a_writer_failing_midway_keeps_the_old_file(target, error):
    with pytest.raises(type(error)):
        atomic_write(target, _write_half_then(error))
    assert target.read_bytes() == OLD
    assert _names(target.parent) == ["model.npz"]


def test_a_full_disk_while_writing_is_a_user_error(target):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(UserError) as info:
        atomic_write(target, _write_half_then(full))
    message = str(info.value)
    assert str(target) in message and "No space left on device" in message
    assert "previous file, if any, is unchanged" in message
    assert target.read_bytes() == OLD
    assert _names(target.parent) == ["model.npz"]


def test_a_failing_rename_keeps_the_old_file(target, monkeypatch):
    def no_space(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(UserError, match="No space left on device"):
        atomic_write_text(target, "new")
    assert target.read_bytes() == OLD
    assert _names(target.parent) == ["model.npz"]


def test_a_missing_folder_is_named_and_not_created(tmp_path):
    with pytest.raises(UserError) as info:
        atomic_write_text(tmp_path / "runs" / "log.csv", "x")
    assert f"the folder '{tmp_path / 'runs'}' does not exist" in str(info.value)
    assert _names(tmp_path) == []


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "runs").write_bytes(b"a file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        atomic_write_text(tmp_path / "runs" / "log.csv", "x")
    assert _names(tmp_path) == ["runs"]
    assert (tmp_path / "runs").read_bytes() == b"a file"


def test_a_folder_in_place_of_the_file_is_refused(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(UserError, match="model.npz: cannot write"):
        atomic_write_text(tmp_path / "model.npz", "x")
    assert _names(tmp_path) == ["model.npz"]
    assert (tmp_path / "model.npz").is_dir()


def test_remove_leftover_temporaries_removes_exactly_what_atomic_write_names(tmp_path):
    leftovers = [".checkpoint.npz.0123456789ab.tmp.npz", ".log.csv.abcdef012345.tmp.csv"]
    kept = [
        "checkpoint.npz",
        "notes.tmp",
        ".checkpoint.npz.0123456789ab.tmp.csv",  # another suffix than the name's
        ".checkpoint.npz.0123456789AB.tmp.npz",  # not lower-case hex
        ".checkpoint.npz.0123456789a.tmp.npz",  # 11 digits
        ".hidden",
    ]
    for name in leftovers + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".figures.png.0123456789ab.tmp.png").mkdir()  # a folder: never removed
    assert remove_leftover_temporaries(tmp_path) == sorted(leftovers)
    assert _names(tmp_path) == sorted([*kept, ".figures.png.0123456789ab.tmp.png"])


def test_a_write_interrupted_before_its_rename_leaves_a_temporary_that_is_recognised(tmp_path):
    names = []

    def remember_and_stop(tmp):
        names.append(tmp.name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "log.csv", remember_and_stop)
    (tmp_path / names[0]).write_bytes(b"half")  # as if a SIGKILL had left it
    assert remove_leftover_temporaries(tmp_path) == names
