"""Clean-up with known answers: small components in mL, keep-largest GTVp, seed 002's fusion."""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.postprocess import (clean_up, fuse_binary_probabilities, keep_largest_component,
                                       remove_small_components)


def _labels() -> np.ndarray:
    a = np.zeros((10, 20, 20), np.uint8)
    a[1:4, 1:6, 1:6] = 1            # GTVp, 75 voxels
    a[6:8, 10:12, 10:12] = 1        # GTVp, 8 voxels
    a[1:3, 12:15, 12:15] = 2        # GTVn, 18 voxels
    a[8, 2, 15] = 2                 # GTVn, 1 voxel ...
    a[9, 3, 16] = 2                 # ... touching the previous one only at a corner: one 2-voxel component
    a[5, 18, 2] = 2                 # GTVn, 1 voxel alone
    return a


def test_remove_small_components_uses_spacing_and_26_connectivity():
    a = _labels()
    spacing = (1.0, 1.0, 2.0)            # 2 mm3 per voxel: 8 voxels = 0.016 mL
    out = remove_small_components(a, spacing, {1: 0.016, "2": 0.004})
    assert (out == 1).sum() == 75 + 8    # exactly at the limit: kept
    assert (out == 2).sum() == 18 + 2    # the corner-touching pair is 0.004 mL: kept; the single voxel goes
    out = remove_small_components(a, spacing, {1: 0.017})
    assert (out == 1).sum() == 75 and (out == 2).sum() == 21
    assert np.array_equal(a, _labels())  # the input is not modified


def test_remove_small_components_with_no_limits_is_identity():
    a = _labels()
    assert np.array_equal(remove_small_components(a, (1, 1, 1), {}), a)
    assert np.array_equal(remove_small_components(a, (1, 1, 1), {1: 0.0}), a)


def test_keep_largest_component():
    a = _labels()
    out = keep_largest_component(a, label=1)
    assert (out == 1).sum() == 75 and np.array_equal(out == 2, a == 2)
    # a tie keeps the component met first in (z, y, x) order
    t = np.zeros((4, 4, 8), np.uint8)
    t[0, 0, 5:7] = 1
    t[2, 2, 0:2] = 1
    out = keep_largest_component(t)
    assert out[0, 0, 5] == 1 and out[2, 2, 0] == 0


def test_fuse_binary_probabilities_rule():
    pt = np.array([0.1, 0.7, 0.2, 0.9, 0.6, 0.6, 0.5, 0.51]).reshape(1, 1, 8)
    pn = np.array([0.2, 0.1, 0.8, 0.6, 0.9, 0.6, 0.5, 0.3]).reshape(1, 1, 8)
    out = fuse_binary_probabilities(pt, pn)
    assert out.dtype == np.uint8
    # none, tumour, node, both->tumour larger, both->node larger, tie->GTVp, at threshold->none, just over
    assert out.ravel().tolist() == [0, 1, 2, 1, 2, 1, 0, 1]
    assert fuse_binary_probabilities(pt, pn, threshold=0.65).ravel().tolist() == [0, 1, 2, 1, 2, 0, 0, 0]
    with pytest.raises(ValueError):
        fuse_binary_probabilities(pt, pn[..., :4])


def test_clean_up_applies_a_model_card_block():
    a = _labels()
    out = clean_up(a, (1.0, 1.0, 2.0), {"2": 0.004}, keep_largest_gtvp=True)
    assert (out == 1).sum() == 75 and (out == 2).sum() == 20
