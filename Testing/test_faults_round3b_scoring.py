"""Issue 22 item 5: scoring is strict and refuses impossible survival data.

Before: ``evaluate-outcome`` took an RFS of -900 or ``inf`` (the C-index fell from 1.0 to 0.6)
and ``--risk-column nope`` (RFS silently unscored) with exit 0, and truth patients (or, in
``evaluate``, reference cases) without a prediction were left out with a warning, which inflates
a challenge score. Now each is exit 2 with one line and no JSON, unless ``--allow-missing`` says
how to count the missing ones. Real command-line child processes, real files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from faults_testlib import hntumorseg, one_error_line
from HNTumorSegLib.image import Image, write_image


@pytest.fixture
def tables(tmp_path):
    """Truth of 30 patients whose risk orders RFS perfectly (C-index 1.0), predictions for all."""
    ids = [f"P{i:02d}" for i in range(30)]
    rfs = 100 + 10 * np.arange(30)
    truth = tmp_path / "truth.csv"
    pred = tmp_path / "pred.csv"
    truth.write_text("PatientID,RFS,Relapse,HPV\n" + "".join(f"{p},{t},1,{i % 2}\n" for i, (p, t) in
                                                             enumerate(zip(ids, rfs))))
    pred.write_text("PatientID,risk,hpv_probability\n" + "".join(f"{p},{30 - i},{0.9 if i % 2 else 0.1}\n"
                                                                  for i, p in enumerate(ids)))
    return tmp_path, truth, pred


def _score(truth, pred, out, *extra):
    return hntumorseg("evaluate-outcome", "--pred", pred, "--truth", truth, "--json", out, *extra)


def _bad(res, out, *words):
    line = one_error_line(res.stderr)
    assert res.returncode == 2, res.stderr
    assert all(w in line for w in words), line
    assert not out.exists()
    return line


def test_good_tables_score_one(tables):
    tmp, truth, pred = tables
    res = _score(truth, pred, tmp / "s.json")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp / "s.json").read_text())["RFS"]["C_index"] == 1.0


@pytest.mark.parametrize("value, words", [("-900", ("patient P03", "RFS", "below 0")),
                                          ("inf", ("patient P03", "RFS", "not a finite number")),
                                          ("1e999", ("patient P03", "RFS", "not a finite number"))])
def test_impossible_rfs_is_refused(tables, value, words):
    tmp, truth, pred = tables
    lines = truth.read_text().splitlines()
    lines[4] = f"P03,{value},1,1"
    truth.write_text("\n".join(lines) + "\n")
    _bad(_score(truth, pred, tmp / "s.json"), tmp / "s.json", *words)


def test_non_finite_risk_is_refused(tables):
    tmp, truth, pred = tables
    pred.write_text(pred.read_text().replace("P05,25,", "P05,-inf,"))
    _bad(_score(truth, pred, tmp / "s.json"), tmp / "s.json", "patient P05", "risk", "finite")


def test_unknown_risk_column_is_refused_with_did_you_mean(tables):
    tmp, truth, pred = tables
    _bad(_score(truth, pred, tmp / "s.json", "--risk-column", "nope"), tmp / "s.json", "'nope'", "risk", "columns")
    _bad(_score(truth, pred, tmp / "s.json", "--risk-column", "risc"), tmp / "s.json", "did you mean risk?")
    _bad(_score(truth, pred, tmp / "s.json", "--time-column", "RSF"), tmp / "s.json", "did you mean RFS?")


def test_truth_patients_without_prediction_are_an_error_unless_skipped(tables):
    tmp, truth, pred = tables
    pred.write_text("\n".join(pred.read_text().splitlines()[:4]) + "\n")   # 3 of 30 predicted
    line = _bad(_score(truth, pred, tmp / "s.json"), tmp / "s.json", "27 patients of the truth have no prediction",
                "P03", "and 17 more", "--allow-missing skip")
    assert "P29" not in line   # the list is cut: one readable line for a whole missing cohort
    res = _score(truth, pred, tmp / "s.json", "--allow-missing", "skip")
    assert res.returncode == 0 and "27 patient(s) of the truth have no prediction" in res.stderr, res.stderr
    assert json.loads((tmp / "s.json").read_text())["RFS"]["n"] == 3
    (tmp / "s.json").unlink()
    _bad(_score(truth, pred, tmp / "s.json", "--allow-missing", "empty"), tmp / "s.json", "--allow-missing")


def _label(path, array):
    return write_image(Image(np.asarray(array, np.uint8), (1.0, 1.0, 2.0)), path)


@pytest.fixture
def cohort(tmp_path):
    """Two reference cases, one prediction (perfect)."""
    ref = np.zeros((6, 10, 10), np.uint8)
    ref[1:4, 2:6, 2:6] = 1
    ref[4, 7:9, 7:9] = 2
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    for cid in ("1", "2"):
        _label(refs / f"{cid}.nii.gz", ref)
    _label(preds / "1.nii.gz", ref)
    return refs, preds, tmp_path / "scores.json"


def test_evaluate_is_strict_about_missing_cases(cohort):
    refs, preds, out = cohort
    res = hntumorseg("evaluate", "--pred", preds, "--ref", refs, "--json", out)
    _bad(res, out, "1 reference case of the truth has no prediction: 2", "--allow-missing empty|skip")


def test_evaluate_allow_missing_empty_scores_the_case_as_empty(cohort):
    refs, preds, out = cohort
    res = hntumorseg("evaluate", "--pred", preds, "--ref", refs, "--json", out, "--allow-missing", "empty")
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["cases"]["2"]["GTVp"]["DSC"] == 0.0 and data["cases"]["1"]["GTVp"]["DSC"] == 1.0
    assert data["aggregate"]["GTVp"]["DSCagg"] == pytest.approx(2 * 48 / (48 + 96))   # not the inflated 1.0
    assert "scored as an empty prediction" in res.stderr


def test_evaluate_allow_missing_skip_warns(cohort):
    refs, preds, out = cohort
    res = hntumorseg("evaluate", "--pred", preds, "--ref", refs, "--json", out, "--allow-missing", "skip")
    assert res.returncode == 0 and "has no prediction; skipped" in res.stderr, res.stderr
    assert list(json.loads(out.read_text())["cases"]) == ["1"]
    bad = hntumorseg("evaluate", "--pred", preds, "--ref", refs, "--allow-missing", "emtpy")
    assert bad.returncode == 2 and "did you mean empty?" in one_error_line(bad.stderr)
