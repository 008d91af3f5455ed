"""Issue 11, library level: write-then-verify, all-or-nothing commits, STOP, stale temp files, long names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from HNTumorSegLib.errors import EnvironmentFault, InputError
from HNTumorSegLib.fileio import STOP, PublishingStopped, temp_beside, write_text_atomic
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.pipeline.outputs import OutputSet


@pytest.fixture
def stop_flag():
    STOP.set()
    yield
    STOP.clear()


def test_nothing_is_published_after_stop(tmp_path, stop_flag):
    target = tmp_path / "labels.nii.gz"
    target.write_text("earlier")
    with pytest.raises(PublishingStopped):
        write_image(Image(np.ones((4, 5, 6), np.uint8)), target)
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_commit_is_all_or_nothing_when_a_rename_fails(tmp_path):
    first, second = tmp_path / "labels.nii.gz", tmp_path / "sub" / "boxes.json"
    first.write_text("earlier labels")
    out = OutputSet()
    out.add_image("labels", Image(np.ones((4, 5, 6), np.uint8)), first)
    out.add_json("boxes", [], second)
    out._staged[1][1].unlink()          # the second staged file vanishes before the commit (a real fault)
    with pytest.raises((InputError, EnvironmentFault)):
        out.commit()
    assert first.read_text() == "earlier labels"        # put back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]   # no temp, no backup, no folder


def test_output_that_is_a_folder_is_input_error(tmp_path):
    (tmp_path / "labels.nii.gz").mkdir()
    with pytest.raises(InputError, match="folder"):
        with OutputSet() as out:
            out.add_image("labels", Image(np.ones((4, 5, 6), np.uint8)), tmp_path / "labels.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_temp_files_of_a_killed_process_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".labels.nii.gz.{pid}.abcd1234.nii.gz"
    stale.write_bytes(b"half")
    mine = tmp_path / ".labels.nii.gz.1.keepme00.nii.gz"      # pid 1 is alive: not ours to remove
    mine.write_bytes(b"x")
    tmp = temp_beside(tmp_path / "labels.nii.gz")
    assert not stale.exists() and mine.exists()
    tmp.unlink()


def test_a_250_byte_name_is_written(tmp_path):
    name = "n" * 245 + ".json"
    path = write_text_atomic(tmp_path / name, "{}\n")
    assert path.read_text() == "{}\n" and [p.name for p in tmp_path.iterdir()] == [name]
