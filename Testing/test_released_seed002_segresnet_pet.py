"""Seed 002's SegResNet PET input as released (issue 28 item 2): Auto3DSeg's ``extra_modalities: pet``.

The released SegResNet (MoriiHuang/SJTU_lab426_Solution_of_Hecktor, ``resources/monai/output_dir/
segresnet_*/configs/hyper_parameters.yaml``: ``normalize_mode: range``, ``intensity_bounds``
[0.3204, 0.6318], ``extra_modalities: {image2: pet}``) normalises in its ``segmenter.py``:
the CT (``image``) with ``ScaleIntensityRanged(a_min, a_max, b_min=-1, b_max=1, clip=False)`` then
``torch.sigmoid``; the PET (``image2``) with ``torch.sigmoid((x - x.min()) / x.std())``. No
foreground crop runs (``crop_foreground`` is skipped when extra modalities exist), so the
statistics are over the whole fine ROI. Both are written out below in torch and compared with
ours on the fine ROI's min-max PET and CT of a phantom.
"""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.prompts.coarse_to_fine import fine_grid, head_grid, window_head_images
from HNTumorSegLib.prompts.ct_channels import minmax_released
from HNTumorSegLib.prompts.normalisation import auto3dseg_schemes, normalise

torch = pytest.importorskip("torch")

#: the released config's keys that decide the normalisation (hyper_parameters.yaml of segresnet_0..4)
RELEASED_CONFIG = {"modality": "ct", "input_channels": 2, "normalize_mode": "range",
                   "intensity_bounds": [0.3203691809931222, 0.6317582952187342], "extra_modalities": {"image2": "pet"}}


def released_range(x: np.ndarray, a_min: float, a_max: float) -> np.ndarray:
    """``ScaleIntensityRanged(a_min, a_max, b_min=-1, b_max=1, clip=False)`` then ``torch.sigmoid``."""
    t = torch.as_tensor(x, dtype=torch.float32)
    t = (t - a_min) / (a_max - a_min) * (1 - (-1)) + (-1)
    return torch.sigmoid(t).numpy()


def released_pet(x: np.ndarray) -> np.ndarray:
    """``Lambdad(func=lambda x: torch.sigmoid((x - x.min()) / x.std()))`` on the (1, H, W, D) tensor."""
    t = torch.as_tensor(x, dtype=torch.float32)[None]
    return torch.sigmoid((t - t.min()) / t.std())[0].numpy()


@pytest.fixture(scope="module")
def fine_roi():
    case = make_petct_case(seed=4, in_plane=64)
    ct, pet = case["CT"], case["PET"]
    ct_h, pet_h = window_head_images(ct, pet, head_grid(ct))
    lesion = np.argwhere(case["mask"].array > 0).mean(axis=0)[::-1]
    roi = fine_grid(ct.index_to_physical(lesion), size_xyz=(64, 64, 64))
    return (minmax_released(roi.resample(ct_h, default=-1.0).array),
            minmax_released(roi.resample(pet_h, default=0.0).array))


def test_released_config_gives_range_for_the_ct_and_pet_for_the_pet():
    lo, hi = RELEASED_CONFIG["intensity_bounds"]
    assert auto3dseg_schemes(RELEASED_CONFIG, 2) == [{"type": "auto3dseg_range", "lo": lo, "hi": hi},
                                                      {"type": "auto3dseg_pet"}]
    # no extra modalities: one multi-channel image, every channel the image's mode (Auto3DSeg's rule)
    no_extra = {k: v for k, v in RELEASED_CONFIG.items() if k != "extra_modalities"}
    assert [s["type"] for s in auto3dseg_schemes(no_extra, 2)] == ["auto3dseg_range"] * 2


def test_both_channels_equal_the_released_transforms(fine_roi):
    ct, pet = fine_roi
    schemes = auto3dseg_schemes(RELEASED_CONFIG, 2)
    lo, hi = RELEASED_CONFIG["intensity_bounds"]
    np.testing.assert_allclose(normalise(ct, schemes[0]), released_range(ct, lo, hi), rtol=0, atol=1e-5)
    ours = normalise(pet, schemes[1])
    np.testing.assert_allclose(ours, released_pet(pet), rtol=0, atol=1e-5)
    # what the member did before issue 28 (the CT's range on the PET) is far from it
    old = normalise(pet, schemes[0])
    assert np.abs(old - ours).max() > 0.1


def test_pet_std_is_unbiased_and_a_constant_roi_is_one_half():
    x = np.array([0.0, 1.0, 3.0], np.float32)          # std: population 1.247, unbiased 1.528
    expected = 1 / (1 + np.exp(-(x - 0.0) / np.std(x, ddof=1)))
    np.testing.assert_allclose(normalise(x, {"type": "auto3dseg_pet"}), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(normalise(np.full(5, 2.0), {"type": "auto3dseg_pet"}), np.full(5, 0.5, np.float32))


def test_config_without_enough_inputs_or_with_an_unknown_mode_is_refused():
    from HNTumorSegLib.errors import ModelError

    with pytest.raises(ModelError, match="extra"):
        auto3dseg_schemes(RELEASED_CONFIG, 1)
    with pytest.raises(ModelError, match="not supported"):
        auto3dseg_schemes({**RELEASED_CONFIG, "extra_modalities": {"image2": "spect"}}, 2)
