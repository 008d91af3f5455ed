"""Issue 23 part 3: a batch over an unregistered mid-RT cohort (``batch --register-prior``).

Each case holds what a clinic holds: the mid-RT T2, the pre-RT T2 and the pre-RT contours on it
(a label map ``<ID>_preRT_mask.nii.gz`` or a planning-system file ``<ID>_preRT_mask.dcm``), in
the HNTS-MRG folder layout but without its ``*_registered`` files; every case is registered
on its own before seed 003's prompts (``segment --prior-image``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from HNTumorSegLib.batch.cohort import build_request, discover_cases
from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair


def write_unregistered_cohort(root: Path, ids=("1", "2"), shape=(16, 48, 48), spacing=(1.8, 1.8, 3.0)) -> Path:
    """HNTS-MRG folders with the pre-RT T2, its mask and the mid-RT T2 (+ mask), nothing registered."""
    for i, case_id in enumerate(ids):
        pair = make_registration_pair(seed=10 + i, shape=shape, spacing=spacing)
        pre, mid = root / case_id / "preRT", root / case_id / "midRT"
        write_image(pair["moving"], pre / f"{case_id}_preRT_T2.nii.gz")
        write_image(pair["moving_mask"], pre / f"{case_id}_preRT_mask.nii.gz")
        write_image(pair["fixed"], mid / f"{case_id}_midRT_T2.nii.gz")
        write_image(pair["fixed_mask"], mid / f"{case_id}_midRT_mask.nii.gz")
    return root


def test_register_prior_makes_requests_with_the_pre_rt_image(tmp_path):
    data = write_unregistered_cohort(tmp_path / "cohort")
    cases = discover_cases("hntsmrg", data, tmp_path / "out", "midrt", register_prior="deformable")
    assert [c.case_id for c in cases] == ["1", "2"]
    c = cases[0]
    assert c.input_paths == {"T2": str(data / "1" / "midRT" / "1_midRT_T2.nii.gz")}
    assert c.prior_path == str(data / "1" / "preRT" / "1_preRT_mask.nii.gz")
    assert c.prior_image_path == str(data / "1" / "preRT" / "1_preRT_T2.nii.gz")
    assert c.reference_path == str(data / "1" / "midRT" / "1_midRT_mask.nii.gz")
    request = build_request(c, "demo-midrt", device="cpu")
    assert request.prior_image_path == c.prior_image_path and str(request.registration) == "deformable"
    with pytest.raises(InputError, match="preRT_mask_registered"):   # without the option: the registered files
        discover_cases("hntsmrg", data, tmp_path / "out", "midrt")


def test_planning_system_contours_are_found_and_missing_ones_named(tmp_path):
    data = write_unregistered_cohort(tmp_path / "cohort", ids=("7",))
    mask = data / "7" / "preRT" / "7_preRT_mask.nii.gz"
    dcm = mask.with_name("7_preRT_mask.dcm")
    mask.rename(dcm)   # what a planning system exports (RTSTRUCT or SEG: told apart by content when read)
    (case,) = discover_cases("hntsmrg", data, tmp_path / "out", "midrt", register_prior="rigid")
    assert case.prior_path == str(dcm) and case.registration == "rigid"
    dcm.unlink()
    with pytest.raises(InputError, match="no pre-RT contours") as caught:
        discover_cases("hntsmrg", data, tmp_path / "out", "midrt", register_prior="rigid")
    assert "7_preRT_mask.nii.gz" in str(caught.value) and "7_preRT_mask.dcm" in str(caught.value)


def test_register_prior_outside_hntsmrg_midrt_is_refused(tmp_path, capsys):
    data = write_unregistered_cohort(tmp_path / "cohort", ids=("1",))
    code = main(["batch", "--layout", "hntsmrg", "--task", "prert", "--data", str(data), "--model", "demo-midrt",
                 "--out", str(tmp_path / "out"), "--register-prior"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--register-prior is for mid-RT cohorts" in err[0]
    assert not (tmp_path / "out").exists()
    code = main(["batch", "--layout", "hntsmrg", "--task", "midrt", "--data", str(data), "--model", "demo-midrt",
                 "--out", str(tmp_path / "out"), "--register-prior", "elastic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "unknown --register-prior 'elastic'" in err[-1]


@pytest.mark.slow
def test_batch_registers_each_case_and_scores_it(tmp_path, capsys):
    data = write_unregistered_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    code = main(["batch", "--layout", "hntsmrg", "--task", "midrt", "--data", str(data), "--model", "demo-midrt",
                 "--out", str(out), "--device", "cpu", "--register-prior", "rigid", "--no-report"])
    assert code == 0, capsys.readouterr().err
    for case_id in ("1", "2"):
        labels = read_image(out / f"{case_id}_midRT_pred.nii.gz", label=True)
        assert labels.same_grid(read_image(data / case_id / "midRT" / f"{case_id}_midRT_T2.nii.gz"))
        assert set(np.unique(labels.array).tolist()) <= {0, 1, 2} and labels.array.any()
    metrics = [p for p in out.iterdir() if p.name.startswith("metrics") and p.suffix == ".json"]
    assert metrics and json.loads(metrics[0].read_text())
    cases = json.loads((out / "batch.json").read_text())["cases"]   # the registration's quality, per case
    assert all("similarity" in cases[c]["registration"] and "jacobian" in cases[c]["registration"] for c in ("1", "2")), cases


def test_evaluate_over_folders_whose_references_are_dicom_contours(tmp_path):
    """Issue 23 part 1's batch bit: a --ref folder of RTSTRUCT / SEG files (named by case id) is scored
    like one of label maps, each file read onto its case's prediction grid (no series beside it)."""
    from conftest import require_module

    require_module("rt_utils")
    require_module("highdicom")
    from test_contours_in_readback import highdicom_seg, rt_utils_rtstruct

    from HNTumorSegLib.phantoms import make_prert_case
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series

    preds, refs = tmp_path / "preds", tmp_path / "refs"
    refs.mkdir()
    for case_id, seed in (("1", 5), ("2", 6)):
        case = make_prert_case(seed=seed, shape=(16, 48, 48))
        series = tmp_path / f"series{case_id}"
        write_dicom_series(case["T2"], series, modality="MR", series_description="T2")
        write_image(case["mask"], preds / f"{case_id}.nii.gz")
        if case_id == "1":
            rt_utils_rtstruct(case["mask"].array, series, refs / "1.dcm", ("GTV_P", "GTV_N_L2"))
        else:
            highdicom_seg(case["mask"].array, series, refs / "2.dcm", "BINARY")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(preds), "--ref", str(refs), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    per_case = scores.get("cases") or scores.get("per_case")
    assert set(per_case) == {"1", "2"}
    text = json.dumps(per_case)
    dscs = [float(v) for v in __import__("re").findall(r'"(?:dsc|DSC)": ([0-9.]+)', text)]
    assert len(dscs) >= 4 and min(dscs) >= 0.95, dscs
