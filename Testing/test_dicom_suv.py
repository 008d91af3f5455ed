"""PET DICOM in SUVbw: read_pet_suv against SUV computed by hand from the stored values.

Hand computation (QIBA's body-weight SUV): SUV = Bq/mL x weight [g] / (dose [Bq] x 2^(-dt / T1/2)),
dt = decay-correction time - injection time; the phantom's own SUV is a second check.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from HNTumorSegLib.dicom.suv import read_pet_suv  # noqa: E402
from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.phantoms import make_petct_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series  # noqa: E402

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 82.5, 3.2e8, 6586.2
INJECTION = datetime.datetime(2024, 3, 5, 9, 12, 30)
START = datetime.datetime(2024, 3, 5, 10, 20, 0)


@pytest.fixture(scope="module")
def pet_suv() -> Image:
    pet = make_petct_case(seed=4, in_plane=32, ct_spacing=(5.0, 5.0, 6.0), pet_spacing=(8.0, 8.0, 8.0))["PET"]
    return Image(pet.array[:8], pet.spacing, pet.origin, pet.direction)


def _write(pet_suv, folder, **kw):
    acq = PetAcquisition(weight_kg=WEIGHT_KG, dose_bq=DOSE_BQ, half_life_s=HALF_LIFE_S, injection=INJECTION,
                         series_start=START, **kw)
    return write_dicom_series(pet_suv, folder, "PT", pet=acq)


def _stored(files) -> np.ndarray:
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        out.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.array(out)


def _hand_suv(bqml: np.ndarray, seconds_after_injection) -> np.ndarray:
    decay = 2.0 ** (-np.asarray(seconds_after_injection, float) / HALF_LIFE_S)
    return bqml * (WEIGHT_KG * 1000.0) / (DOSE_BQ * decay)


def _check(suv: Image, expected: np.ndarray, truth: np.ndarray):
    hot = expected > 0.2
    np.testing.assert_allclose(suv.array[hot], expected[hot], rtol=1e-3)  # within 0.1 %
    assert np.abs(suv.array - truth).max() < 2e-3 * truth.max()  # the phantom's own SUV, up to 16-bit storage


def test_bqml_start_decay_corrected(pet_suv, tmp_path):
    files = _write(pet_suv, tmp_path / "pt")
    suv = read_pet_suv(tmp_path / "pt")
    assert suv.array.dtype == np.float32
    expected = _hand_suv(_stored(files), (START - INJECTION).total_seconds())
    _check(suv, expected, pet_suv.array)
    assert float(expected.max()) > 1.0
    # one file of the series gives the whole series; read_volume (segment's inputs, Slicer) reads PET in SUV too
    np.testing.assert_array_equal(read_pet_suv(files[3]).array, suv.array)
    np.testing.assert_array_equal(read_volume(tmp_path / "pt").array, suv.array)


def test_start_time_without_datetime_uses_series_date(pet_suv, tmp_path):
    files = _write(pet_suv, tmp_path / "pt")
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
        ds.save_as(f)
    expected = _hand_suv(_stored(files), (START - INJECTION).total_seconds())
    _check(read_pet_suv(tmp_path / "pt"), expected, pet_suv.array)


def test_admin_and_none(pet_suv, tmp_path):
    files = _write(pet_suv, tmp_path / "admin", decay_correction="ADMIN")
    _check(read_pet_suv(tmp_path / "admin"), _hand_suv(_stored(files), 0.0), pet_suv.array)
    files = _write(pet_suv, tmp_path / "none", decay_correction="NONE", slice_seconds=40.0)
    seconds = [(START - INJECTION).total_seconds() + 40.0 * k for k in range(len(files))]
    expected = _hand_suv(_stored(files), np.array(seconds)[:, None, None])
    _check(read_pet_suv(tmp_path / "none"), expected, pet_suv.array)


def test_philips_scale_factor_and_gml(pet_suv, tmp_path):
    files = _write(pet_suv, tmp_path / "philips", units="CNTS", philips_suv_scale=0.00123)
    _check(read_pet_suv(tmp_path / "philips"), _stored(files) * 0.00123, pet_suv.array)
    files = _write(pet_suv, tmp_path / "gml", units="GML")
    _check(read_pet_suv(tmp_path / "gml"), _stored(files), pet_suv.array)


def test_counts_without_factor_refused(pet_suv, tmp_path):
    _write(pet_suv, tmp_path / "cnts", units="CNTS")
    with pytest.raises(InputError, match=r"CNTS with no SUV scale factor \(7053,1000\)"):
        read_pet_suv(tmp_path / "cnts")


@pytest.mark.parametrize("where, keyword, tag", [
    ("top", "PatientWeight", "(0010,1030)"),
    ("top", "DecayCorrection", "(0054,1102)"),
    ("radio", "RadionuclideHalfLife", "(0018,1075)"),
    ("radio", "RadionuclideTotalDose", "(0018,1074)"),
])
def test_missing_tag_is_named(pet_suv, tmp_path, where, keyword, tag):
    files = _write(pet_suv, tmp_path / "pt")
    for f in files:
        ds = pydicom.dcmread(f)
        target = ds if where == "top" else ds.RadiopharmaceuticalInformationSequence[0]
        delattr(target, keyword)
        ds.save_as(f)
    with pytest.raises(InputError, match=rf"no {keyword} \({tag[1:-1]}\)"):
        read_pet_suv(tmp_path / "pt")
