"""Seed 002's coarse-to-fine regions equal its released code's formulas (origin, size, spacing) on phantoms."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.prompts.coarse_to_fine import (RoiGrid, apply_window, choose_fine_roi, coarse_grid, fine_grid,
                                                  head_grid, head_point, paste_back, tumour_centroid,
                                                  window_head_images)


@pytest.fixture(scope="module")
def tall():
    return make_petct_case(seed=2, tall=True, in_plane=64)


def _released_head_crop(img: sitk.Image) -> sitk.Image:
    """process_hecktor.resample_head_neck_region, restated with SimpleITK (its formulas, our code)."""
    size, spacing = [256, 256, 128], [2.0, 2.0, 3.0]
    highest_z = img.GetOrigin()[2] + img.GetSpacing()[2] * img.GetSize()[2]
    f = sitk.ResampleImageFilter()
    f.SetOutputDirection([1, 0, 0, 0, 1, 0, 0, 0, 1])
    f.SetOutputSpacing(spacing)
    f.SetOutputOrigin([img.GetOrigin()[0], img.GetOrigin()[1], highest_z - size[2] * spacing[2]])
    f.SetSize(size)
    f.SetInterpolator(sitk.sitkBSpline)
    f.SetDefaultPixelValue(-1)
    return f.Execute(sitk.Cast(img, sitk.sitkFloat32))


def test_head_region_grid_and_values_match_the_released_resampling(tall):
    ct = tall["CT"]
    grid = head_grid(ct)
    nz, sz = ct.array.shape[0], ct.spacing[2]
    assert grid.size_xyz == (256, 256, 128) and grid.spacing_xyz == (2.0, 2.0, 3.0)
    assert grid.origin_xyz[:2] == pytest.approx(ct.origin[:2])
    assert grid.origin_xyz[2] == pytest.approx(ct.origin[2] + sz * nz - 128 * 3.0)
    released = _released_head_crop(ct.to_sitk())
    assert released.GetOrigin() == pytest.approx(grid.origin_xyz)
    ours = grid.resample(ct, default=-1.0)
    np.testing.assert_allclose(ours.array, sitk.GetArrayFromImage(released), rtol=1e-5, atol=1e-3)


def test_head_region_of_a_flipped_ct_is_the_same_physical_region(tall):
    ct = tall["CT"]
    flip = np.diag([-1.0, -1.0, 1.0])
    arr = ct.array[:, ::-1, ::-1].copy()
    x, y, _ = ct.shape_xyz
    far = ct.index_to_physical(np.array([x - 1, y - 1, 0]))
    flipped = Image(arr, ct.spacing, tuple(far), flip)
    assert head_grid(flipped) == head_grid(ct)


def test_windows_are_level_45_width_300_and_pet_minmax_over_5(tall):
    hu = np.array([-1000, -105, 45, 195, 500], np.float32)
    np.testing.assert_allclose(apply_window(hu, 45, 300), [0, 0, 0.5, 1, 1], atol=1e-6)
    pet = np.array([1.0, 2.0, 6.0], np.float32)          # min-max -> 0, .2, 1 ; / 5 -> 0, .04, .2
    np.testing.assert_allclose(apply_window(pet, 2.5, 5, minmax_first=True), [0, 0.04, 0.2], atol=1e-6)
    ct_h, pet_h = window_head_images(tall["CT"], tall["PET"], head_grid(tall["CT"]))
    assert ct_h.array.min() >= 0 and ct_h.array.max() <= 1 and 0 <= pet_h.array.max() <= 0.2 + 1e-6


def test_head_point_is_the_released_get_head_centroid():
    grid = head_grid(make_petct_case(seed=0, in_plane=32)["CT"])
    mask = np.zeros((128, 256, 256), np.uint8)
    mask[60:100, 90:150, 100:170] = 1           # the head: z 60..99, y 90..149, x 100..169
    mask[10:14, 10:14, 10:14] = 1               # a smaller blob elsewhere
    mask[100, 150, 170] = 1                     # touches the head at a corner only: not part of it
    point = head_point(grid.reference().with_array(mask))
    assert point.found and point.bbox_zyx == ((60, 100), (90, 150), (100, 170))
    x, y, z = (100 + 170) // 2, (90 + 150) // 2, int(60 + 40 * 0.7)   # 135, 120, 88
    expected = (np.array([x, y, z]) - 1) * np.array(grid.spacing_xyz) + np.array(grid.origin_xyz)
    assert point.xyz == pytest.approx(tuple(expected))
    textbook = head_point(grid.reference().with_array(mask), released_offset=False)
    assert np.subtract(textbook.xyz, point.xyz) == pytest.approx((2.0, 2.0, 3.0))
    empty = head_point(grid.reference())
    assert not empty.found


def test_coarse_roi_hangs_below_the_point_and_fine_roi_is_centred():
    point = (10.0, -20.0, 300.0)
    coarse = coarse_grid(point)
    assert coarse.size_xyz == (144, 144, 144) and coarse.spacing_xyz == (2.0, 2.0, 2.0)
    assert coarse.origin_xyz == pytest.approx((10 - 144, -20 - 144, 300 - 288))
    labels = coarse.reference()
    arr = labels.array.copy()
    arr[10, 20, 30] = 1
    arr[12, 24, 30] = 2                          # mean index z 11, y 22, x 30
    centroid = tumour_centroid(labels.with_array(arr))
    assert centroid == pytest.approx((30 * 2 + coarse.origin_xyz[0], 22 * 2 + coarse.origin_xyz[1],
                                      11 * 2 + coarse.origin_xyz[2]))
    fine = fine_grid(centroid)
    assert fine.size_xyz == (144, 144, 144) and fine.spacing_xyz == (1.0, 1.0, 1.0)
    assert fine.origin_xyz == pytest.approx(tuple(np.subtract(centroid, 72.0)))
    chosen = choose_fine_roi(labels.with_array(arr), coarse)
    assert chosen.from_tumour and chosen.grid == fine
    fallback = choose_fine_roi(labels, coarse)
    assert not fallback.from_tumour
    centre = np.add(coarse.origin_xyz, 143 / 2 * 2.0)
    assert np.add(fallback.grid.origin_xyz, 72.0) == pytest.approx(tuple(centre))


def test_paste_back_is_nearest_and_zero_outside(tall):
    ct = tall["CT"]
    roi = RoiGrid(tuple(np.add(ct.origin, (40.0, 40.0, 300.0))), (1.0, 1.0, 1.0), (20, 20, 20))
    lab = roi.reference()
    arr = lab.array.copy()
    arr[5:15, 5:15, 5:15] = 2
    back = paste_back(lab.with_array(arr), ct)
    assert back.same_grid(ct) and set(np.unique(back.array)) <= {0, 2}
    # 10 mm cube -> about 10/2 * 10/2 * 10/3 CT voxels
    assert 50 <= int((back.array == 2).sum()) <= 160
