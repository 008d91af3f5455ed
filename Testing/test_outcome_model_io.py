"""Outcome model folders: export -> load (sha256, weights only) -> fold-averaged prediction; training CLI bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "training") not in sys.path:
    sys.path.insert(0, str(ROOT / "training"))

from hntumorseg_training.outcome.export import export_outcome_model  # noqa: E402
from hntumorseg_training.outcome.train import EndpointResult, FoldResult, TrainConfig, kfold_indices  # noqa: E402

from HNTumorSegLib.errors import InputError, ModelError  # noqa: E402
from HNTumorSegLib.outcome.clinical import ClinicalEncoder  # noqa: E402
from HNTumorSegLib.outcome.network import OutcomeNet  # noqa: E402
from HNTumorSegLib.outcome.patch import PatchSpec  # noqa: E402
from HNTumorSegLib.outcome.predictor import OutcomePredictor  # noqa: E402
from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WIDTH = (4, 8, 16, 32)


@pytest.fixture
def tiny_model(tmp_path):
    records = [{**make_outcome_case(0, i)["clinical"], "MTV_ml": float(i), "NTV_ml": 0.5 * i, "SUVmax_T": 8.0 + i,
                "SUVmax_N": None, "TLG": 10.0 * i, "NLG": None} for i in range(5)]
    config = TrainConfig(block_inplanes=WIDTH)
    results = []
    for endpoint, n_out in (("rfs", 4), ("hpv", 1)):
        folds = []
        for k in range(3):
            torch.manual_seed(10 * k + n_out)
            enc = ClinicalEncoder.fit(records[k:])  # each fold its own statistics
            net = OutcomeNet(enc.size, n_out, WIDTH).eval()
            folds.append(FoldResult(k, net.state_dict(), enc, 1, 0.5, [], np.zeros(0)))
        results.append(EndpointResult(endpoint, folds, {}, {}))
    spec = PatchSpec(size_zyx=(12, 12, 12), spacing_xyz_mm=(6.0, 6.0, 6.0))
    return export_outcome_model(tmp_path / "model", results, spec, config, model_id="tiny")


def test_prediction_is_the_fold_averaged_logits(tiny_model):
    from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
    from HNTumorSegLib.outcome.clinical import imaging_features
    from HNTumorSegLib.outcome.patch import make_patch

    case = make_outcome_case(1, 42)
    pred = OutcomePredictor(tiny_model)
    out = pred.predict(case["CT"], case["PET"], case["mask"], case["clinical"])
    record = {**case["clinical"], **imaging_features(compute_biomarkers(case["PET"], case["mask"])["patient"])}
    x = torch.from_numpy(make_patch(case["CT"], case["PET"], case["mask"], pred.card.patch)[None])
    with torch.no_grad():
        rfs = torch.stack([n(x, torch.from_numpy(e.transform(record)[None])) for n, e in pred.members["rfs"]]).mean(0)
        hpv = torch.stack([n(x, torch.from_numpy(e.transform(record)[None])) for n, e in pred.members["hpv"]]).mean(0)
    s = torch.cumprod(1 - torch.sigmoid(rfs), 1)[0]
    assert out["rfs"]["survival"] == pytest.approx(s.tolist(), rel=1e-5)
    assert out["rfs"]["risk"] == pytest.approx(float(-s.sum()), rel=1e-5)
    assert out["hpv"]["probability"] == pytest.approx(float(torch.sigmoid(hpv[0, 0])), rel=1e-5)
    # averaging probabilities instead would differ: the order matters and is the authors'
    assert out["rfs"]["folds"] == 3 and out["hpv"]["folds"] == 3


def test_tampered_weights_and_existing_folder_are_refused(tiny_model, tmp_path):
    weights = tiny_model / "rfs_fold1.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="checksum"):
        OutcomePredictor(tiny_model)
    with pytest.raises(InputError, match="exists"):
        export_outcome_model(tiny_model, [], PatchSpec(), TrainConfig())


def test_kfold_indices_are_patient_wise_partitions():
    folds = kfold_indices(23, 5, seed=3)
    vals = np.concatenate([v for _, v in folds])
    assert sorted(vals.tolist()) == list(range(23))
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 23
    with pytest.raises(InputError):
        kfold_indices(3, 5, 0)


def test_outcome_train_bad_input_exit_2_one_line(tmp_path, capsys):
    from hntumorseg_training.cli import main

    (tmp_path / "data").mkdir()
    csv = tmp_path / "c.csv"
    csv.write_text("PatientID,Age,RFS,Relapse\nX-1,60,100,1\n")
    rc = main(["outcome-train", "--data", str(tmp_path / "data"), "--clinical", str(csv), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "X-1" in err and not (tmp_path / "m").exists()


def test_outcome_command_writes_json_and_picture(tiny_model, tmp_path, capsys):
    import json

    from HNTumorSegLib.cli import main
    from HNTumorSegLib.image import write_image

    case = make_outcome_case(2, 7)
    for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
        write_image(case[key], tmp_path / f"{name}.nii.gz")
    csv = tmp_path / "clinical.csv"
    csv.write_text("PatientID,Age,Gender\nA,60,M\nB,70,F\n")
    args = ["outcome", "--model", str(tiny_model), "--input", f"CT={tmp_path / 'ct.nii.gz'}",
            "--input", f"PET={tmp_path / 'pet.nii.gz'}", "--labels", str(tmp_path / "labels.nii.gz"),
            "--clinical", str(csv), "--patient", "B", "--json", str(tmp_path / "o.json"), "--plot", str(tmp_path / "o.png")]
    assert main(args) == 0
    assert json.loads((tmp_path / "o.json").read_text())["rfs"]["folds"] == 3
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.startswith("RESEARCH USE ONLY")
    assert main(args[:-6] + ["--json", str(tmp_path / "p.json")]) == 2  # CSV of two patients, no --patient
    assert "--patient" in capsys.readouterr().err and not (tmp_path / "p.json").exists()
