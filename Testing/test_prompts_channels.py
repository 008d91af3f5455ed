"""Seed 002's CT channels, and normalisation schemes checked against nnU-Net v2's own code."""

from __future__ import annotations

import numpy as np
import pytest
from nnunetv2.preprocessing.normalization.default_normalization_schemes import (CTNormalization,
                                                                                NoNormalization,
                                                                                RescaleTo01Normalization,
                                                                                ZScoreNormalization)

from HNTumorSegLib.errors import InputError, ModelError
from HNTumorSegLib.image import Image
from HNTumorSegLib.prompts.ct_channels import enhanced_channels, scale_pet, window_ct
from HNTumorSegLib.prompts.normalisation import normalise, schemes_from_plans


# ---- CT enhancement ------------------------------------------------------------------------------

def test_window_ct_known_values():
    hu = np.array([-1000, -110, -35, 40, 115, 190, 3000], np.int16).reshape(1, 1, 7)
    assert np.allclose(window_ct(hu).ravel(), [-1, -1, -0.5, 0, 0.5, 1, 1])
    assert window_ct(hu).dtype == np.float32


def test_scale_pet_min_max_and_fixed_suv():
    pet = np.array([0.5, 1.5, 10.5, 20.5], np.float32).reshape(1, 1, 4)
    assert np.allclose(scale_pet(pet).ravel(), [0, 0.05, 0.5, 1])
    assert np.allclose(scale_pet(pet, suv_max=10).ravel(), [0.05, 0.15, 1, 1])
    assert np.all(scale_pet(np.full((2, 2, 2), 3.0)) == 0)


def test_enhanced_channels_values_and_sign_preserving_cube_root():
    hu = np.array([-110, -72.5, 40, 77.5, 190], np.float32).reshape(1, 1, 5)   # x = -1, -0.75, 0, .25, 1
    pet = np.array([0, 1, 2, 3, 4], np.float32).reshape(1, 1, 5)
    ct_img = Image(hu, (1, 1, 1))
    ch = enhanced_channels(ct_img, ct_img.with_array(pet))
    assert ch.shape == (4, 1, 1, 5) and ch.dtype == np.float32
    x = np.array([-1, -0.75, 0, 0.25, 1])
    assert np.allclose(ch[0].ravel(), x)
    assert np.allclose(ch[1].ravel(), x ** 2)
    assert np.allclose(ch[2].ravel(), [-1, -0.9085603, 0, 0.6299605, 1])      # cbrt(-0.75) < 0
    assert np.allclose(ch[3].ravel(), [0, 0.25, 0.5, 0.75, 1])


def test_enhanced_channels_need_one_grid():
    with pytest.raises(InputError, match="same grid"):
        enhanced_channels(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))


# ---- normalisation vs nnU-Net v2 -----------------------------------------------------------------

PROPS = {"mean": 61.7, "std": 48.3, "percentile_00_5": -117.0, "percentile_99_5": 233.0,
         "median": 60.0, "min": -1000.0, "max": 3000.0}


@pytest.fixture
def ct_like():
    rng = np.random.default_rng(5)
    return (rng.normal(20, 300, size=(9, 21, 17))).astype(np.float32)


def test_ct_scheme_equals_nnunet(ct_like):
    ref = CTNormalization(use_mask_for_norm=False, intensityproperties=PROPS).run(ct_like.copy())
    scheme = {"type": "ct", **{k: PROPS[k] for k in ("mean", "std", "percentile_00_5", "percentile_99_5")}}
    ours = normalise(ct_like, scheme)
    assert ours.dtype == np.float32 and np.array_equal(ours, ref)
    assert ct_like.max() > 233  # the input was not changed in place
    assert ours.max() == pytest.approx((233.0 - 61.7) / 48.3, rel=1e-6)


def test_zscore_equals_nnunet(ct_like):
    ref = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(ct_like.copy())
    assert np.array_equal(normalise(ct_like, {"type": "zscore"}), ref)
    assert np.array_equal(normalise(ct_like, {"type": "ZScoreNormalization"}), ref)


def test_masked_zscore_equals_nnunet_inside(ct_like):
    mask = np.zeros(ct_like.shape, bool)
    mask[2:7, 3:15, 4:12] = True
    seg = np.where(mask, 0, -1)
    ref = ZScoreNormalization(use_mask_for_norm=True, intensityproperties={}).run(ct_like.copy(), seg)
    ours = normalise(ct_like, {"type": "zscore", "use_mask": True}, mask=mask)
    assert np.allclose(ours[mask], ref[mask], rtol=1e-6, atol=1e-6)
    assert np.all(ours[~mask] == 0)


def test_range_and_none_equal_nnunet(ct_like):
    ref = RescaleTo01Normalization(use_mask_for_norm=False, intensityproperties={}).run(ct_like.copy())
    assert np.array_equal(normalise(ct_like, {"type": "range"}), ref)
    ref = NoNormalization(use_mask_for_norm=False, intensityproperties={}).run(ct_like.copy())
    assert np.array_equal(normalise(ct_like, {"type": "none"}), ref)


def test_window_fixed_range_and_scale():
    a = np.array([-200, -110, 40, 190, 500], np.float32).reshape(1, 1, 5)
    assert np.allclose(normalise(a, {"type": "window", "lo": -110, "hi": 190}).ravel(), [-1, -1, 0, 1, 1])
    assert np.allclose(normalise(a, {"type": "range", "lo": 0, "hi": 400}).ravel(), [0, 0, 0.1, 0.475, 1])
    assert np.allclose(normalise(a, {"type": "scale", "factor": 0.5, "offset": 40}).ravel(), [-120, -75, 0, 75, 230])


@pytest.mark.parametrize("scheme, words", [
    ({"type": "banana"}, "unknown normalisation"),
    ({"mean": 1}, "no \"type\""),
    ({"type": "ct", "mean": 1, "std": 2}, "lacks percentile_00_5"),
    ({"type": "window", "lo": 5, "hi": 5}, "hi > lo"),
])
def test_bad_schemes_raise_model_error(scheme, words):
    with pytest.raises(ModelError, match=words):
        normalise(np.zeros((2, 2, 2)), scheme)


def test_schemes_from_plans():
    plans = {"configurations": {"3d_fullres": {"normalization_schemes": ["CTNormalization", "ZScoreNormalization"],
                                               "use_mask_for_norm": [False, True]}},
             "foreground_intensity_properties_per_channel": {"0": PROPS, "1": {"mean": 3.0}}}
    ct, pet = schemes_from_plans(plans)
    assert ct == {"type": "ct", "mean": 61.7, "std": 48.3, "percentile_00_5": -117.0, "percentile_99_5": 233.0}
    assert pet == {"type": "zscore", "use_mask": True}
    with pytest.raises(ModelError):
        schemes_from_plans(plans, "2d")
    del plans["foreground_intensity_properties_per_channel"]["0"]
    with pytest.raises(ModelError, match="channel 0"):
        schemes_from_plans(plans)
