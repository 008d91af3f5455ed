"""Synthetic phantoms: determinism, labels, mid-RT regression, registered prior, PET/CT geometry."""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.image import resample_to
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case, make_prert_case
from HNTumorSegLib.phantoms.anatomy import TISSUE_NAMES, tissue_map
from HNTumorSegLib.phantoms.shapes import FourierField


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def midrt_cases():
    return [make_midrt_case(seed=s, n_nodes=2) for s in range(4)]


@pytest.fixture(scope="module")
def tall_case():
    return make_petct_case(seed=5, tall=True)


def test_prert_deterministic_and_seed_dependent():
    a, b, c = make_prert_case(seed=7), make_prert_case(seed=7), make_prert_case(seed=8)
    assert set(a) == {"T2", "mask"}
    np.testing.assert_array_equal(a["T2"].array, b["T2"].array)
    np.testing.assert_array_equal(a["mask"].array, b["mask"].array)
    assert a["T2"].origin == b["T2"].origin
    assert not np.array_equal(a["mask"].array, c["mask"].array)


def test_prert_geometry_labels_and_contrast():
    case = make_prert_case(seed=2, shape=(24, 80, 72), spacing=(1.0, 0.8, 3.5), n_nodes=3)
    t2, mask = case["T2"], case["mask"]
    assert t2.array.shape == (24, 80, 72) and mask.array.shape == (24, 80, 72)
    assert t2.spacing == (1.0, 0.8, 3.5) and mask.same_grid(t2)
    assert mask.array.dtype == np.uint8
    assert set(np.unique(mask.array)) == {0, 1, 2}
    from scipy import ndimage
    _, n_nodes = ndimage.label(mask.array == 2, structure=np.ones((3, 3, 3)))
    assert n_nodes == 3
    # tumour is brighter than the rest of the neck on T2 (median over the body)
    body = t2.array > 0.2 * np.percentile(t2.array, 99)
    assert np.median(t2.array[mask.array == 1]) > 1.5 * np.median(t2.array[body & (mask.array == 0)])


def test_prert_is_the_preRT_of_midrt():
    pre, mid = make_prert_case(seed=3), make_midrt_case(seed=3)
    np.testing.assert_array_equal(pre["T2"].array, mid["preRT_T2"].array)
    np.testing.assert_array_equal(pre["mask"].array, mid["preRT_mask"].array)


def test_n_nodes_zero_has_no_gtvn():
    case = make_midrt_case(seed=4, n_nodes=0)
    for key in ("preRT_mask", "midRT_mask", "preRT_mask_registered"):
        assert 2 not in np.unique(case[key].array)
        assert 1 in np.unique(case[key].array)


def test_midrt_keys_grids_and_labels(midrt_cases):
    case = midrt_cases[0]
    assert set(case) == {"preRT_T2", "preRT_mask", "midRT_T2", "midRT_mask", "preRT_T2_registered",
                         "preRT_mask_registered"}
    mid = case["midRT_T2"]
    for key in ("midRT_mask", "preRT_T2_registered", "preRT_mask_registered"):
        assert case[key].same_grid(mid), key
    assert case["preRT_mask"].same_grid(case["preRT_T2"])
    assert not np.allclose(case["preRT_T2"].origin, mid.origin)  # another table position
    for key in ("preRT_mask", "midRT_mask", "preRT_mask_registered"):
        assert case[key].array.dtype == np.uint8
        assert set(np.unique(case[key].array)) <= {0, 1, 2}


def test_midrt_tumour_shrinks_and_prior_overlaps(midrt_cases):
    for case in midrt_cases:
        vox = np.prod(case["midRT_mask"].spacing)
        for label in (1, 2):
            pre_ml = (case["preRT_mask"].array == label).sum() * np.prod(case["preRT_mask"].spacing)
            mid_ml = (case["midRT_mask"].array == label).sum() * vox
            # 35-70 % of the volume by design; partial voxels and the deformation blur this
            assert 0.2 * pre_ml < mid_ml < 0.85 * pre_ml, (label, pre_ml, mid_ml)
        prior = case["preRT_mask_registered"].array > 0
        ref = case["midRT_mask"].array > 0
        assert 0.4 <= _dsc(prior, ref) <= 0.95
        assert prior.sum() > ref.sum()  # the prior is the larger pre-treatment extent
        assert not np.array_equal(prior, ref)


def test_registration_is_close_to_truth(midrt_cases):
    """The registered pre-RT T2 resembles the mid-RT T2 far more than the unregistered one."""
    # the centre only: near the edges the registered image has no pre-RT data (zeros)
    centre = (slice(4, -4), slice(10, -10), slice(10, -10))
    for case in midrt_cases[:2]:
        mid = case["midRT_T2"].array[centre]
        reg = case["preRT_T2_registered"].array[centre]
        unreg = resample_to(case["preRT_T2"], case["midRT_T2"], interpolator="linear").array[centre]
        r_reg = np.corrcoef(mid.ravel(), reg.ravel())[0, 1]
        r_unreg = np.corrcoef(mid.ravel(), unreg.ravel())[0, 1]
        assert r_reg > 0.85 and r_reg > r_unreg + 0.05


def test_midrt_intensity_differs(midrt_cases):
    case = midrt_cases[2]
    assert not np.allclose(np.median(case["midRT_T2"].array), np.median(case["preRT_T2_registered"].array),
                           rtol=0.01)


def test_petct_small_case_values():
    case = make_petct_case(seed=1, tall=False, n_nodes=1)
    ct, pet, mask = case["CT"], case["PET"], case["mask"]
    assert set(case) == {"CT", "PET", "mask"}
    assert ct.array.dtype == np.int16 and pet.array.dtype == np.float32
    assert ct.array.shape == (88, 128, 128) and mask.same_grid(ct)
    assert not pet.same_grid(ct) and pet.spacing[0] > ct.spacing[0]
    assert set(np.unique(mask.array)) == {0, 1, 2}
    assert ct.array.min() <= -990 and ct.array.max() >= 600  # air and bone
    # lesions are hot on PET: sample PET at the lesion's voxels through physical space
    pet_on_ct = resample_to(pet, ct, interpolator="linear").array
    assert np.percentile(pet_on_ct[mask.array == 1], 90) > 3.0
    body = (ct.array > -300) & (mask.array == 0)
    assert np.median(pet_on_ct[body]) < 2.0


def test_tall_petct_head_at_top(tall_case):
    ct, pet, mask = tall_case["CT"], tall_case["PET"], tall_case["mask"]
    assert ct.array.shape[0] == 160
    assert np.allclose(ct.direction, np.eye(3))  # +k is +z = superior in LPS
    # the brain (the hottest big region) is in the top quarter: highest z
    profile = pet.array.reshape(pet.array.shape[0], -1).max(1)
    hottest_slice = int(np.argmax(np.convolve(profile, np.ones(5) / 5, mode="same")))
    assert hottest_slice > 0.75 * pet.array.shape[0]
    # lesions lie in the neck: below the brain, far above the bottom of the scan
    k = np.nonzero(mask.array)[0]
    z_lesion = ct.index_to_physical(np.array([0, 0, k.mean()]))[2]
    z_top = ct.index_to_physical(np.array([0, 0, ct.array.shape[0] - 1]))[2]
    assert 120 < z_top - z_lesion < 280
    # the thorax has lungs (air-like HU inside the body) low in the scan
    lower = ct.array[: 60]
    assert ((lower < -600) & (lower > -900)).sum() > 10000
    # and a mildly hot heart, far below the lesions: a head crop has work to do
    low_pet = pet.array[: pet.array.shape[0] // 2]
    assert 2.0 < low_pet.max() < 5.0


def test_tissue_map_anatomy_sanity():
    tex = FourierField(np.random.default_rng(0))
    pts = np.array([[0, -17, 175], [0, 28, 175], [0, 2, 75], [0, 0, -5], [62, 15, 420]], np.float32)
    names = [TISSUE_NAMES[int(t)] for t in tissue_map(pts, tex)]
    assert names == ["air", "bone", "brain", "outside", "lung"]


def test_node_count_limits():
    from HNTumorSegLib.phantoms.anatomy import place_lesions
    for seed in range(20):
        blobs = place_lesions(np.random.default_rng(seed), 5)
        assert [b.label for b in blobs] == [1, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="n_nodes"):
        make_prert_case(seed=0, n_nodes=6)


def test_grid_points_match_image_geometry():
    from HNTumorSegLib.image import Image
    from HNTumorSegLib.phantoms.mri import grid_points
    direction = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]).T  # a rotated grid
    img = Image(np.zeros((5, 6, 7)), (0.5, 0.7, 2.0), (1.0, -2.0, 3.0), direction)
    pts = grid_points(img)
    k, j, i = np.indices(img.array.shape)
    expected = img.index_to_physical(np.stack([i, j, k], -1))
    np.testing.assert_allclose(pts, expected, atol=1e-4)


def test_short_field_of_view_still_holds_every_lesion():
    for seed in range(6):
        case = make_prert_case(seed=seed, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
        assert set(np.unique(case["mask"].array)) == {0, 1, 2}
