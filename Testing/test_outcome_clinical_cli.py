"""Clinical tables and their encoding; `hntumorseg evaluate-outcome` end to end with its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.outcome.clinical import ClinicalEncoder, category, read_clinical_record, read_clinical_table
from HNTumorSegLib.outcome.metrics import harrell_c_index, hpv_metrics

HECKTOR_HEADER = "PatientID,Age,Gender,Tobacco Consumption,Alcohol Consumption,Performance\xa0Status,M-stage,Treatment,HPV Status\n"


def test_reads_hecktor_columns_with_bom_and_nbsp(tmp_path):
    path = tmp_path / "HECKTOR_2025_Training_Task_2.csv"
    path.write_text("\ufeff" + HECKTOR_HEADER + "CHUM-001,61,M,1,,0,M0,Chemoradiotherapy,1\n"
                    "CHUM-002,,F,0,1,NA,M0,Radiotherapy only,\n", encoding="utf-8")
    table = read_clinical_table(path)
    assert list(table) == ["CHUM-001", "CHUM-002"]
    assert table["CHUM-001"]["Performance Status"] == "0" and table["CHUM-002"]["Age"] == ""


def test_column_map_and_duplicate_ids(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("id;age_years;sex\nA;50;M\nB;70;F\n", encoding="utf-8")
    table = read_clinical_table(path, {"PatientID": "id", "Age": "age_years", "Gender": "sex"})
    assert table["B"]["Age"] == "70" and table["A"]["Gender"] == "M"
    path.write_text("PatientID,Age\nA,1\nA,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="twice"):
        read_clinical_table(path)
    path.write_text("Name,Age\nA,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="patient id column"):
        read_clinical_table(path)


def test_record_from_json_or_one_row_csv(tmp_path):
    js = tmp_path / "ehr.json"
    js.write_text(json.dumps({"Age": 61, "Gender": "M"}))
    assert read_clinical_record(js) == {"Age": 61, "Gender": "M"}
    csv = tmp_path / "c.csv"
    csv.write_text("PatientID,Age\nA,1\nB,2\n")
    with pytest.raises(InputError, match="--patient"):
        read_clinical_record(csv)
    assert read_clinical_record(csv, "B")["Age"] == "2"


def test_encoder_median_zscore_unknown_onehot_and_round_trip():
    train = [{"Age": 50, "Gender": "M", "MTV_ml": 10.0}, {"Age": None, "Gender": "F", "MTV_ml": 20.0},
             {"Age": 70, "Gender": "", "MTV_ml": None}, {"Age": "nan", "Gender": "M", "MTV_ml": 30.0}]
    enc = ClinicalEncoder.fit(train, continuous=["Age", "MTV_ml"], categorical=["Gender"])
    assert enc.median == {"Age": 60.0, "MTV_ml": 20.0}
    ages = np.array([50, 60, 70, 60.0])
    assert enc.mean["Age"] == pytest.approx(ages.mean()) and enc.std["Age"] == pytest.approx(ages.std())
    assert enc.vocabulary["Gender"] == ["F", "M", "Unknown"]
    x = enc.transform({"Age": None, "Gender": "X", "MTV_ml": 20.0})
    assert x[0] == pytest.approx((60 - ages.mean()) / ages.std()) and x[2:].tolist() == [0, 0, 0]
    assert enc.feature_names == ["Age", "MTV_ml", "Gender_F", "Gender_M", "Gender_Unknown"]
    again = ClinicalEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert np.array_equal(again.transform(train[0]), enc.transform(train[0]))
    assert category(1) == category(1.0) == category("1") == "1" and category(None) == "Unknown"
    with pytest.raises(InputError, match="not a number"):
        enc.transform({"Age": "old"})


@pytest.fixture
def outcome_tables(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"P{i:02d}" for i in range(40)]
    rfs = rng.integers(100, 140, 40)
    relapse = (rng.random(40) < 0.5).astype(int)
    hpv = (rng.random(40) < 0.7).astype(int)
    risk = np.round(rng.normal(size=40), 1)
    prob = np.round(rng.random(40), 1)
    truth = tmp_path / "truth.csv"
    truth.write_text("PatientID,RFS,Relapse,HPV\n" + "".join(
        f"{i},{t},{e},{h}\n" for i, t, e, h in zip(ids, rfs, relapse, hpv)) + "EXTRA,5,1,0\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("PatientID,risk,hpv_probability\n" + "".join(f"{i},{r},{p}\n" for i, r, p in zip(ids, risk, prob)))
    return tmp_path, truth, pred, (rfs, relapse, hpv, risk, prob)


def test_evaluate_outcome_scores_and_json(outcome_tables, capsys):
    tmp, truth, pred, (rfs, relapse, hpv, risk, prob) = outcome_tables
    out = tmp / "scores.json"
    assert main(["evaluate-outcome", "--pred", str(pred), "--truth", str(truth), "--json", str(out),
                 "--allow-missing", "skip"]) == 0   # the truth's EXTRA patient has no prediction
    data = json.loads(out.read_text())
    assert data["RFS"] == {"C_index": pytest.approx(harrell_c_index(rfs, relapse, risk)), "n": 40,
                           "events": int(relapse.sum())}
    ref = hpv_metrics(hpv, prob)
    for key in ("balanced_accuracy", "specificity", "sensitivity", "AUC", "threshold"):
        assert data["HPV"][key] == pytest.approx(ref[key])
    captured = capsys.readouterr()
    assert "C-index" in captured.out and "1 patient(s) of the truth have no prediction" in captured.err


@pytest.mark.parametrize("case", ["unknown_patient", "missing_column", "non_numeric_time", "bad_hpv", "no_columns"])
def test_evaluate_outcome_bad_input_exit_2_one_line(outcome_tables, capsys, case):
    tmp, truth, pred, _ = outcome_tables
    text_t, text_p = truth.read_text(), pred.read_text()
    if case == "unknown_patient":
        pred.write_text(text_p + "NOBODY,0.1,0.2\n")
    elif case == "missing_column":
        truth.write_text(text_t.replace("Relapse", "Event"))
    elif case == "non_numeric_time":
        lines = text_t.splitlines()
        lines[4] = "P03,soon,1,1"
        truth.write_text("\n".join(lines) + "\n")
    elif case == "bad_hpv":
        lines = text_t.splitlines()
        lines[2] = lines[2].rsplit(",", 1)[0] + ",2"
        truth.write_text("\n".join(lines) + "\n")
    else:
        pred.write_text("PatientID,score\nP00,1\n")
    out = tmp / "scores.json"
    assert main(["evaluate-outcome", "--pred", str(pred), "--truth", str(truth), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hntumorseg evaluate-outcome: error:")
    assert not out.exists()
