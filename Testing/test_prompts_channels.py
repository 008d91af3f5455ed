"""Seed 002's CT channels, and normalisation schemes checked against nnU-Net v2's own code."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module
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


# ---- seed 002's released channel sets (issue 14) ---------------------------------------------------

def test_released_window_is_level_45_width_300_to_zero_one():
    from HNTumorSegLib.prompts.ct_channels import window_ct_01

    hu = np.array([-1000, -105, 45, 120, 195, 3000], np.float32).reshape(1, 1, 6)
    assert np.allclose(window_ct_01(hu).ravel(), [0, 0, 0.5, 0.75, 1, 1], atol=1e-6)


def test_seed002_released_sets_2_4_6_channels_hand_computed():
    from HNTumorSegLib.prompts.ct_channels import channel_set_arrays

    # -105 .. 195 HU in 75 HU steps -> x = 0, .25, .5, .75, 1 (min 0, max 1, so the min-max keeps them)
    hu = np.array([-105, -30, 45, 120, 195], np.float32).reshape(1, 1, 5)
    pet = np.array([2, 3, 4, 5, 6], np.float32).reshape(1, 1, 5)
    x = np.array([0, 0.25, 0.5, 0.75, 1.0])
    p = np.array([0, 0.25, 0.5, 0.75, 1.0])
    two = channel_set_arrays("seed002", hu, pet, 2)
    four = channel_set_arrays("seed002", hu, pet, 4)
    six = channel_set_arrays("seed002", hu, pet, 6)
    assert two.shape == (2, 1, 1, 5) and four.shape[0] == 4 and six.shape[0] == 6
    tol = dict(atol=2e-6)
    assert np.allclose(two[0].ravel(), x, **tol) and np.allclose(two[1].ravel(), p, **tol)
    assert np.allclose(four[1].ravel(), x ** 2, **tol) and np.allclose(four[2].ravel(), x ** (1 / 3), **tol)
    assert np.allclose(six[4].ravel(), p ** 2, **tol) and np.allclose(six[5].ravel(), p ** (1 / 3), **tol)
    # nothing folds: both powers are monotonic in HU (the paper's x**2 on [-1, 1] is not)
    hu_sweep = np.linspace(-300, 400, 50, dtype=np.float32).reshape(1, 1, 50)
    ch = channel_set_arrays("seed002", hu_sweep, np.ones_like(hu_sweep), 4)
    assert np.all(np.diff(ch[1].ravel()) >= 0) and np.all(np.diff(ch[2].ravel()) >= 0)
    paper = channel_set_arrays("seed002_paper", hu_sweep, np.ones_like(hu_sweep), 4)
    assert np.any(np.diff(paper[1].ravel()) < 0)


def test_channel_counts_are_declared_never_guessed():
    from HNTumorSegLib.prompts.ct_channels import channel_set_arrays, channel_set_inputs

    with pytest.raises(InputError, match="3-channel"):
        channel_set_arrays("seed002", np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), 3)
    with pytest.raises(InputError, match="2-channel"):
        channel_set_inputs("seed002_paper", 2)
    with pytest.raises(InputError, match="unknown channel set"):
        channel_set_inputs("seed003", 2)
    assert [i["name"] for i in channel_set_inputs("seed002", 6)] == ["CT", "ct_sq", "ct_cbrt", "PET", "pet_sq",
                                                                      "pet_cbrt"]


def test_card_schemes_reproduce_the_released_channels():
    """window01 + minmax (CT) and range with eps (PET) give channel_set_arrays' values exactly."""
    from HNTumorSegLib.prompts.ct_channels import channel_set_arrays, channel_set_inputs

    rng = np.random.default_rng(2)
    hu = rng.normal(30, 200, size=(4, 5, 6)).astype(np.float32)
    pet = rng.gamma(2.0, 1.5, size=(4, 5, 6)).astype(np.float32)
    inputs = {i["name"]: i["normalisation"] for i in channel_set_inputs("seed002", 2)}
    two = channel_set_arrays("seed002", hu, pet, 2)
    np.testing.assert_array_equal(normalise(hu, inputs["CT"]), two[0])
    np.testing.assert_allclose(normalise(pet, inputs["PET"]), two[1], rtol=1e-6)
    # "then" chains a second scheme (the released fine model: nnU-Net's z-score on the PET after it)
    chained = normalise(pet, {**inputs["PET"], "then": {"type": "zscore"}})
    np.testing.assert_allclose(chained, normalise(two[1], {"type": "zscore"}), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_pipeline_channels_of_a_released_seed002_card_equal_the_channel_set(n):
    """A card listing the set's inputs (never a guessed count) gives exactly channel_set_arrays."""
    from HNTumorSegLib.models.card import ModelCard
    from HNTumorSegLib.pipeline.channels import model_channels, user_inputs
    from HNTumorSegLib.prompts.ct_channels import channel_set_arrays, channel_set_inputs

    card = ModelCard.from_dict({
        "format": "hntumorseg-model/1", "id": "s2", "title": "s2", "task": "petct",
        "inputs": channel_set_inputs("seed002", n),
        "architecture": {"name": "STUNet", "kwargs": {}}, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "folds": [0], "weights": {"0": "f.pt"}})
    assert user_inputs(card) == ["CT", "PET"] and card.num_input_channels == n
    rng = np.random.default_rng(n)
    ct = Image(rng.normal(40, 250, size=(5, 6, 7)).astype(np.float32), (1.0, 1.0, 1.0))
    pet = ct.with_array(rng.gamma(2.0, 2.0, size=(5, 6, 7)).astype(np.float32))
    np.testing.assert_allclose(model_channels(card, {"CT": ct, "PET": pet}),
                               channel_set_arrays("seed002", ct, pet, n), rtol=1e-5, atol=1e-6)


def test_auto3dseg_range_is_scale_to_minus_one_one_then_sigmoid():
    from HNTumorSegLib.models.segresnet_checkpoint import inputs_from_auto3dseg

    lo, hi = 0.3203691809931222, 0.6317582952187342            # seed 002's released intensity_bounds
    x = np.array([lo, (lo + hi) / 2, hi, 0.0, 1.0], np.float32)
    out = normalise(x, {"type": "auto3dseg_range", "lo": lo, "hi": hi})
    z = (x.astype(np.float64) - lo) / (hi - lo) * 2 - 1                 # no clip, as clip=False
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-z)), rtol=1e-6)
    assert out[1] == pytest.approx(0.5) and out[0] == pytest.approx(1 / (1 + np.e))
    monai = require_module("monai")
    torch = require_module("torch")
    ref = torch.sigmoid(torch.as_tensor(monai.transforms.ScaleIntensityRange(a_min=lo, a_max=hi, b_min=-1, b_max=1,
                                                                              clip=False)(x)))
    np.testing.assert_allclose(out, np.asarray(ref), rtol=1e-5)
    inputs = inputs_from_auto3dseg({"normalize_mode": "range", "intensity_bounds": [lo, hi]}, ["CT", "PET"])
    assert [i["normalisation"] for i in inputs] == [{"type": "auto3dseg_range", "lo": lo, "hi": hi}] * 2
    with pytest.raises(ModelError, match="meanstd"):
        inputs_from_auto3dseg({"normalize_mode": "meanstd"}, ["CT"])
