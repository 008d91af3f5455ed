"""Seed 003's gradient map: zero outside the boxes, highest on the tumour border, the code's formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.prompts.boxes import LesionBox, boxes_from_mask, boxes_to_mask, box_to_index_slices
from HNTumorSegLib.prompts.gradient_map import gradient_map

IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[1] = True  # 3 mm slices: measure distances in-plane


def _sphere_case():
    z, y, x = np.mgrid[:24, :40, :40]
    sphere = (x - 20) ** 2 + (y - 20) ** 2 + ((z - 12) * 1.5) ** 2 <= 8 ** 2
    rng = np.random.default_rng(0)
    arr = np.where(sphere, 300.0, 100.0) + rng.normal(0, 2.0, sphere.shape)
    img = Image(arr.astype(np.float32), (1.0, 1.0, 1.5), (3.0, -7.0, 11.0))
    return img, img.with_array(sphere.astype(np.uint8))


def test_zero_outside_boxes_range_and_grid():
    img, mask = _sphere_case()
    boxes = boxes_from_mask(mask, margin_vox=3)
    g = gradient_map(img, boxes)
    assert g.same_grid(img) and g.array.dtype == np.float32
    inside = boxes_to_mask(boxes, img)
    assert np.all(g.array[~inside] == 0)
    assert g.array.min() >= 0 and g.array.max() == pytest.approx(1.0)
    assert np.all(gradient_map(img, []).array == 0)


def test_matches_the_published_formula():
    """minmax(gaussian_gradient_magnitude(crop, sigma=1 voxel)) * 2, clipped at 1, inside the box."""
    img, mask = _sphere_case()
    box = boxes_from_mask(mask, margin_vox=3)[0]
    sl = box_to_index_slices(box, img)
    crop = img.array[sl].astype(np.float64)
    crop = (crop - crop.min()) / (crop.max() - crop.min())          # the code normalises in the box
    grad = ndimage.gaussian_gradient_magnitude(crop, sigma=1)
    expected = np.minimum((grad - grad.min()) / (grad.max() - grad.min()) * 2, 1)
    assert np.allclose(gradient_map(img, [box]).array[sl], expected, atol=1e-6)


def test_paper_and_code_intensity_normalisations_agree():
    img, mask = _sphere_case()
    boxes = boxes_from_mask(mask, margin_vox=3)
    a = gradient_map(img, boxes).array
    b = gradient_map(img.with_array(img.array * 0.37 + 1234.0), boxes).array
    assert np.allclose(a, b, atol=1e-5)


def test_sphere_border_is_highest():
    img, mask = _sphere_case()
    g = gradient_map(img, boxes_from_mask(mask, margin_vox=4)).array
    m = mask.array > 0
    s = np.ones((3, 3, 3), bool)
    shell = ndimage.binary_dilation(m, s) & ~ndimage.binary_erosion(m, s)
    core = ndimage.distance_transform_edt(m, sampling=img.spacing[::-1]) >= 4.0
    assert core.sum() > 50
    assert g[shell].mean() > 0.9
    assert g[core].mean() < 0.15


def test_overlapping_boxes_take_the_maximum_in_any_order_with_overlap_max():
    img, mask = _sphere_case()
    big = boxes_from_mask(mask, margin_vox=4)[0]
    small = boxes_from_mask(mask, margin_vox=-4)[0]
    a = gradient_map(img, [big, small], overlap="max").array
    b = gradient_map(img, [small, big], overlap="max").array
    assert np.array_equal(a, b)
    assert np.all(a >= gradient_map(img, [big]).array)
    # the default (released) overwrites: the same boxes in another order give another map
    assert not np.array_equal(gradient_map(img, [big, small]).array, gradient_map(img, [small, big]).array)


def test_sigma_in_mm_differs_on_anisotropic_grid():
    img, mask = _sphere_case()
    boxes = boxes_from_mask(mask, margin_vox=3)
    assert not np.allclose(gradient_map(img, boxes).array, gradient_map(img, boxes, sigma_unit="mm").array)


def test_box_outside_image_raises():
    img, _ = _sphere_case()
    with pytest.raises(InputError, match="outside"):
        gradient_map(img, [LesionBox(1, "GTVp-1", (900, 900, 900), (910, 910, 910))])


@pytest.mark.parametrize("seed", [0, 1])
def test_midrt_phantom_map_peaks_on_the_tumour_border(seed):
    case = make_midrt_case(seed=seed)
    t2, truth = case["midRT_T2"], case["midRT_mask"].array > 0
    boxes = boxes_from_mask(case["preRT_mask_registered"], margin_vox=4)
    g = gradient_map(t2, boxes).array
    inside = boxes_to_mask(boxes, t2)
    assert np.all(g[~inside] == 0)
    tumour = truth & inside
    shell = (ndimage.binary_dilation(tumour, IN_PLANE) & ~ndimage.binary_erosion(tumour, IN_PLANE)) & inside
    depth = ndimage.distance_transform_edt(tumour, sampling=t2.spacing[::-1])
    core = depth >= 2.7                                  # >= 3 in-plane voxels inside
    background = inside & ~ndimage.binary_dilation(tumour, IN_PLANE, iterations=4)
    assert core.sum() > 20 and shell.sum() > 200
    assert g[shell].mean() > g[core].mean() + 0.2
    assert g[shell].mean() > 2.2 * g[background].mean()
    # and the map falls off going into the tumour
    rings = [g[(depth > d) & (depth <= d + 0.9)].mean() for d in (0.0, 0.9, 1.8)]
    assert rings[0] > rings[1] > rings[2]
