"""`hntumorseg export` on four source geometries, read back by independent tools.

For an axial CT, an oblique MR, a sagittal MR and a feet-first CT, each written as a conformant
series (:mod:`HNTumorSegLib.phantoms.dicom_series`) with a UTF-8 patient name outside Latin-1,
the command writes RTSTRUCT and SEG; then:

* dciodvfy (dicom3tools) reports 0 errors on both;
* plastimatch turns the RTSTRUCT back into masks: Dice >= 0.97 per label;
* dcmqi's segimage2itkimage turns the SEG back into a label map: Dice 1.0 per label;
* the patient name, SpecificCharacterSet and every Patient/General Study element equal the source's.
"""

from __future__ import annotations


import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
require_module("highdicom")

from dicom_testlib import dciodvfy, dcmqi_labels, dice, plastimatch_labels  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.export._dicom_source import PATIENT_STUDY_KEYWORDS  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_petct_case, make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import (FEET_FIRST, SAGITTAL, DicomPatient, reoriented,  # noqa: E402
                                                 rotation, write_dicom_series)

NAME = "Müller–Ng^Wén"


def _case(kind: str) -> tuple[Image, np.ndarray, str, str]:
    """(image, label array, modality, patient position) of one source geometry."""
    if kind in ("axial_ct", "feet_first_ct"):
        case = make_petct_case(seed=2, in_plane=48, ct_spacing=(3.5, 3.5, 6.0), pet_spacing=(7.0, 7.0, 7.0))
        image, mask = case["CT"], case["mask"].array
        if kind == "feet_first_ct":
            return reoriented(image, FEET_FIRST), mask, "CT", "FFS"
        return image, mask, "CT", "HFS"
    case = make_prert_case(seed=3, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
    direction = rotation((1.0, 1.0, 0.3), 25.0) if kind == "oblique_mr" else SAGITTAL
    return reoriented(case["T2"], direction), case["mask"].array, "MR", "HFS"


@pytest.mark.parametrize("kind", ["axial_ct", "oblique_mr", "sagittal_mr", "feet_first_ct"])
def test_export_reads_back_through_independent_tools(kind, tmp_path, capsys):
    image, mask, modality, position = _case(kind)
    series_dir = tmp_path / "study" / "series"
    files = write_dicom_series(image, series_dir, modality, patient=DicomPatient(name=NAME), charset="ISO_IR 192",
                               patient_position=position)
    grid = read_volume(tmp_path / "study", name="source")  # the grid a DICOM input is segmented on
    labels = grid.with_array(mask.astype(np.uint8))
    assert set(np.unique(labels.array)) == {0, 1, 2}
    labels_path = write_image(labels, tmp_path / "labels.nii.gz")
    rt, seg = tmp_path / "out" / "rtstruct.dcm", tmp_path / "out" / "seg.dcm"

    code = main(["export", "--labels", str(labels_path), "--source", str(tmp_path / "study"),
                 "--rtstruct", str(rt), "--seg", str(seg)])
    assert code == 0, capsys.readouterr().err

    for path in (rt, seg):
        errors, warnings = dciodvfy(path)
        assert errors == [], f"{path.name}: {errors}"
    source = pydicom.dcmread(files[0])
    for path in (rt, seg):
        out = pydicom.dcmread(path)
        assert out.SpecificCharacterSet == "ISO_IR 192"
        assert str(out.PatientName) == NAME
        assert NAME.encode("utf-8") in path.read_bytes()  # stored as UTF-8 bytes, not replaced
        for keyword in PATIENT_STUDY_KEYWORDS:
            if keyword in source:
                assert out[keyword].value == source[keyword].value, keyword

    by_name = plastimatch_labels(rt, series_dir, labels, tmp_path / "plastimatch")
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        score = dice(by_name[name], labels.array == value)
        assert score >= 0.97, f"{kind} {name}: plastimatch Dice {score:.4f}"

    back = dcmqi_labels(seg, labels, tmp_path / "dcmqi")
    for value in (1, 2):
        assert dice(back == value, labels.array == value) == 1.0, f"{kind} label {value}: dcmqi"
    np.testing.assert_array_equal(back, labels.array)


def test_gtvn_only_map_gives_segment_1_gtvn(tmp_path):
    """The standard numbers SEG segments 1, 2 ... without gaps: GTVn alone is segment 1, read back as GTVn."""
    from HNTumorSegLib.dicom.select import select_series
    from HNTumorSegLib.export.dicom_seg import read_dicom_seg_labels, write_dicom_seg

    image, mask, modality, position = _case("oblique_mr")
    write_dicom_series(image, tmp_path / "s", modality, patient_position=position)
    grid = read_volume(tmp_path / "s")
    labels = grid.with_array(np.where(mask == 2, 2, 0).astype(np.uint8))
    geometry = select_series(tmp_path / "s", labels=labels)
    seg = write_dicom_seg(labels, geometry, tmp_path / "seg.dcm")
    assert dciodvfy(seg)[0] == []
    ds = pydicom.dcmread(seg)
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in ds.SegmentSequence] == [(1, "GTVn")]
    np.testing.assert_array_equal(read_dicom_seg_labels(seg, labels, geometry).array, labels.array)
    np.testing.assert_array_equal(dcmqi_labels(seg, labels, tmp_path / "dcmqi"), labels.array)
