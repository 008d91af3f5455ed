"""Single-mask metrics against hand-computed values: overlap, HD95/MSD (MedPy definitions), lesions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from HNTumorSegLib.metrics import (OverlapCounts, directed_surface_distances, dsc, f1_aggregate, hd95, iou,
                                   label_lesions, lesion_f1_counts, msd)
from HNTumorSegLib.metrics.lesions import match_lesions


def cube(shape=(12, 12, 12), lo=(2, 2, 2), size=3) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo[0]:lo[0] + size, lo[1]:lo[1] + size, lo[2]:lo[2] + size] = True
    return m


# ---- overlap ------------------------------------------------------------------------------

def test_overlap_counts_hand_computed():
    a = np.zeros((4, 4, 4), bool); a[0, 0, 0:4] = True           # 4 voxels
    b = np.zeros((4, 4, 4), bool); b[0, 0, 2:4] = True; b[3, 3, 3] = True  # 3 voxels, 2 shared
    c = OverlapCounts.from_masks(a, b)
    assert (c.intersection, c.pred, c.ref, c.union, c.total) == (2, 4, 3, 5, 64)
    assert c.dsc() == pytest.approx(4 / 7)
    assert c.iou() == pytest.approx(2 / 5)
    assert c.sensitivity() == pytest.approx(2 / 3)
    # negatives of the reference: 61; false positives: 2 -> TN 59
    assert c.specificity() == pytest.approx(59 / 61)


def test_overlap_empty_conventions():
    empty = np.zeros((3, 3, 3), bool)
    one = empty.copy(); one[1, 1, 1] = True
    both_empty = OverlapCounts.from_masks(empty, empty)
    assert both_empty.dsc() is None and both_empty.iou() is None and both_empty.sensitivity() is None
    assert both_empty.specificity() == 1.0
    missed = OverlapCounts.from_masks(empty, one)  # prediction empty, reference not
    assert missed.dsc() == 0.0 and missed.iou() == 0.0 and missed.sensitivity() == 0.0
    spurious = OverlapCounts.from_masks(one, empty)  # reference empty, prediction not
    assert spurious.dsc() == 0.0 and spurious.sensitivity() is None
    assert spurious.specificity() == pytest.approx(26 / 27)
    assert dsc(one, one) == 1.0 and iou(one, one) == 1.0


# ---- surface distances ----------------------------------------------------------------------

def test_hd95_msd_cubes_offset_along_anisotropic_z():
    # 3x3x3 cubes, 2 slices apart along z (array axis 0) at 3 mm: the surface of each cube is
    # 26 voxels (the centre is eroded); per direction 9 voxels at 2 slices (6 mm), 8 at 1 slice
    # (3 mm, the ring around the eroded centre) and 9 at 0 mm. Pooled: 18x6, 16x3, 18x0.
    a = cube(lo=(2, 4, 4))
    b = cube(lo=(4, 4, 4))
    spacing_zyx = (3.0, 0.7, 0.7)
    d_ab, d_ba = directed_surface_distances(a, b, spacing_zyx)
    assert sorted(d_ab.tolist()) == sorted([0.0] * 9 + [3.0] * 8 + [6.0] * 9)
    assert sorted(d_ba.tolist()) == sorted(d_ab.tolist())
    assert hd95(a, b, spacing_zyx) == pytest.approx(6.0)  # percentile index 0.95*51 = 48.45 -> among the 6s
    assert msd(a, b, spacing_zyx) == pytest.approx(156 / 52)  # = 3.0


def test_hd95_msd_offset_along_x_uses_x_spacing():
    # the same shift along x (array axis 2) at 0.5 mm: catches a z/x swap of the spacing
    a = cube(lo=(4, 4, 2))
    b = cube(lo=(4, 4, 4))
    assert hd95(a, b, (3.0, 1.0, 0.5)) == pytest.approx(1.0)
    assert msd(a, b, (3.0, 1.0, 0.5)) == pytest.approx(0.5)


def test_msd_pools_both_sets_as_medpy_05():
    # A = the single centre voxel of cube B. d(A->B) = [1]; d(B->A) = 6 faces at 1, 12 edges
    # at sqrt2, 8 corners at sqrt3 (spacing 1). Pooled mean over 27 values; HD95 = sqrt3.
    b = cube(lo=(2, 2, 2))
    a = np.zeros_like(b); a[3, 3, 3] = True
    pooled = (1 + 6 + 12 * math.sqrt(2) + 8 * math.sqrt(3)) / 27
    directed = (1 + (6 + 12 * math.sqrt(2) + 8 * math.sqrt(3)) / 26) / 2
    assert msd(a, b) == pytest.approx(pooled)
    assert msd(a, b, pooled=False) == pytest.approx(directed)
    assert hd95(a, b) == pytest.approx(math.sqrt(3))


def test_distances_undefined_when_a_mask_is_empty():
    a = cube()
    empty = np.zeros_like(a)
    assert hd95(a, empty) is None and msd(empty, a) is None and hd95(empty, empty) is None


def _medpy_literal(a, b, spacing_zyx):
    """MedPy's __surface_distances on the full array (no cropping), written out from its source."""
    struct = ndimage.generate_binary_structure(3, 1)
    sa = a ^ ndimage.binary_erosion(a, structure=struct, iterations=1)
    sb = b ^ ndimage.binary_erosion(b, structure=struct, iterations=1)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing_zyx)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing_zyx)[sb]
    return d_ab, d_ba, sa, sb


@pytest.mark.parametrize("seed", range(6))
def test_distances_match_full_array_medpy_and_brute_force(seed):
    # random blobs, some touching the array edge, anisotropic spacing: the cropped computation
    # must equal MedPy's full-array one, and both equal a brute-force nearest-surface search
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(5, 16, 3))
    a = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=1)
    b = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=1)
    a[0, 0, 0] = b[-1, -1, -1] = True
    spacing = tuple(float(s) for s in rng.uniform(0.4, 4.0, 3))
    d_ab, d_ba, sa, sb = _medpy_literal(a, b, spacing)
    ours = directed_surface_distances(a, b, spacing)
    np.testing.assert_allclose(np.sort(ours[0]), np.sort(d_ab))
    np.testing.assert_allclose(np.sort(ours[1]), np.sort(d_ba))
    pa, pb = np.argwhere(sa) * spacing, np.argwhere(sb) * spacing
    np.testing.assert_allclose(np.sort(cdist(pa, pb).min(axis=1)), np.sort(d_ab), atol=1e-9)
    assert hd95(a, b, spacing) == pytest.approx(np.percentile(np.hstack((d_ab, d_ba)), 95))
    assert msd(a, b, spacing) == pytest.approx(np.concatenate((d_ab, d_ba)).mean())


def test_distance_crop_is_fast_on_a_large_volume():
    big = np.zeros((120, 512, 512), bool)
    big[50:60, 200:240, 200:240] = True
    shifted = np.roll(big, 2, axis=0)
    assert hd95(big, shifted, (3.0, 0.5, 0.5)) == pytest.approx(6.0)


# ---- lesions ------------------------------------------------------------------------------

def line(n=20, *spans):
    m = np.zeros((1, 1, n), bool)
    for lo, hi in spans:
        m[0, 0, lo:hi] = True
    return m


def test_lesions_are_26_connected():
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = m[1, 1, 1] = m[2, 2, 2] = True  # corner-touching diagonal: one lesion
    counts = lesion_f1_counts(m, m)
    assert (counts.n_pred, counts.n_ref, counts.tp) == (1, 1, 1)


def test_missed_and_false_positive_lesions():
    ref = line(20, (0, 4), (8, 12))          # two nodes
    pred = line(20, (1, 4), (16, 18))        # finds the first (IoU 3/4), misses the second, one FP
    c = lesion_f1_counts(pred, ref)
    assert (c.tp, c.fp, c.fn, c.n_pred, c.n_ref) == (1, 1, 1, 2, 2)
    assert f1_aggregate(c.tp, c.fp, c.fn) == pytest.approx(0.5)


def test_iou_threshold_is_strict():
    ref = line(20, (0, 10))
    at = lesion_f1_counts(line(20, (0, 3)), ref)      # IoU 3/10 = 0.3: not detected
    above = lesion_f1_counts(line(20, (0, 4)), ref)   # IoU 0.4: detected
    assert (at.tp, at.fp, at.fn) == (0, 1, 1)
    assert (above.tp, above.fp, above.fn) == (1, 0, 0)


def test_matching_is_one_to_one():
    # two predicted pieces inside one reference node, each with IoU 4/10 > 0.3: one TP, one FP
    c = lesion_f1_counts(line(20, (0, 4), (6, 10)), line(20, (0, 10)))
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    # one prediction spanning two reference nodes (IoU 4/9 each): one TP, one FN
    c = lesion_f1_counts(line(20, (0, 9)), line(20, (0, 4), (5, 9)))
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)


def test_greedy_matching_prefers_the_highest_iou():
    # one reference node [0, 10); pieces [0, 4) (IoU 0.4) and [5, 10) (IoU 0.5): the 0.5 one is matched
    pred_labels, n_pred = label_lesions(line(20, (0, 4), (5, 10)))
    ref_labels, n_ref = label_lesions(line(20, (0, 10)))
    matches = match_lesions(pred_labels, n_pred, ref_labels, n_ref)
    assert len(matches) == 1
    r, p, score = matches[0]
    assert score == pytest.approx(0.5)
    assert pred_labels[0, 0, 7] == p


def test_f1_aggregate_undefined_without_lesions():
    assert f1_aggregate(0, 0, 0) is None
    assert f1_aggregate(0, 2, 0) == 0.0


# ---- properties -----------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

masks_3d = arrays(bool, st.tuples(st.integers(2, 7), st.integers(2, 7), st.integers(2, 7)))
spacings = st.tuples(*[st.floats(0.3, 5.0)] * 3)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), spacing=spacings)
def test_properties_of_scores(data, spacing):
    a = data.draw(masks_3d)
    b = data.draw(arrays(bool, a.shape))
    # symmetric scores, within their ranges, zero distance and DSC 1 against itself
    d_ab, d_ba = dsc(a, b), dsc(b, a)
    assert d_ab == d_ba and (d_ab is None or 0.0 <= d_ab <= 1.0)
    h = hd95(a, b, spacing)
    assert h == pytest.approx(hd95(b, a, spacing))  # same pooled set, summed in another order
    m = msd(a, b, spacing)
    assert m == pytest.approx(msd(b, a, spacing)) and (m is None or m >= 0)
    if a.any():
        assert dsc(a, a) == 1.0 and hd95(a, a, spacing) == 0.0 and msd(a, a, spacing) == 0.0
        counts = lesion_f1_counts(a, a)
        assert counts.tp == counts.n_ref == counts.n_pred and counts.fp == counts.fn == 0
    c = lesion_f1_counts(a, b)
    assert c.tp + c.fn == c.n_ref and c.tp + c.fp == c.n_pred
