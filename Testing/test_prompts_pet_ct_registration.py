"""Seed 004's fallback behind the alignment gate (issue 24): a PET whose origin was lost is registered
rigidly to its CT, checked, and applied with a warning (the gate itself: test_pet_alignment_gate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.prompts.pet_ct_registration import pet_on_ct


@pytest.fixture(scope="module")
def study():
    case = make_petct_case(seed=1, in_plane=64)
    return case["CT"], case["PET"], case["mask"]


def _moved(pet: Image, shift_mm) -> Image:
    return Image(pet.array, pet.spacing, tuple(np.add(pet.origin, shift_mm)), pet.direction)


def test_overlapping_pet_is_only_resampled(study):
    ct, pet, _ = study
    warnings: list[str] = []
    result = pet_on_ct(ct, pet, warn=warnings.append)
    assert not result.registered and not warnings and result.pet.same_grid(ct)
    assert result.overlap_before > 0.9


def test_shifted_pet_origin_is_registered_back_with_a_warning(study):
    ct, pet, mask = study
    truth = pet_on_ct(ct, pet).pet
    shift = (30.0, -20.0, 400.0)                              # the PET now lies 400 mm above its CT
    warnings: list[str] = []
    result = pet_on_ct(ct, _moved(pet, shift), warn=warnings.append)
    assert result.registered and result.overlap_before == 0.0 and result.overlap_after > 0.9
    assert len(warnings) == 1 and "registered the PET rigidly" in warnings[0] and "covered only 0%" in warnings[0]
    assert "alignment gate passed" in warnings[0] and result.gate_passed
    assert result.pet.same_grid(ct)
    # the recovered transform undoes the shift (PET voxels are 4 mm) with next to no rotation
    assert np.allclose(result.translation_mm, shift, atol=4.0)
    assert np.max(np.abs(result.rotation_rad)) < 0.05
    # and the PET on the CT grid matches the correctly placed one: the tumour is as hot as it should be
    a, b = truth.array.ravel(), result.pet.array.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9
    tumour = mask.array == 1
    assert result.pet.array[tumour].mean() == pytest.approx(truth.array[tumour].mean(), rel=0.25)
    assert result.pet.array[tumour].mean() > 1.3 * result.pet.array[~tumour & (ct.array > -500)].mean()


def test_registration_that_cannot_recover_overlap_is_one_clear_error(study):
    ct, pet, _ = study
    # a PET of a different, much smaller field of view cannot cover half the CT whatever its pose
    small = Image(pet.array[:8, :8, :8], pet.spacing, tuple(np.add(pet.origin, (0, 0, 900.0))), pet.direction)
    with pytest.raises(InputError, match="failed the alignment gate: the PET covers .*% of the CT|could not be registered"):
        pet_on_ct(ct, small, warn=lambda _m: None)


def test_segment_validation_registers_a_lost_pet_and_says_so(study, tmp_path):
    """Wired into the pipeline: validate_request places the PET, the progress note carries the warning."""
    from HNTumorSegLib.image import write_image
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from HNTumorSegLib.pipeline.tasks import prepare_work
    from HNTumorSegLib.pipeline.validate import validate_request

    ct, pet, _ = study
    ct_path = write_image(ct, tmp_path / "ct.nii.gz")
    pet_path = write_image(_moved(pet, (0.0, 0.0, 500.0)), tmp_path / "pet.nii.gz")
    case = validate_request(SegmentRequest(model="demo-petct", input_paths={"CT": str(ct_path), "PET": str(pet_path)},
                                           output_path=str(tmp_path / "out.nii.gz"), device="cpu"))
    assert len(case.notes) == 1 and "registered the PET rigidly" in case.notes[0]
    assert case.images["PET"].same_grid(ct)
    assert case.notes[0] in prepare_work(case).notes
    assert case.notes[0] in case.warnings          # also in the progress stream's warnings and the result
    # a PET in its place: no note, the PET keeps its own grid
    ok = validate_request(SegmentRequest(model="demo-petct",
                                         input_paths={"CT": str(ct_path), "PET": str(write_image(pet, tmp_path / "p2.nii.gz"))},
                                         output_path=str(tmp_path / "out.nii.gz"), device="cpu"))
    assert ok.notes == [] and ok.images["PET"].same_grid(pet)
