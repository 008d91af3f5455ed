"""The phantom DICOM writer gives series dicom3tools' validator accepts, which read back on the phantom's grid."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from dicom_testlib import dciodvfy  # noqa: E402

from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.phantoms import make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import (FEET_FIRST, SAGITTAL, DicomPatient, PetAcquisition,  # noqa: E402
                                                 reoriented, rotation, write_dicom_series)

NAME = "Müller–Ng^Wén"


@pytest.fixture(scope="module")
def t2():
    return make_prert_case(seed=1, shape=(5, 24, 24), spacing=(1.5, 1.5, 3.0))["T2"]


@pytest.mark.parametrize("modality, direction, position, pet", [
    ("CT", None, "HFS", None),
    ("CT", FEET_FIRST, "FFS", None),
    ("MR", "oblique", "HFS", None),
    ("MR", SAGITTAL, "HFS", None),
    ("PT", None, "HFS", PetAcquisition()),
    ("PT", None, "FFS", PetAcquisition(units="CNTS", philips_suv_scale=0.002)),
])
def test_series_are_conformant_and_keep_the_grid(t2, tmp_path, modality, direction, position, pet):
    if isinstance(direction, str):  # "oblique"
        direction = rotation((1, 0.5, 0), 20)
    image = t2 if direction is None else reoriented(t2, direction)
    if modality == "PT":
        image = Image(image.array / 100.0, image.spacing, image.origin, image.direction)  # SUV-like
    files = write_dicom_series(image, tmp_path / "s", modality, patient=DicomPatient(name=NAME),
                               charset="ISO_IR 192", patient_position=position, pet=pet)
    assert len(files) == image.array.shape[0]
    for f in (files[0], files[-1]):
        errors, warnings = dciodvfy(f)
        assert errors == [] and warnings == [], errors + warnings
    ds = pydicom.dcmread(files[0])
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == NAME
    back = read_volume(tmp_path / "s")
    assert back.same_grid(image)
    if modality != "PT":
        np.testing.assert_array_equal(back.array, np.round(image.array))


def test_left_handed_grid_refused(t2, tmp_path):
    flipped = Image(t2.array, t2.spacing, t2.origin, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="left-handed"):
        write_dicom_series(flipped, tmp_path / "x", "MR")
