"""SUV factors per vendor and unit against eight real scanner header sets (issue 24).

The header values and the expected SUVbw factors are cornerstonejs/calculate-suv's published test
data (``Testing/data/calculate_suv``, MIT, vendored unchanged: facts, not code). Each set becomes
pydicom headers (Philips private group (7053,xxxx) with its creator) and goes through our own
:func:`HNTumorSegLib.dicom.suv.suv_conversion`; the factor must agree to 1e-6 relative. The
Philips BQML set is also written as a conformant DICOM PET series (phantom writer) and measured
end to end by ``hntumorseg biomarkers``: the old code applied the Philips (7053,1000) factor to
BQML images (SUVmax 4.71x too high).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from HNTumorSegLib.dicom.suv import (GE_SCAN_DATETIME_TAG, PHILIPS_ACTIVITY_TAG, PHILIPS_SUV_TAG,  # noqa: E402
                                     suv_conversion)
from HNTumorSegLib.errors import InputError  # noqa: E402

DATA = Path(__file__).parent / "data" / "calculate_suv"
EXPECTED = json.loads((DATA / "expected_factors.json").read_text(encoding="utf-8"))["suvbw"]
CASES = sorted(EXPECTED)
RADIO_KEYS = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
              "RadiopharmaceuticalStartDateTime")


def _instances(case: str) -> list[dict]:
    return json.loads((DATA / f"{case}-instances.json").read_text(encoding="utf-8"))


def _dataset(instance: dict) -> Dataset:
    """One flattened calculate-suv instance as a pydicom header (values as the scanner wrote them)."""
    ds, radio = Dataset(), Dataset()
    for key, value in instance.items():
        if key == "PhilipsPETPrivateGroup":
            if value:
                ds.add_new(0x70530010, "LO", "Philips PET Private Group")
            if "SUVScaleFactor" in value:
                ds.add_new(PHILIPS_SUV_TAG, "DS", str(value["SUVScaleFactor"]).strip())
            if "ActivityConcentrationScaleFactor" in value:
                ds.add_new(PHILIPS_ACTIVITY_TAG, "DS", str(value["ActivityConcentrationScaleFactor"]).strip())
        elif key == "GEPrivatePostInjectionDateTime":
            ds.add_new(0x00090010, "LO", "GEMS_PETD_01")
            ds.add_new(GE_SCAN_DATETIME_TAG, "DT", value)
        elif key in RADIO_KEYS:
            setattr(radio, key, str(value).strip() if isinstance(value, str) else value)
        else:
            setattr(ds, key, str(value) if isinstance(value, (int, float)) and key in ("PatientWeight", "PatientSize")
                    else value)
    ds.RadiopharmaceuticalInformationSequence = Sequence([radio])
    return ds


def _headers(case: str, change=None) -> list[Dataset]:
    instances = _instances(case)
    if change:
        instances = [change(dict(i)) for i in instances]
    return [_dataset(i) for i in instances]


def _bqml_by_hand(inst: dict, scan: datetime.datetime, injection: datetime.datetime) -> float:
    decay = 2.0 ** (-(scan - injection).total_seconds() / float(inst["RadionuclideHalfLife"]))
    return float(inst["PatientWeight"]) * 1000.0 / (float(inst["RadionuclideTotalDose"]) * decay)


@pytest.mark.parametrize("case", CASES)
def test_published_factor_of_each_vendor_case(case):
    conv = suv_conversion(_headers(case))
    assert len(conv.factors) == len(_instances(case))
    np.testing.assert_allclose(conv.factors, EXPECTED[case], rtol=1e-6)   # every instance: one factor per series


def test_the_rules_taken_are_the_vendors():
    rules = {case: suv_conversion(_headers(case)).rule for case in CASES}
    assert rules["PHILIPS_BQML"].startswith("BQML")   # the private factors are not for BQML images
    assert "(7053,1000)" in rules["PHILIPS_CNTS_AND_SUV"] and "(7053,1000)" in rules["PHILIPS_CNTS_AND_BQML_SUV"]
    assert "earliest acquisition" in rules["CPS_AND_BQML_AC_DT_-_S_DT"]
    assert "earliest acquisition" in rules["BQML_AC_DT_lessThan_S_DT_SIEMENS"]
    assert "series start" in rules["SIEMENS"] and "series start" in rules["GE_MEDICAL_AND_BQML"]


def test_philips_counts_with_only_the_activity_concentration_factor():
    """CNTS without (7053,1000): counts x (7053,1009) = Bq/mL, then the BQML factor."""
    def drop_suv(inst):
        inst["PhilipsPETPrivateGroup"] = {"ActivityConcentrationScaleFactor": "1.602563"}
        return inst

    conv = suv_conversion(_headers("PHILIPS_CNTS_AND_BQML_SUV", drop_suv))
    inst = _instances("PHILIPS_CNTS_AND_BQML_SUV")[0]   # series 09:35:56 before acquisition 09:54:39
    by_hand = 1.602563 * _bqml_by_hand(inst, datetime.datetime(2020, 12, 17, 9, 35, 56),
                                       datetime.datetime(2020, 12, 17, 8, 30, 0))
    np.testing.assert_allclose(conv.factors, by_hand, rtol=1e-9)
    assert "(7053,1009)" in conv.rule


def test_ge_private_scan_datetime_when_the_series_time_is_after_the_acquisition():
    def ge_late_series(inst):
        inst["SeriesTime"] = "101500"            # after the acquisition (09:56:21): a re-processed series
        inst["GEPrivatePostInjectionDateTime"] = "20201217095800"
        return inst

    conv = suv_conversion(_headers("GE_MEDICAL_AND_BQML", ge_late_series))
    inst = _instances("GE_MEDICAL_AND_BQML")[0]
    by_hand = _bqml_by_hand(inst, datetime.datetime(2020, 12, 17, 9, 58, 0), datetime.datetime(2020, 12, 17, 8, 45))
    np.testing.assert_allclose(conv.factors, by_hand, rtol=1e-9)
    assert "(0009,100d)" in conv.rule
    # a private element under another creator is not GE's scan time: the earliest acquisition is used
    headers = _headers("GE_MEDICAL_AND_BQML", ge_late_series)
    for h in headers:
        h[0x00090010].value = "OTHER_VENDOR"
    np.testing.assert_allclose(suv_conversion(headers).factors, EXPECTED["GE_MEDICAL_AND_BQML"], rtol=1e-6)


def test_counts_without_philips_factors_no_attenuation_correction_and_injection_after_scan_are_refused():
    with pytest.raises(InputError, match=r"CNTS with no SUV scale factor \(7053,1000\)"):
        suv_conversion(_headers("PHILIPS_CNTS_AND_SUV", lambda i: {**i, "PhilipsPETPrivateGroup": {}}))
    with pytest.raises(InputError, match="not attenuation-corrected"):
        suv_conversion(_headers("SIEMENS", lambda i: {**i, "CorrectedImage": ["NORM", "DTIM", "DECY", "RAN"]}))
    with pytest.raises(InputError, match="injected .* after"):
        suv_conversion(_headers("SIEMENS", lambda i: {**i, "RadiopharmaceuticalStartDateTime": "20201217120000"}))


def test_time_only_injection_before_midnight():
    """RadiopharmaceuticalStartTime only, injection 23:30 and a series on the next day at 00:40."""
    def midnight(inst):
        inst.update(SeriesDate="20201218", SeriesTime="004000", AcquisitionDate="20201218",
                    AcquisitionTime="004100", RadiopharmaceuticalStartTime="233000")
        return inst

    conv = suv_conversion(_headers("RADIOPHARM_DATETIME_UNDEFINED", midnight))
    inst = _instances("RADIOPHARM_DATETIME_UNDEFINED")[0]
    by_hand = _bqml_by_hand(inst, datetime.datetime(2020, 12, 18, 0, 40), datetime.datetime(2020, 12, 17, 23, 30))
    np.testing.assert_allclose(conv.factors, by_hand, rtol=1e-9)


def _philips_bqml_acquisition():
    from HNTumorSegLib.phantoms.dicom_series import PetAcquisition

    inst = _instances("PHILIPS_BQML")[0]
    return inst, PetAcquisition(
        weight_kg=float(inst["PatientWeight"]), dose_bq=float(inst["RadionuclideTotalDose"]),
        half_life_s=float(inst["RadionuclideHalfLife"]), injection=datetime.datetime(2020, 12, 17, 10, 0, 58),
        series_start=datetime.datetime(2020, 12, 17, 11, 1, 55), decay_correction="START", units="BQML",
        philips_suv_scale=float(inst["PhilipsPETPrivateGroup"]["SUVScaleFactor"]))


def test_philips_bqml_series_through_biomarkers(tmp_path, capsys):
    """A conformant Philips BQML PET series carrying that case's header values (both private
    factors present): ``biomarkers`` gives the phantom's SUVmax within 0.5 %, not 4.71x it."""
    from HNTumorSegLib.cli import main
    from HNTumorSegLib.image import Image, write_image
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series

    pet = np.full((8, 16, 16), 1.0, np.float32)
    pet[3:6, 5:10, 5:10] = 6.0
    pet[4, 7, 7] = 20.0                       # SUVmax of the GTVp
    labels = np.zeros(pet.shape, np.uint8)
    labels[3:6, 5:10, 5:10] = 1
    grid = dict(spacing=(4.0, 4.0, 4.0), origin=(-30.0, -30.0, -10.0))
    inst, acq = _philips_bqml_acquisition()
    files = write_dicom_series(Image(pet, **grid), tmp_path / "pt", "PT", pet=acq)
    for f in files:   # the case's other header values: acquisition one second after the series start, (7053,1009)
        ds = pydicom.dcmread(f)
        ds.AcquisitionTime = inst["AcquisitionTime"]
        ds.add_new(PHILIPS_ACTIVITY_TAG, "DS", inst["PhilipsPETPrivateGroup"]["ActivityConcentrationScaleFactor"])
        ds.save_as(f)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    np.testing.assert_allclose(suv_conversion(headers, files).factors, EXPECTED["PHILIPS_BQML"], rtol=1e-6)
    write_image(Image(labels, **grid), tmp_path / "lab.nii.gz")
    out = tmp_path / "bm.json"
    assert main(["biomarkers", "--pet", str(tmp_path / "pt"), "--labels", str(tmp_path / "lab.nii.gz"),
                 "--json", str(out)]) == 0, capsys.readouterr().err
    suv_max = json.loads(out.read_text())["patient"]["SUVmax_T"]
    print(f"Philips BQML end to end: SUVmax {suv_max:.4f} (phantom 20)")
    assert suv_max == pytest.approx(20.0, rel=5e-3), suv_max
