"""Issue 23, "Done when" line 2: a pre/mid pair with a known transform is registered back.

The pair (:mod:`HNTumorSegLib.phantoms.registration_pair`): rigid 10 mm + 5 degrees, then a
smooth deformation up to 8 mm, the GTVp shrinking 30 %; 32 x 112 x 112 voxels of 1.3 x 1.3 x
2.5 mm (scaled down from a clinical 0.5 mm grid so a run fits the test machine). The registered
pre-RT mask is compared with the pre-RT mask carried through the *true* mapping (not with the
shrunken mid-RT mask: the registration is to follow the anatomy, not the treatment response),
and the mapping itself at body landmarks. Identity's Dice (scanner coordinates) is printed too.
"""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.image import resample_to
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
from HNTumorSegLib.prompts.registration import RegistrationSettings, register, warp_image, warp_labels
from HNTumorSegLib.prompts.registration_quality import jacobian_range, similarity

DICE_MIN = 0.85
LANDMARK_MEDIAN_MAX_MM = 2.0


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    a, b = a == label, b == label
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


@pytest.fixture(scope="module")
def pair():
    return make_registration_pair(seed=0)


@pytest.fixture(scope="module")
def deformable(pair):
    return register(pair["fixed"], pair["moving"], RegistrationSettings(mode="deformable"))


def landmark_errors(pair, transform) -> np.ndarray:
    points = pair["landmarks_mm"]
    found = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in points])
    return np.sqrt(((found - pair["true_map"](points)) ** 2).sum(1))


def test_deformable_registration_recovers_the_known_mapping(pair, deformable):
    truth = pair["truth_mask"].array
    identity = resample_to(pair["moving_mask"], pair["fixed"], label=True).array
    moved = warp_labels(pair["moving_mask"], deformable, pair["fixed"]).array
    errors = landmark_errors(pair, deformable.transform)
    scores = {name: (dice(identity, truth, v), dice(moved, truth, v)) for v, name in ((1, "GTVp"), (2, "GTVn"))}
    for name, (before, after) in scores.items():
        print(f"{name}: Dice identity {before:.3f} -> registered {after:.3f}")
    print(f"landmarks: {len(errors)}, median error {np.median(errors):.2f} mm, 90th percentile "
          f"{np.percentile(errors, 90):.2f} mm")
    assert len(errors) >= 100
    assert np.median(errors) <= LANDMARK_MEDIAN_MAX_MM
    for name, (before, after) in scores.items():
        assert after >= DICE_MIN, f"{name}: Dice {after:.3f} < {DICE_MIN}"
        assert after > before + 0.2


def test_quality_figures_show_the_improvement_and_no_fold(pair, deformable):
    q = similarity(deformable, pair["fixed"], pair["moving"])
    mi, ncc = q["mutual_information"], q["ncc"]
    assert mi["before"] < mi["after_rigid"] < mi["after"]
    assert ncc["before"] < ncc["after"]
    jac = jacobian_range(deformable, pair["fixed"])
    assert not jac["folded"] and 0.3 < jac["min"] < 1.0 < jac["max"] < 3.0


def test_registered_image_matches_the_mid_rt_image(pair, deformable):
    moved = warp_image(pair["moving"], deformable, pair["fixed"])
    assert moved.same_grid(pair["fixed"]) and moved.array.dtype == np.float32
    body = pair["fixed"].array > 150
    before = resample_to(pair["moving"], pair["fixed"], interpolator="linear", default_value=0.0).array
    r_after = np.corrcoef(moved.array[body], pair["fixed"].array[body])[0, 1]
    r_before = np.corrcoef(before[body], pair["fixed"].array[body])[0, 1]
    assert r_after > r_before + 0.1


def test_rigid_and_affine_modes_move_towards_the_truth():
    small = make_registration_pair(seed=1, shape=(16, 56, 56), spacing=(2.6, 2.6, 5.0))
    lone = make_registration_pair(seed=1, shape=(16, 56, 56), spacing=(2.6, 2.6, 5.0), deform_mm=0.0)
    for mode in ("rigid", "affine"):
        reg = register(lone["fixed"], lone["moving"], RegistrationSettings(mode=mode))
        errors = landmark_errors(lone, reg.transform)
        print(f"{mode} on a rigid-only pair: median landmark error {np.median(errors):.2f} mm")
        assert np.median(errors) <= 2.0     # 2.6 mm voxels: within a voxel
        assert jacobian_range(reg, lone["fixed"])["folded"] is False
    reg = register(small["fixed"], small["moving"], RegistrationSettings(mode="rigid"))
    assert np.median(landmark_errors(small, reg.transform)) < np.median(
        np.sqrt(((small["landmarks_mm"] - small["true_map"](small["landmarks_mm"])) ** 2).sum(1)))


def test_small_node_survives_the_label_warp(pair, deformable):
    """A node a few voxels across is kept (per-label linear + 0.5), not dropped."""
    labels = pair["moving_mask"]
    tiny = labels.with_array(np.zeros_like(labels.array))
    centre = np.argwhere(labels.array == 2).mean(0).round().astype(int)
    z, y, x = centre
    tiny.array[z - 1:z + 1, y - 2:y + 2, x - 2:x + 2] = 2     # 2 x 4 x 4 voxels: 5.0 x 5.2 x 5.2 mm
    moved = warp_labels(tiny, deformable, pair["fixed"])
    assert (moved.array == 2).sum() >= 0.5 * (tiny.array == 2).sum() * (
        tiny.voxel_volume_mm3 / pair["fixed"].voxel_volume_mm3)
