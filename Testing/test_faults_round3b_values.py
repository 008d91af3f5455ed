"""Issue 22 item 4: numbers from users are finite and in range, and the JSON we write is strict.

Before: ``outcome`` with a clinical ``Age`` of ``Infinity`` or ``1e308`` exited 0 printing
"risk score: nan" and wrote bare ``NaN`` into its JSON. Now such a value is exit 2 with one line
naming the file, the patient and the column, and nothing is written; a good record still gives a
finite prediction in strict JSON. The real command runs as a child process on a real (tiny,
untrained) outcome model folder.
"""

from __future__ import annotations

import json
import math

import pytest

from faults_testlib import hntumorseg, one_error_line
from HNTumorSegLib.fileio import write_json_atomic
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
from test_outcome_model_io import tiny_model  # noqa: F401 (the fixture: a real exported outcome model)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def case_files(tmp_path):
    case = make_outcome_case(seed=3, index=7)
    d = tmp_path / "case"
    for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
        write_image(case[key], d / f"{name}.nii.gz")
    clinical = {k: v for k, v in case["clinical"].items() if k != "PatientID"}
    return d, clinical


def _outcome(model, d, clinical_path, *extra):
    return hntumorseg("outcome", "--model", model, "--input", f"CT={d / 'ct.nii.gz'}",
                      "--input", f"PET={d / 'pet.nii.gz'}", "--labels", d / "labels.nii.gz",
                      "--clinical", clinical_path, "--json", d / "outcome.json", *extra)


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} in the JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("age_text, words", [("Infinity", "not finite"), ("1e308", "outside 0 to 130"),
                                             ("-Infinity", "not finite"), ("1e400", "not finite")])
def test_outcome_refuses_a_non_finite_or_huge_clinical_json_value(tiny_model, case_files,  # noqa: F811
                                                                     age_text, words):
    d, clinical = case_files
    text = json.dumps({**clinical, "Age": 0}).replace('"Age": 0', f'"Age": {age_text}')
    (d / "ehr.json").write_text(text)
    res = _outcome(tiny_model, d, d / "ehr.json")
    line = one_error_line(res.stderr)
    assert res.returncode == 2, res.stderr
    assert "Age" in line and words in line and "ehr.json" in line, line
    assert "nan" not in res.stdout.lower() and not (d / "outcome.json").exists()


def test_outcome_names_the_patient_of_a_csv_row_with_inf(tiny_model, case_files):  # noqa: F811
    d, clinical = case_files
    cols = list(clinical)
    rows = [dict(clinical, PatientID="P1"), dict(clinical, PatientID="P7", Age="inf")]
    (d / "clinical.csv").write_text(",".join(["PatientID", *cols]) + "\n" + "".join(
        ",".join(str(r.get(c, "")) if r.get(c) is not None else "" for c in ["PatientID", *cols]) + "\n" for r in rows))
    res = _outcome(tiny_model, d, d / "clinical.csv", "--patient", "P7")
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and "patient P7" in line and "Age" in line and "clinical.csv" in line, line
    assert not (d / "outcome.json").exists()


def test_good_values_give_a_finite_prediction_in_strict_json(tiny_model, case_files):  # noqa: F811
    d, clinical = case_files
    (d / "ehr.json").write_text(json.dumps(clinical))
    res = _outcome(tiny_model, d, d / "ehr.json")
    assert res.returncode == 0, res.stderr
    data = _strict((d / "outcome.json").read_text())
    assert math.isfinite(data["rfs"]["risk"]) and 0 <= data["hpv"]["probability"] <= 1
    assert "nan" not in res.stdout.lower()


def test_suv_factor_must_be_finite(tmp_path, case_files):
    d, _ = case_files
    for factor in ("inf", "nan", "1e308", "-1"):
        res = hntumorseg("biomarkers", "--pet", d / "pet.nii.gz", "--labels", d / "labels.nii.gz",
                         "--pet-units", "BQML", "--suv-factor", factor, "--json", tmp_path / "bm.json")
        line = one_error_line(res.stderr)
        assert res.returncode == 2 and "--suv-factor" in line, (factor, line)
        assert not (tmp_path / "bm.json").exists()


def test_the_json_writer_is_strict_and_keeps_the_earlier_file(tmp_path):
    out = tmp_path / "result.json"
    write_json_atomic(out, {"risk": 1.5})
    before = out.read_bytes()
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            write_json_atomic(out, {"risk": bad})
        with pytest.raises(ValueError):
            write_json_atomic(out, {"risk": bad}, allow_nan=True)   # a caller cannot opt out
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
