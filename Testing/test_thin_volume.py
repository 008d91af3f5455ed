"""A volume too thin for the pipeline's steps is refused with one line before ITK sees it (issue 25).

A 2-slice CT + PET killed the worker by SIGSEGV inside SimpleITK's cubic B-spline resampling
(seed 004's head crop) in 5 of 5 runs, reported only as exit 1. Cubic B-spline needs order + 1 = 4
voxels along every axis (:data:`HNTumorSegLib.image_checks.MIN_VOXELS_PER_AXIS`); fewer -> exit 2,
naming the file and the minimum, never a signal.
"""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.image_checks import MIN_VOXELS_PER_AXIS, check_extent
from HNTumorSegLib.phantoms.petct import make_petct_case


def _slab(image: Image, n: int) -> Image:
    return Image(np.ascontiguousarray(image.array[:n]), image.spacing, image.origin, image.direction)


@pytest.fixture(scope="module")
def petct(tmp_path_factory):
    case = make_petct_case(seed=1, in_plane=64)
    return case["CT"], case["PET"], tmp_path_factory.mktemp("thin")


@pytest.mark.parametrize("thin", ["CT", "PET"])
def test_two_slice_input_exits_2_with_one_line(petct, capsys, thin):
    ct, pet, root = petct
    folder = root / thin
    ct_path = write_image(_slab(ct, 2) if thin == "CT" else ct, folder / "ct.nii.gz")
    pet_path = write_image(_slab(pet, 2) if thin == "PET" else pet, folder / "pet.nii.gz")
    out = folder / "out" / "labels.nii.gz"
    code = main(["segment", "--model", "demo-petct", "--input", f"CT={ct_path}", "--input", f"PET={pet_path}",
                 "--output", str(out), "--device", "cpu", "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    named = ct_path if thin == "CT" else pet_path
    assert str(named) in err[0] and "2 voxels along z" in err[0] and f"at least {MIN_VOXELS_PER_AXIS}" in err[0]
    assert not out.exists() and not out.parent.exists()


def test_minimum_extent_per_axis():
    assert MIN_VOXELS_PER_AXIS == 4   # cubic B-spline: order 3 + 1 samples
    check_extent(Image(np.zeros((4, 4, 4), np.int16)), "t2.nii.gz", "T2 image")
    for shape in [(3, 8, 8), (8, 3, 8), (8, 8, 1)]:
        with pytest.raises(InputError, match="t2.nii.gz: T2 image has .* along [xyz]"):
            check_extent(Image(np.zeros(shape, np.int16)), "t2.nii.gz", "T2 image")


def test_batch_hecktor_thin_case_fails_by_name_not_by_signal(petct, capsys):
    """``batch --layout hecktor``: the 2-slice case fails with the one line (bad_input), never a signal."""
    ct, pet, root = petct
    data = root / "hecktor"
    write_image(_slab(ct, 2), data / "CHUM-001__CT.nii.gz")
    write_image(_slab(pet, 2), data / "CHUM-001__PT.nii.gz")
    out = root / "batch-out"
    code = main(["batch", "--layout", "hecktor", "--data", str(data), "--out", str(out), "--model", "demo-petct",
                 "--device", "cpu", "--workers", "1", "--no-report"])
    capsys.readouterr()
    from HNTumorSegLib.fileio import read_json

    case = read_json(out / "batch.json", "batch summary")["cases"]["CHUM-001"]
    assert code == 1 and case["status"] == "failed", case
    assert case["error"].startswith("bad_input:") and "2 voxels along z" in case["error"], case["error"]
    assert "crashed" not in case["error"]
