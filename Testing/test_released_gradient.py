"""Issue 28 item 6: seed 003's gradient map where boxes overlap, and on an integer-typed T2.

The released code (Aarhus-RadOnc-AI/GradientSegHNTS, ``src/data_conversion.py``,
``calculate_gradient_map_within_bbox`` + ``compute_gradient_magnitude``) is written out below,
its ``randint(4, 8)`` margins replaced by fixed ones so both sides see the same boxes: it loops
over label 1 then 2, over ``sitk.ConnectedComponent``'s components in their numbering order,
and *assigns* each box's map (a later box overwrites), into ``np.zeros_like(image)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from HNTumorSegLib.image import Image
from HNTumorSegLib.prompts.boxes import boxes_from_mask, released_draw_order
from HNTumorSegLib.prompts.gradient_map import DEFAULT_BOX_OVERLAP, gradient_map
from HNTumorSegLib.prompts.margins import MarginDraw
from HNTumorSegLib.vocab import BoxOverlap

BELOW, ABOVE = 5, 4   # the released slice(min - r, max + r) with r = 5 covers 5 below, 4 above


def released_normalize_image(image):
    return (image - np.min(image)) / (np.max(image) - np.min(image))


def released_compute_gradient_magnitude(image, bbox_slice):
    g = ndimage.gaussian_gradient_magnitude(released_normalize_image(image[bbox_slice]), sigma=1)
    lo, hi = g.min(), g.max()
    g = (g - lo) / (hi - lo) if hi - lo > 0 else np.ones_like(g)
    g = g * 2
    g[g > 1] = 1
    return g


def released_gradient_map(image, prior):
    gradient_map_ = np.zeros_like(image)
    for value in [1, 2]:
        instance_mask = prior == value
        if np.sum(instance_mask) == 0:
            continue
        cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(instance_mask.astype(np.uint8))))
        for component_label in np.unique(cc):
            if component_label == 0:
                continue
            coords = np.argwhere(cc == component_label)
            min_c = np.maximum(coords.min(axis=0) - BELOW, 0)
            max_c = np.minimum(coords.max(axis=0) + BELOW, image.shape)
            bbox_slice = tuple(slice(a, b) for a, b in zip(min_c, max_c))
            gradient_map_[bbox_slice] = released_compute_gradient_magnitude(image, bbox_slice)
    return gradient_map_


def _case(dtype=np.float32):
    """A smooth T2 and a prior whose boxes overlap: a GTVp touching two GTVn, the smaller GTVn first in raster order."""
    rng = np.random.default_rng(78)
    t2 = ndimage.gaussian_filter(rng.normal(300.0, 80.0, (28, 48, 48)), 1.5) + 200.0
    prior = np.zeros(t2.shape, np.uint8)
    prior[8:16, 12:24, 12:24] = 1
    prior[6:9, 25:29, 20:24] = 2            # small GTVn, first in raster order, its box overlaps the GTVp's
    prior[12:20, 22:34, 26:38] = 2          # large GTVn, overlaps both
    zz, yy, xx = np.mgrid[:28, :48, :48]
    t2 = t2 + 400.0 * ((zz - 12) ** 2 / 16 + (yy - 18) ** 2 / 36 + (xx - 18) ** 2 / 36 < 1)
    return t2.astype(dtype), prior


def _ours(t2, prior, overlap=DEFAULT_BOX_OVERLAP):
    image = Image(t2)
    boxes = boxes_from_mask(Image(prior), random_margin_vox=MarginDraw((BELOW, BELOW), (ABOVE, ABOVE)))
    return gradient_map(image, boxes, overlap=overlap).array


def test_default_overwrites_in_the_released_order_and_equals_released():
    assert DEFAULT_BOX_OVERLAP is BoxOverlap.OVERWRITE
    t2, prior = _case()
    released = released_gradient_map(t2.astype(np.float64), prior)
    ours = _ours(t2, prior)
    np.testing.assert_allclose(ours, released, atol=1e-5)
    # the boxes really overlap, so the older rule (max) differs from the released map
    maxed = _ours(t2, prior, overlap="max")
    diff = np.abs(maxed - released)
    assert (diff > 1e-3).sum() > 50 and diff.max() > 0.1
    assert np.all(maxed >= ours - 1e-6)


def test_released_order_is_label_then_raster_order_not_size():
    _, prior = _case()
    boxes = boxes_from_mask(Image(prior))
    assert [b.name for b in boxes] == ["GTVp-1", "GTVn-1", "GTVn-2"]          # ours: by size
    assert [b.name for b in released_draw_order(boxes)] == ["GTVp-1", "GTVn-2", "GTVn-1"]
    # a user's boxes (no raster voxel): label order, the given order within a label
    plain = [type(b)(b.label, b.name, b.min_ras, b.max_ras) for b in boxes[::-1]]
    assert [b.name for b in released_draw_order(plain)] == ["GTVp-1", "GTVn-2", "GTVn-1"]


def test_integer_t2_gives_the_float_map_not_the_released_binary_one():
    t2, prior = _case()
    t2_int = np.round(t2).astype(np.int16)
    ours_int = _ours(t2_int, prior)
    assert ours_int.dtype == np.float32
    np.testing.assert_allclose(ours_int, _ours(t2_int.astype(np.float32), prior), atol=1e-6)
    inside = ours_int > 0
    assert np.unique(ours_int[inside]).size > 100          # continuous, not binary
    # what the released code makes of the same int16 image: binary (0 or 1 only)
    released_int = released_gradient_map(t2_int, prior)
    assert released_int.dtype == np.int16 and set(np.unique(released_int)) <= {0, 1}
    np.testing.assert_allclose(ours_int, released_gradient_map(t2_int.astype(np.float64), prior), atol=1e-5)


def test_unknown_overlap_word_is_refused():
    from HNTumorSegLib.errors import InputError

    t2, prior = _case()
    with pytest.raises((InputError, ValueError)):
        _ours(t2, prior, overlap="sum")
