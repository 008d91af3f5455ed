"""Cohort discovery, requests and resume markers of `hntumorseg batch` (no worker processes)."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from HNTumorSegLib.batch.cohort import build_request, discover_cases, resolve_task
from HNTumorSegLib.batch.resume import fingerprint, is_done, mark_done, marker_path
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.folds import parse_folds
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.phantoms import write_hecktor_cohort, write_hntsmrg_cohort


@pytest.fixture(scope="module")
def hnts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hnts")
    write_hntsmrg_cohort(root, n=2, seed=3, shape=(12, 40, 40))
    return root


def test_hntsmrg_midrt_cases_and_challenge_names(hnts, tmp_path):
    cases = discover_cases("hntsmrg", hnts, tmp_path / "out", "midrt")
    assert [c.case_id for c in cases] == ["1", "2"]
    c = cases[0]
    assert set(c.input_paths) == {"T2"} and c.input_paths["T2"].endswith("1_midRT_T2.nii.gz")
    assert c.prior_path.endswith("1_preRT_mask_registered.nii.gz")
    assert c.reference_path.endswith("1_midRT_mask.nii.gz")
    assert c.prediction_path == tmp_path / "out" / "1_midRT_pred.nii.gz"
    pre = discover_cases("hntsmrg", hnts, tmp_path / "out", "prert")[1]
    assert pre.prior_path is None and pre.prediction_path.name == "2_preRT_pred.nii.gz"
    req = build_request(c, "demo-midrt", device="cpu", folds=[0], tta=False)
    assert req.input_paths == c.input_paths and req.prior_path == c.prior_path
    assert req.output_path == str(c.prediction_path)
    assert req.folds == parse_folds([0]) and req.to_dict()["folds"] == [0]


def test_hecktor_cases(tmp_path):
    write_hecktor_cohort(tmp_path / "h", n=1, seed=0)
    (c,) = discover_cases("hecktor", tmp_path / "h", tmp_path / "o", resolve_task("hecktor", None, "x"))
    assert c.task == "petct" and set(c.input_paths) == {"CT", "PET"}
    assert c.prediction_path == tmp_path / "o" / f"{c.case_id}.nii.gz"
    assert c.reference_path.endswith(f"{c.case_id}.nii.gz")


def test_bad_layout_task_and_missing_folder(hnts, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_cases("hntsmrg", tmp_path / "nope", tmp_path, "midrt")
    with pytest.raises(InputError, match="prior"):
        discover_cases("folder", hnts, tmp_path, "midrt")
    with pytest.raises(InputError, match="--task"):
        resolve_task("hntsmrg", None, "not-a-local-model")


def test_resume_marker_needs_same_settings_and_file(tmp_path):
    pred = tmp_path / "1_midRT_pred.nii.gz"
    req = SegmentRequest(task="midrt", model="m", input_paths={"T2": "a"}, folds=None, tta=False, device="cpu",
                         output_path=str(pred))
    fp = fingerprint(req)
    assert fingerprint(replace(req, device="cuda")) == fp        # device does not change the prediction
    assert fingerprint(replace(req, tta=True)) != fp             # TTA does
    assert fingerprint(replace(req, folds="0")) != fp            # folds do
    assert not is_done(tmp_path, "1", pred, fp)
    pred.write_bytes(b"x" * 10)
    assert not is_done(tmp_path, "1", pred, fp)                  # no marker: not done
    mark_done(tmp_path, "1", pred, fp, {"total": 1.0})
    assert is_done(tmp_path, "1", pred, fp)
    assert not is_done(tmp_path, "1", pred, fingerprint(replace(req, tta=True)))
    pred.write_bytes(b"y" * 3)                                   # replaced by something else
    assert not is_done(tmp_path, "1", pred, fp)
    marker_path(tmp_path, "1").write_text("{broken")
    assert not is_done(tmp_path, "1", pred, fp)


def test_cli_batch_bad_input_is_one_line_exit_2(tmp_path):
    from HNTumorSegLib.cli import main

    code = main(["batch", "--layout", "hntsmrg", "--data", str(tmp_path / "none"), "--model", "m",
                 "--out", str(tmp_path / "o"), "--task", "midrt"])
    assert code == 2 and not (tmp_path / "o").exists()


def test_cluster_without_ray_is_a_clear_input_error(hnts, tmp_path, monkeypatch):
    # The test requirements install Ray; a None entry in sys.modules makes `import ray` fail
    # exactly as it does where the optional extra is absent.
    monkeypatch.setitem(sys.modules, "ray", None)
    from HNTumorSegLib.batch.ray_backend import import_ray

    with pytest.raises(InputError, match="pip install"):
        import_ray()
