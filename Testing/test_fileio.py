"""Atomic writes: complete file or nothing, readable permissions, the user's umask respected."""

import os
import stat

import pytest

from HNTumorSegLib.fileio import atomic_path, write_json_atomic, write_text_atomic


def test_write_json_atomic_creates_folder_and_reads_back(tmp_path):
    out = write_json_atomic(tmp_path / "a" / "b.json", {"DSC": 0.5})
    assert out.read_text() == '{\n  "DSC": 0.5\n}\n'
    assert [p.name for p in out.parent.iterdir()] == ["b.json"]


def test_permissions_follow_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_text_atomic(tmp_path / "x.txt", "hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_error_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]
