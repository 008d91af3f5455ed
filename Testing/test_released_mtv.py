"""Issue 28: an empty mask gives MTV = the training median, as the released code does.

The released inference (Liiiii2101/HECKTOR2025-MEDAI, ``Task2_inference.py`` /
``Task3_inference.py``, ``preprocess_clinical_data_for_inference_docker``) starts each
continuous value as NaN, fills MTV / T_SUV / TLG only when the mask holds label 1 (NTV / N_SUV
/ NLG only with label 2), replaces NaN by the stored training median and z-scores with the
stored scaler. It is written out below and compared with ours (biomarkers -> imaging features
-> the fold's encoder, whose statistics the outcome model card stores).
"""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.image import Image
from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
from HNTumorSegLib.outcome.clinical import DEFAULT_EMPTY_LABEL, ClinicalEncoder, imaging_features
from HNTumorSegLib.vocab import EmptyLabel

FEATURES = {"Age": "Age", "MTV": "MTV_ml", "NTV": "NTV_ml", "T_SUV": "SUVmax_T", "N_SUV": "SUVmax_N",
            "TLG": "TLG", "NLG": "NLG"}   # released name -> ours


def released_continuous(age, pet_array, mask_array, spacing, median, scaler_mean, scaler_scale):
    raw = {k: np.nan for k in FEATURES}
    raw["Age"] = float(age)
    vv = (spacing[0] * spacing[1] * spacing[2]) / 1000.0
    if np.any(mask_array == 1):
        t = mask_array == 1
        raw["MTV"] = np.sum(t) * vv
        raw["T_SUV"] = np.max(pet_array[t])
        raw["TLG"] = raw["MTV"] * np.mean(pet_array[t])
    if np.any(mask_array == 2):
        n = mask_array == 2
        raw["NTV"] = np.sum(n) * vv
        raw["N_SUV"] = np.max(pet_array[n])
        raw["NLG"] = raw["NTV"] * np.mean(pet_array[n])
    filled = {k: (median[k] if np.isnan(v) else v) for k, v in raw.items()}
    return {k: (filled[k] - scaler_mean[k]) / scaler_scale[k] for k in FEATURES}


def _patient(seed, gtvp=True, gtvn=True, spacing=(2.0, 2.0, 3.0)):
    rng = np.random.default_rng(seed)
    pet = rng.gamma(2.0, 1.0, (20, 24, 24)).astype(np.float32)
    mask = np.zeros(pet.shape, np.uint8)
    if gtvp:
        z, y = 4 + seed % 5, 5 + seed % 7
        mask[z:z + 4 + seed % 3, y:y + 5, 6:12] = 1
        pet[mask == 1] += 6.0
    if gtvn:
        mask[12:15, 14:18 + seed % 4, 14:19] = 2
    return Image(pet, spacing=spacing), Image(mask, spacing=spacing), 40.0 + seed


def _record(pet, mask, age):
    return {"Age": age, **imaging_features(compute_biomarkers(pet, mask)["patient"])}


def test_empty_gtvp_and_gtvn_give_the_training_median_like_the_released_code():
    assert DEFAULT_EMPTY_LABEL is EmptyLabel.MEDIAN
    training = [_patient(s, gtvp=s % 4 != 0, gtvn=s % 3 != 0) for s in range(12)]
    enc = ClinicalEncoder.fit([_record(*p) for p in training], categorical=[])
    # the released config: medians over the patients that have the value, scaler on the filled table
    median = {k: enc.median[v] for k, v in FEATURES.items()}
    mean = {k: enc.mean[v] for k, v in FEATURES.items()}
    scale = {k: enc.std[v] for k, v in FEATURES.items()}
    volumes = [float((m.array == 1).sum()) * 12.0 / 1000.0 for _, m, _ in training if (m.array == 1).any()]
    assert median["MTV"] == pytest.approx(float(np.median(volumes)))   # empty ones do not count as 0
    for seed, (gtvp, gtvn) in enumerate([(False, True), (True, False), (False, False), (True, True)], start=50):
        pet, mask, age = _patient(seed, gtvp, gtvn)
        ours = enc.transform(_record(pet, mask, age))
        released = released_continuous(age, pet.array, mask.array, pet.spacing, median, mean, scale)
        np.testing.assert_allclose(ours, [released[k] for k in FEATURES], rtol=1e-5, atol=1e-5)
        if not gtvp:
            assert ours[enc.continuous.index("MTV_ml")] == pytest.approx((median["MTV"] - mean["MTV"]) / scale["MTV"])


def test_the_zero_option_and_old_cards_keep_zero():
    training = [_patient(s) for s in range(6)]
    records = [_record(*p) for p in training]
    enc = ClinicalEncoder.fit(records, categorical=[])
    old_enc = ClinicalEncoder.fit(records, categorical=[], empty_label="zero")
    pet, mask, age = _patient(60, gtvp=False)
    i = enc.continuous.index("MTV_ml")
    new = enc.transform(_record(pet, mask, age))[i]
    old = old_enc.transform(_record(pet, mask, age))[i]
    assert old == pytest.approx((0.0 - old_enc.mean["MTV_ml"]) / old_enc.std["MTV_ml"], rel=1e-5)
    assert new == pytest.approx((enc.median["MTV_ml"] - enc.mean["MTV_ml"]) / enc.std["MTV_ml"], rel=1e-5)
    assert abs(new - old) > 0.5
    # the rule travels in the card; a card from before issue 28 (no empty_label) was trained with 0.0
    assert ClinicalEncoder.from_dict(enc.to_dict()).empty_label == "median"
    legacy = {k: v for k, v in old_enc.to_dict().items() if k != "empty_label"}
    assert ClinicalEncoder.from_dict(legacy).transform(_record(pet, mask, age))[i] == pytest.approx(old)


def test_biomarker_report_still_says_zero():
    pet, mask, _ = _patient(61, gtvp=False)
    assert compute_biomarkers(pet, mask)["patient"]["MTV_ml"] == 0.0
