"""Converters (HNTS-MRG task 1/2, HECKTOR), patient-wise splits and the MONAI datalist."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image
from HNTumorSegLib.phantoms import write_hecktor_cohort, write_hntsmrg_cohort
from hntumorseg_training.converters import (build_datalist, convert_hecktor, convert_hntsmrg, fold_lists,
                                            make_splits, read_raw_dataset, write_dataset_splits)


@pytest.fixture(scope="module")
def hnts_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("hnts")
    write_hntsmrg_cohort(root, 4, seed=5, shape=(12, 40, 40), spacing=(2.0, 2.0, 3.0))
    return root


def test_hntsmrg_task1(hnts_cohort, tmp_path):
    folder = convert_hntsmrg(hnts_cohort, tmp_path, 501, task="prert")
    data = json.loads((folder / "dataset.json").read_text())
    assert folder.name == "Dataset501_HNTSMRGPreRT"
    assert data["channel_names"] == {"0": "T2"} and data["numTraining"] == 4
    assert data["labels"] == {"background": 0, "GTVp": 1, "GTVn": 2} and data["file_ending"] == ".nii.gz"
    t2 = read_image(folder / "imagesTr" / "1_preRT_0000.nii.gz")
    src = read_image(hnts_cohort / "1" / "preRT" / "1_preRT_T2.nii.gz")
    np.testing.assert_allclose(t2.array, src.array, rtol=1e-6)
    lab = read_image(folder / "labelsTr" / "1_preRT.nii.gz", label=True)
    assert lab.same_grid(t2) and set(np.unique(lab.array)) <= {0, 1, 2}
    with pytest.raises(InputError):  # never overwrite a converted dataset
        convert_hntsmrg(hnts_cohort, tmp_path, 501, task="prert")


def test_hntsmrg_task2_gradient_maps_and_extras(hnts_cohort, tmp_path):
    from HNTumorSegLib.prompts.boxes import boxes_to_mask, boxes_from_mask

    folder = convert_hntsmrg(hnts_cohort, tmp_path, 502, task="midrt", seed=0)
    data = read_raw_dataset(folder)
    assert data["channel_names"] == {"0": "T2", "1": "gradient_map"} and data["numTraining"] == 8
    cases = data["hntumorseg"]["cases"]
    assert cases["2_midRT"] == {"patient": "2", "primary": True}
    assert cases["2_preRT"] == {"patient": "2", "primary": False}
    for case, prior in (("2_midRT", hnts_cohort / "2" / "midRT" / "2_preRT_mask_registered.nii.gz"),
                        ("2_preRT", hnts_cohort / "2" / "preRT" / "2_preRT_mask.nii.gz")):
        grad = read_image(folder / "imagesTr" / f"{case}_0001.nii.gz")
        mask = read_image(prior, label=True)
        assert 0 <= grad.array.min() and grad.array.max() <= 1 and grad.array.max() > 0.5
        # the map lives only inside boxes grown by at most 7 voxels around the prior's lesions
        # (seed 003's released draw: 4-7 below, 3-6 above)
        wide = boxes_to_mask(boxes_from_mask(mask, margin_vox=7), grad)
        tight = boxes_to_mask(boxes_from_mask(mask), grad)
        assert not np.any(grad.array[~wide]) and np.any(grad.array[tight])
    # reproducible: the same seed gives the same random margins
    again = convert_hntsmrg(hnts_cohort, tmp_path, 503, task="midrt", seed=0)
    np.testing.assert_array_equal(read_image(again / "imagesTr" / "3_midRT_0001.nii.gz").array,
                                  read_image(folder / "imagesTr" / "3_midRT_0001.nii.gz").array)
    write_dataset_splits(folder, n_folds=2, seed=3)
    splits = json.loads((folder / "splits_final.json").read_text())
    for s in splits:
        val_patients = {cases[c]["patient"] for c in s["val"]}
        assert all(cases[c]["primary"] for c in s["val"])
        assert not any(cases[c]["patient"] in val_patients for c in s["train"])
    datalist = build_datalist(folder)
    for k, s in enumerate(splits):
        train, val = fold_lists(datalist, k)
        assert sorted(e["case_id"] for e in train) == s["train"] and sorted(e["case_id"] for e in val) == s["val"]
        assert all(len(e["image"]) == 2 for e in train)


@given(n_patients=st.integers(2, 30), n_folds=st.sampled_from([2, 5, 10]), seed=st.integers(0, 10_000),
       extras=st.booleans())
@settings(max_examples=60, deadline=None)
def test_splits_by_patient(n_patients, n_folds, seed, extras):
    cases = {}
    for p in range(n_patients):
        cases[f"{p}_midRT"] = {"patient": str(p), "primary": True}
        if extras:
            cases[f"{p}_preRT"] = {"patient": str(p), "primary": False}
    if n_patients < n_folds:
        with pytest.raises(InputError):
            make_splits(cases, n_folds, seed)
        return
    splits = make_splits(cases, n_folds, seed)
    assert splits == make_splits(cases, n_folds, seed)
    validated = [c for s in splits for c in s["val"]]
    assert sorted(validated) == sorted(c for c, v in cases.items() if v["primary"])  # each exactly once
    sizes = [len(s["val"]) for s in splits]
    assert max(sizes) - min(sizes) <= 1
    for s in splits:
        val_p = {cases[c]["patient"] for c in s["val"]}
        assert {cases[c]["patient"] for c in s["train"]} == {str(p) for p in range(n_patients)} - val_p
        assert len(s["train"]) == sum(1 for c in cases if cases[c]["patient"] not in val_p)


@pytest.fixture(scope="module")
def hecktor_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("hecktor")
    write_hecktor_cohort(root, 2, seed=1)
    return root


def test_hecktor_plain_and_enhanced(hecktor_cohort, tmp_path):
    plain = convert_hecktor(hecktor_cohort, tmp_path, 504)
    data = read_raw_dataset(plain)
    assert data["channel_names"] == {"0": "CT", "1": "PET"} and data["numTraining"] == 2
    cid = sorted(data["hntumorseg"]["cases"])[0]
    ct = read_image(plain / "imagesTr" / f"{cid}_0000.nii.gz")
    pet = read_image(plain / "imagesTr" / f"{cid}_0001.nii.gz")
    assert pet.same_grid(ct)  # PET resampled onto the CT grid
    enh = convert_hecktor(hecktor_cohort, tmp_path, 505, enhanced=True)
    data = read_raw_dataset(enh)
    assert list(data["channel_names"].values()) == ["noNorm"] * 4
    assert [i["name"] for i in data["hntumorseg"]["inputs"]] == ["CT", "ct_sq", "ct_cbrt", "PET"]
    x = read_image(enh / "imagesTr" / f"{cid}_0000.nii.gz").array
    x2 = read_image(enh / "imagesTr" / f"{cid}_0001.nii.gz").array
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(x2, x * x, atol=1e-6)


def test_hecktor_head_crop(hecktor_cohort, tmp_path):
    crop = convert_hecktor(hecktor_cohort, tmp_path, 506, head_crop=True, head_crop_mm=(100, 100, 310))
    cid = sorted(read_raw_dataset(crop)["hntumorseg"]["cases"])[0]
    ct = read_image(crop / "imagesTr" / f"{cid}_0000.nii.gz")
    assert np.allclose(ct.spacing, 1.0) and ct.array.shape[1:] == (100, 100) and ct.array.shape[0] <= 310  # clipped to the scan
    lab = read_image(crop / "labelsTr" / f"{cid}.nii.gz", label=True)
    assert lab.same_grid(ct) and np.any(lab.array > 0)


def test_cli_convert_splits_and_errors(hnts_cohort, tmp_path, capsys):
    from hntumorseg_training.cli import main

    assert main(["convert-hntsmrg", "--data", str(hnts_cohort), "--raw", str(tmp_path), "--dataset-id", "520",
                 "--task", "midrt", "--no-prert-extras"]) == 0
    folder = tmp_path / "Dataset520_HNTSMRGMidRT"
    assert read_raw_dataset(folder)["numTraining"] == 4  # no pre-RT extras
    assert main(["splits", "--dataset", str(folder), "--folds", "2"]) == 0
    assert len(json.loads((folder / "splits_final.json").read_text())) == 2
    assert main(["datalist", "--dataset", str(folder)]) == 0 and (folder / "datalist.json").is_file()
    capsys.readouterr()
    assert main(["splits", "--dataset", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "missing" in err[0]
    assert main(["install-splits", "--dataset", str(folder), "--preprocessed", str(tmp_path / "pp")]) == 2


def test_hecktor_channel_sets_2_and_6_released(hecktor_cohort, tmp_path):
    """Seed 002's released channel sets: the count comes from the caller, each channel as the card says."""
    from HNTumorSegLib.prompts.ct_channels import channel_set_arrays

    two = convert_hecktor(hecktor_cohort, tmp_path, 507, channel_set=("seed002", 2))
    six = convert_hecktor(hecktor_cohort, tmp_path, 508, channel_set=("seed002", 6))
    d2, d6 = read_raw_dataset(two), read_raw_dataset(six)
    assert [i["name"] for i in d2["hntumorseg"]["inputs"]] == ["CT", "PET"]
    assert d2["hntumorseg"]["inputs"][0]["normalisation"]["type"] == "window01"
    assert len(d6["channel_names"]) == 6 and d6["hntumorseg"]["channel_set"] == ["seed002", 6]
    cid = sorted(d6["hntumorseg"]["cases"])[0]
    chans = [read_image(six / "imagesTr" / f"{cid}_{k:04d}.nii.gz").array for k in range(6)]
    assert 0.0 <= min(c.min() for c in chans) and max(c.max() for c in chans) <= 1.0 + 1e-6
    np.testing.assert_allclose(chans[2], chans[0] ** (1 / 3), atol=1e-5)
    np.testing.assert_allclose(chans[5], chans[3] ** (1 / 3), atol=1e-5)
    ct = read_image(two / "imagesTr" / f"{cid}_0000.nii.gz")
    np.testing.assert_allclose(ct.array, chans[0], atol=1e-6)
