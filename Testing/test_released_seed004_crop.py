"""Seed 004's head crop grid as released (issue 28 item 3).

The released code (Liiiii2101/HECKTOR2025-MEDAI, ``preprocess.py``) resamples CT and PET onto a
1 mm identity grid (``get_bounding_boxes`` + ``resample_images``: origin = max of the origins,
size = ``round(min(origin + size * spacing) - origin)``, B-spline, SimpleITK's default 0
outside), finds the hot spot on the PET (``get_roi_center``: top 25 % of slices, z-score with
torch's mean and unbiased std, > 1, largest 26-connected component, mean index cast to int;
else ``(shape / 2).astype(int)``) and cuts 200 x 200 x 310 voxels (``crop_neck_region_sitk``:
start = clip(c - size // 2), end = clip(start + size), start = max(end - size, 0)). All of it is
written out below and compared with ours on a CT and a PET whose fields of view differ.
``grid="edges"`` (HNTumorSeg before issue 28) is checked against its own formula on the same input.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms import make_petct_case
from HNTumorSegLib.prompts import head_localisation as hl
from HNTumorSegLib.vocab import HeadCropGrid

torch = pytest.importorskip("torch")
skimage_measure = pytest.importorskip("skimage.measure")

SMALL = dict(in_plane=48, ct_spacing=(4.0, 4.0, 6.0))   # 192 x 192 x 264 mm: the whole-image resampling stays quick
CROP = (120, 120, 150)                                   # smaller than the study in every axis, so the clip rules run


@pytest.fixture(scope="module")
def study():
    case = make_petct_case(seed=11, **SMALL)
    pet = case["PET"]
    nz, ny, nx = pet.array.shape
    first = pet.index_to_physical(np.array([3, 1, 4], float)) + np.array([0.6, -1.3, 0.8])
    short = Image(pet.array[4:nz - 10, 1:ny - 2, 3:nx - 1].copy(), pet.spacing, tuple(first), pet.direction)
    return case["CT"], short


# ---- the released code, written out ---------------------------------------------------------------

def released_bounding_box(ct: sitk.Image, pet: sitk.Image) -> np.ndarray:
    ct_origin, pet_origin = np.array(ct.GetOrigin()), np.array(pet.GetOrigin())
    ct_max = ct_origin + np.array(ct.GetSize()) * np.array(ct.GetSpacing())
    pet_max = pet_origin + np.array(pet.GetSize()) * np.array(pet.GetSpacing())
    return np.concatenate([np.maximum(ct_origin, pet_origin), np.minimum(ct_max, pet_max)], axis=0)


def released_resample_images(ct: sitk.Image, pet: sitk.Image):
    resampling = [1, 1, 1]
    f = sitk.ResampleImageFilter()
    f.SetOutputDirection([1, 0, 0, 0, 1, 0, 0, 0, 1])
    f.SetOutputSpacing(resampling)
    bb = released_bounding_box(ct, pet)
    size = np.round((bb[3:] - bb[:3]) / resampling).astype(int)
    f.SetOutputOrigin(bb[:3])
    f.SetSize([int(k) for k in size])
    f.SetInterpolator(sitk.sitkBSpline)
    return f.Execute(ct), f.Execute(pet), bb


def released_get_roi_center(pet_tensor, z_top_fraction=0.75, z_score_threshold=1.0):
    shape = np.array(pet_tensor.shape)
    crop_z_start = int(z_top_fraction * shape[2])
    top = pet_tensor[..., crop_z_start:]
    mask = ((top - top.mean()) / (top.std() + 1e-8)) > z_score_threshold
    if not mask.any():
        center_in_top = (np.array(top.shape) / 2).astype(int)
    else:
        labeled, num = skimage_measure.label(mask.numpy(), return_num=True, connectivity=3)
        sizes = np.bincount(labeled.ravel())[1:]
        center_in_top = np.mean(np.argwhere(labeled == np.argmax(sizes) + 1), axis=0)
    return (center_in_top + np.array([0, 0, crop_z_start])).astype(int)


def released_crop(ct1: sitk.Image, pet1: sitk.Image, crop_box_size=(200, 200, 310)):
    """``crop_neck_region_sitk`` on ``resample_images``'s output: (crop origin, size, CT crop, PET crop)."""
    pet_xyz = np.transpose(sitk.GetArrayFromImage(pet1), (2, 1, 0))
    center = released_get_roi_center(torch.from_numpy(pet_xyz).float())
    crop = np.asarray(crop_box_size, dtype=int)
    shape = np.asarray(pet_xyz.shape)
    start = np.clip(center - crop // 2, 0, shape)
    end = np.clip(start + crop, 0, shape)
    start = np.maximum(end - crop, 0)
    index, size = [int(i) for i in start], [int(e - s) for s, e in zip(start, end)]
    ct_c, pet_c = sitk.RegionOfInterest(ct1, size=size, index=index), sitk.RegionOfInterest(pet1, size=size, index=index)
    return np.array(ct_c.GetOrigin()), tuple(size), sitk.GetArrayFromImage(ct_c), sitk.GetArrayFromImage(pet_c)


# ---- tests ----------------------------------------------------------------------------------------

def test_defaults_are_the_released_ones():
    assert hl.HEAD_CROP_GRID is HeadCropGrid.RELEASED
    assert hl.HEAD_SEARCH_SPACING_MM == 1.0 and hl.HEAD_SEARCH_INTERPOLATOR == "bspline"


def test_common_grid_is_the_released_bounding_box(study):
    ct, pet = study
    bb = released_bounding_box(sitk.Cast(ct.to_sitk(), sitk.sitkFloat32), pet.to_sitk())
    common = hl.common_grid(ct, pet)
    np.testing.assert_allclose(common.origin, bb[:3], rtol=0, atol=1e-5)
    assert tuple(common.size) == tuple(np.round(bb[3:] - bb[:3]).astype(int))


def test_crop_origin_size_and_voxels_equal_the_released_code(study):
    ct, pet = study
    ct1, pet1, _ = released_resample_images(sitk.Cast(ct.to_sitk(), sitk.sitkFloat32), pet.to_sitk())
    origin, size, ct_ref, pet_ref = released_crop(ct1, pet1, CROP)
    crop = hl.locate_head(ct, pet, crop_mm=CROP)
    assert crop.found_hot_region
    np.testing.assert_allclose(crop.ct.origin, origin, rtol=0, atol=1e-5)
    assert crop.ct.shape_xyz == size
    # voxel values: the released B-spline of the whole image vs ours from the part under the crop
    for ours, ref in ((crop.ct.array, ct_ref), (crop.pet.array, pet_ref)):
        assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


def test_flat_pet_falls_back_to_the_released_middle_voxel(study):
    ct, pet = study
    flat = pet.with_array(np.ones_like(pet.array))
    ct1, pet1, _ = released_resample_images(sitk.Cast(ct.to_sitk(), sitk.sitkFloat32), flat.to_sitk())
    origin, size, _, _ = released_crop(ct1, pet1, CROP)
    plan = hl.plan_head_crop(ct, flat, crop_mm=CROP)
    assert not plan.found_hot_region
    np.testing.assert_allclose(plan.grid.origin, origin, rtol=0, atol=1e-5)
    assert plan.grid.shape_xyz == size


def test_edges_option_is_the_voxel_edge_overlap_and_differs(study):
    ct, pet = study
    lo = np.maximum(ct.corners_lps().min(0), pet.corners_lps().min(0))
    hi = np.minimum(ct.corners_lps().max(0), pet.corners_lps().max(0))
    common = hl.common_grid(ct, pet, grid="edges")
    np.testing.assert_allclose(common.origin, lo + 0.5, rtol=0, atol=1e-9)
    assert tuple(common.size) == tuple(np.floor(hi - lo + 1e-6).astype(int))
    old = hl.plan_head_crop(ct, pet, CROP, grid="edges", search_spacing=2.0, search_interpolator="linear")
    new = hl.plan_head_crop(ct, pet, CROP)
    offset = np.asarray(old.grid.origin) - np.asarray(new.grid.origin)
    assert np.all(np.abs(offset - np.round(offset)) > 1e-3)        # the two grids do not share voxel centres
    assert np.abs(offset).max() <= 3.0
