"""Unreadable images end with one line naming the file and exit 2 (never "internal error", exit 1).

A truncated .nii.gz (ITK would read it silently with zeros for the missing voxels; Python's
gzip raises a bare EOFError), a file whose header is not NIfTI, a gzip stream that is damaged,
a float image cut short: each is refused by :func:`HNTumorSegLib.image.read_image`, through
the real command line in a child process as well.
"""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, read_image, write_image


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    labels = write_image(Image(rng.integers(0, 3, (6, 20, 20)).astype(np.uint8)), tmp_path / "labels.nii.gz")
    image = write_image(Image(rng.normal(size=(6, 20, 20)).astype(np.float32)), tmp_path / "image.nii.gz")
    return labels, image


def _truncate(src, dst, keep: float):
    raw = gzip.decompress(src.read_bytes())
    dst.write_bytes(gzip.compress(raw[: int(len(raw) * keep)]))  # a complete gzip of a cut-short NIfTI
    return dst


def test_truncated_and_damaged_files_are_input_errors(good, tmp_path):
    labels, image = good
    cases = {
        "short.nii.gz": (_truncate(labels, tmp_path / "short.nii.gz", 0.6), r"is truncated \(\d+ of \d+ bytes\)"),
        "cut.nii.gz": (tmp_path / "cut.nii.gz", r"truncated or corrupt \(EOFError\)"),
        "float.nii.gz": (_truncate(image, tmp_path / "float.nii.gz", 0.9), "is truncated"),
        "header.nii": (tmp_path / "header.nii", "has no NIfTI header"),
    }
    (tmp_path / "cut.nii.gz").write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])
    (tmp_path / "header.nii").write_bytes(b"not a nifti header" * 40)
    for name, (path, message) in cases.items():
        with pytest.raises(InputError, match=message) as info:
            read_image(path)
        assert name in str(info.value)


def test_truncated_label_map_exit_2_in_a_child_process(good, tmp_path):
    labels, _ = good
    bad = _truncate(labels, tmp_path / "bad.nii.gz", 0.5)
    run = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "export", "--labels", str(bad), "--source",
                          str(tmp_path), "--seg", str(tmp_path / "seg.dcm")], capture_output=True, text=True,
                         timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "bad.nii.gz" in lines[0] and "truncated" in lines[0]
    assert not (tmp_path / "seg.dcm").exists()


def test_truncated_file_in_evaluate_exit_2(good, tmp_path, capsys):
    labels, _ = good
    (tmp_path / "cut.nii.gz").write_bytes(labels.read_bytes()[:60])
    assert main(["evaluate", "--pred", str(tmp_path / "cut.nii.gz"), "--ref", str(labels)]) == 2
    assert "cut.nii.gz" in capsys.readouterr().err
