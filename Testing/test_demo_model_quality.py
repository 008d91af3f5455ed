"""The bundled demo models reach mean DSC >= 0.8 (GTVp and GTVn) on 5 phantoms they never saw.

The demo models are trained on phantom seeds 1000 onwards (``training/hntumorseg_training/
demo_model.py``); seeds 0-4 are held out for this test. Each case runs through the full
pipeline (files on disk -> ``run_segmentation`` -> label map), scored with
``HNTumorSegLib.metrics.evaluate_pairs``; the mean is over 5 cases x 2 labels of the per-case DSC.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.metrics import evaluate_pairs
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case
from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation
from pipeline_testlib import DEMO_MIDRT, DEMO_PETCT

HELD_OUT_SEEDS = range(5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mean_dsc(pairs) -> tuple[float, dict]:
    result = evaluate_pairs(pairs)
    scores = [case[label]["DSC"] for case in result["cases"].values() for label in ("GTVp", "GTVn")]
    assert all(s is not None for s in scores)
    return float(np.mean(scores)), result


def test_demo_models_were_trained_on_other_seeds():
    for folder in (DEMO_MIDRT, DEMO_PETCT):
        card = json.loads((folder / "model.json").read_text())
        first, last = card["training"]["phantom_seeds"]
        assert first > max(HELD_OUT_SEEDS)
        assert "synthetic" in card["intended_use"] and "only" in card["intended_use"]
        size = sum(p.stat().st_size for p in folder.iterdir())
        assert size < 5_000_000


@pytest.mark.slow
def test_demo_midrt_mean_dsc_on_unseen_phantoms(tmp_path):
    pairs = []
    for seed in HELD_OUT_SEEDS:
        case = make_midrt_case(seed=seed)
        t2 = write_image(case["midRT_T2"], tmp_path / f"{seed}_T2.nii.gz")
        prior = write_image(case["preRT_mask_registered"], tmp_path / f"{seed}_prior.nii.gz")
        res = run_segmentation(SegmentRequest(model=str(DEMO_MIDRT), task="midrt", input_paths={"T2": str(t2)},
                                              prior_path=str(prior), output_path=str(tmp_path / f"{seed}_pred.nii.gz")))
        pairs.append((str(seed), read_image(res.files["labels"], label=True), case["midRT_mask"]))
    mean, result = _mean_dsc(pairs)
    print(f"demo-midrt mean DSC {mean:.3f}; DSCagg {result['aggregate']}")
    assert mean >= 0.8, result["cases"]


@pytest.mark.slow
def test_demo_petct_mean_dsc_on_unseen_phantoms(tmp_path):
    pairs = []
    for seed in HELD_OUT_SEEDS:
        case = make_petct_case(seed=seed)
        ct = write_image(case["CT"], tmp_path / f"{seed}_CT.nii.gz")
        pet = write_image(case["PET"], tmp_path / f"{seed}_PET.nii.gz")
        res = run_segmentation(SegmentRequest(model=str(DEMO_PETCT), input_paths={"CT": str(ct), "PET": str(pet)},
                                              output_path=str(tmp_path / f"{seed}_pred.nii.gz")))
        pairs.append((str(seed), read_image(res.files["labels"], label=True), case["mask"]))
    mean, result = _mean_dsc(pairs)
    print(f"demo-petct mean DSC {mean:.3f}; DSCagg {result['aggregate']}")
    assert mean >= 0.8, result["cases"]
