"""Seed 002's PET head region as released (issue 28 item 1): the PET is cut on its own grid.

The released ``process_hecktor.py`` (MoriiHuang/SJTU_lab426_Solution_of_Hecktor) calls
``resample_head_neck_region`` on the CT and on the PET separately, so each gets its own origin
(x, y) and its own top (z); then ``apply_window(pet, 2.5, 5, normalize=True)``. Both are written
out below with SimpleITK and NumPy and compared with ours on a CT and a PET whose fields of view
differ (the PET shorter, narrower and shifted), as in real HECKTOR studies. The option
``pet_grid="ct"`` (HNTumorSeg before issue 28) is checked against its own formula on the same input.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.prompts.coarse_to_fine import (PET_HEAD_GRID, coarse_grid, head_grid, head_point,
                                                  window_head_images)
from HNTumorSegLib.vocab import PetHeadGrid


@pytest.fixture(scope="module")
def study():
    case = make_petct_case(seed=3, tall=True, in_plane=64)
    pet = case["PET"]
    z0, z1, y0, y1, x0, x1 = 6, pet.array.shape[0] - 9, 3, pet.array.shape[1] - 2, 2, pet.array.shape[2] - 4
    first = pet.index_to_physical(np.array([x0, y0, z0], float)) + np.array([1.3, -0.7, -2.2])  # off the CT's voxels
    short = Image(pet.array[z0:z1, y0:y1, x0:x1].copy(), pet.spacing, tuple(first), pet.direction)
    return case["CT"], short


# ---- the released code, written out ---------------------------------------------------------------

def released_resample_head_neck_region(img: sitk.Image, output_size=(256, 256, 128), output_spacing=(2, 2, 3)):
    """``resample_head_neck_region``: the image's own origin, its own top, B-spline, -1 outside."""
    arr = sitk.GetArrayFromImage(img)
    origin, spacing = img.GetOrigin(), img.GetSpacing()
    highest_z = origin[2] + spacing[2] * arr.shape[0]
    f = sitk.ResampleImageFilter()
    f.SetOutputDirection([1, 0, 0, 0, 1, 0, 0, 0, 1])
    f.SetOutputSpacing([float(s) for s in output_spacing])
    f.SetOutputOrigin([origin[0], origin[1], highest_z - output_size[2] * output_spacing[2]])
    f.SetSize([int(s) for s in output_size])
    f.SetInterpolator(sitk.sitkBSpline)
    f.SetDefaultPixelValue(-1)
    return f.Execute(img)


def released_apply_window(data: np.ndarray, level: float, width: float, normalize: bool = False) -> np.ndarray:
    if normalize:
        data = (data - data.min()) / (data.max() - data.min() + 1e-6)
    window_min = level - width / 2
    window_max = level + width / 2
    return np.clip((data - window_min) / (window_max - window_min + 1e-6), 0, 1)


def released_resample_roi_pet(image: sitk.Image, centroid, size=(144, 144, 144), spacing=(2, 2, 2)) -> sitk.Image:
    """``resample_roi(pet_image, centroid, type='PET')``: the coarse ROI from the PET's head image."""
    origin = [centroid[0] - size[0] / 2 * spacing[0], centroid[1] - size[1] / 2 * spacing[1],
              centroid[2] - size[2] * spacing[2]]
    f = sitk.ResampleImageFilter()
    f.SetOutputDirection(image.GetDirection())
    f.SetOutputSpacing([float(s) for s in spacing])
    f.SetOutputOrigin(origin)
    f.SetSize(list(size))
    f.SetInterpolator(sitk.sitkBSpline)
    f.SetDefaultPixelValue(0)
    return f.Execute(image)


def _on_ct_head_grid(pet: sitk.Image, ct: sitk.Image) -> sitk.Image:
    """The ``"ct"`` option's formula: the PET resampled onto the CT's released head grid."""
    ref = released_resample_head_neck_region(ct)
    return sitk.Resample(pet, ref, sitk.Transform(), sitk.sitkBSpline, -1.0)


# ---- tests ----------------------------------------------------------------------------------------

def test_default_is_the_released_own_grid():
    assert PET_HEAD_GRID is PetHeadGrid.OWN


def test_pet_head_region_equals_the_released_code_on_different_fields_of_view(study):
    ct, pet = study
    ct_h, pet_h = window_head_images(ct, pet, head_grid(ct))
    ref = released_resample_head_neck_region(pet.to_sitk())
    assert pet_h.origin == pytest.approx(ref.GetOrigin(), abs=1e-6)
    assert pet_h.shape_xyz == tuple(ref.GetSize()) and pet_h.spacing == pytest.approx(ref.GetSpacing())
    assert not np.allclose(pet_h.origin, ct_h.origin)            # the two head regions differ here
    expected = released_apply_window(sitk.GetArrayFromImage(ref), 2.5, 5, True)
    np.testing.assert_allclose(pet_h.array, expected, rtol=0, atol=1e-5)
    ct_ref = released_resample_head_neck_region(sitk.Cast(ct.to_sitk(), sitk.sitkFloat32))
    assert ct_h.origin == pytest.approx(ct_ref.GetOrigin(), abs=1e-6)
    np.testing.assert_allclose(ct_h.array, released_apply_window(sitk.GetArrayFromImage(ct_ref), 45, 300),
                               rtol=0, atol=1e-5)


def test_coarse_roi_pet_is_resampled_from_the_pets_own_head_region(study):
    ct, pet = study
    ct_h, pet_h = window_head_images(ct, pet, head_grid(ct))
    point = head_point(ct_h.with_array((ct_h.array > 0.3).astype(np.uint8))).xyz
    ours = coarse_grid(point).resample(pet_h, default=0.0)
    theirs = released_resample_roi_pet(pet_h.to_sitk(), point)
    assert ours.origin == pytest.approx(theirs.GetOrigin(), abs=1e-6)
    np.testing.assert_allclose(ours.array, sitk.GetArrayFromImage(theirs), rtol=0, atol=1e-5)


def test_ct_option_puts_the_pet_on_the_ct_head_grid(study):
    ct, pet = study
    ct_h, pet_ct = window_head_images(ct, pet, head_grid(ct), pet_grid="ct")
    assert pet_ct.same_grid(ct_h)
    ref = _on_ct_head_grid(pet.to_sitk(), sitk.Cast(ct.to_sitk(), sitk.sitkFloat32))
    np.testing.assert_allclose(pet_ct.array, released_apply_window(sitk.GetArrayFromImage(ref), 2.5, 5, True),
                               rtol=0, atol=1e-5)
    # the two choices see different PET values on the same coarse ROI (what the default changed)
    _, pet_own = window_head_images(ct, pet, head_grid(ct), pet_grid=PetHeadGrid.OWN)
    roi = coarse_grid(np.add(ct_h.origin, [256.0, 256.0, 360.0]))
    diff = np.abs(roi.resample(pet_own, default=0.0).array - roi.resample(pet_ct, default=0.0).array)
    assert diff.max() > 1e-3


def test_unknown_pet_head_grid_is_one_clear_error(study):
    from HNTumorSegLib.errors import InputError

    ct, pet = study
    with pytest.raises(InputError, match="did you mean own"):
        window_head_images(ct, pet, head_grid(ct), pet_grid="onw")
