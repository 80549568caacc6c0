"""Atomic writes: an error mid-write leaves the previous file and no temporary."""

import os

import pytest

from unmix._atomic import atomic_path


def test_success_replaces_the_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target, suffix=".txt.tmp") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_a_missing_folder_is_named_and_nothing_is_written(tmp_path):
    target = tmp_path / "nope" / "result.h5"
    with pytest.raises(FileNotFoundError, match=r"cannot write .*result.h5: its folder .*nope"):
        with atomic_path(target) as tmp:
            open(tmp, "w").close()
    assert not (tmp_path / "nope").exists()


def test_a_folder_as_the_target_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"cannot write .*: it is a folder; give a file"):
        with atomic_path(tmp_path) as tmp:
            open(tmp, "w").close()
    assert list(tmp_path.iterdir()) == []
