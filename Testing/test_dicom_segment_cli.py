"""`hntumorseg segment` with a DICOM folder as input, writing RTSTRUCT and SEG beside the label map.

Mid-RT with the bundled demo model: the T2 is a conformant MR series in a study folder that
also holds a second series and a README, so ``--series`` names it. The label map lies on that
series' grid; RTSTRUCT and SEG reference it, pass dciodvfy, and the RTSTRUCT reads back with
plastimatch onto the label map. Mistakes in the DICOM options end before any work (exit 2, one
line, no file). A study folder holding a CT and a PET gives each input its own series.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from dicom_testlib import dciodvfy, dice, plastimatch_labels  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import Image, read_image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import DicomPatient, write_dicom_series  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAME = "Müller–Ng^Wén"


@pytest.fixture
def study(tmp_path):
    case = make_midrt_case(seed=11)
    patient = DicomPatient(name=NAME)
    t2 = case["midRT_T2"]
    files = write_dicom_series(t2, tmp_path / "study" / "t2", "MR", patient=patient, charset="ISO_IR 192",
                               series_description="T2 mid-RT")
    other = Image(t2.array, t2.spacing, tuple(np.add(t2.origin, (0.0, 0.0, 30.0))), t2.direction)
    write_dicom_series(other, tmp_path / "study" / "t1", "MR", patient=patient, charset="ISO_IR 192",
                       series_description="T1 other")
    (tmp_path / "study" / "README.txt").write_text("from the PACS\n")
    prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    return {"dir": tmp_path / "study", "uid": str(pydicom.dcmread(files[0]).SeriesInstanceUID),
            "series_dir": tmp_path / "study" / "t2", "prior": prior}


def test_segment_dicom_in_dicom_out(study, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["segment", "--model", "demo-midrt", "--input", f"T2={study['dir']}", "--series", study["uid"],
               "--prior", str(study["prior"]), "--output", str(out / "labels.nii.gz"),
               "--rtstruct", str(out / "rt.dcm"), "--seg", str(out / "seg.dcm"), "--holes", "keyhole",
               "--device", "cpu", "--progress", "none"])
    assert rc == 0, capsys.readouterr().err
    labels = read_image(out / "labels.nii.gz", label=True)
    assert labels.same_grid(read_volume(study["dir"], series=study["uid"]))
    assert set(np.unique(labels.array)) == {0, 1, 2}
    for path in (out / "rt.dcm", out / "seg.dcm"):
        assert dciodvfy(path)[0] == []
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == NAME and ds.SpecificCharacterSet == "ISO_IR 192"
    rt = pydicom.dcmread(out / "rt.dcm")
    ref = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == study["uid"]
    masks = plastimatch_labels(out / "rt.dcm", study["series_dir"], labels, tmp_path / "pl")
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        assert dice(masks[name], labels.array == value) >= 0.97


@pytest.mark.parametrize("change, message", [
    (lambda a, s: [x.replace(f"T2={s['dir']}", f"T2={s['prior']}") for x in a], "need the T2 input as a DICOM folder"),
    (lambda a, s: [x for x in a if x not in ("--series", s["uid"])], "holds 2 image series"),
    (lambda a, s: [x.replace(s["uid"], "1.2.3") for x in a], "holds no series 1.2.3"),
    (lambda a, s: [x.replace(s["uid"], f"PET={s['uid']}") for x in a], "names no input"),
])
def test_dicom_mistakes_end_before_any_work(study, tmp_path, capsys, change, message):
    out = tmp_path / "out"
    argv = ["segment", "--model", "demo-midrt", "--input", f"T2={study['dir']}", "--series", study["uid"],
            "--prior", str(study["prior"]), "--output", str(out / "labels.nii.gz"), "--rtstruct", str(out / "rt.dcm"),
            "--device", "cpu", "--progress", "none"]
    assert main(change(argv, study)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_ct_and_pet_in_one_study_folder(tmp_path):
    case = make_petct_case(seed=3, in_plane=32, ct_spacing=(6.0, 6.0, 8.0), pet_spacing=(8.0, 8.0, 8.0))
    write_dicom_series(case["CT"], tmp_path / "study", "CT", prefix="CT")
    write_dicom_series(case["PET"], tmp_path / "study", "PT", prefix="PT")
    ct = read_volume(tmp_path / "study", name="CT image", prefer_modality="CT")
    pet = read_volume(tmp_path / "study", name="PET image", prefer_modality="PT")
    assert ct.same_grid(case["CT"]) and pet.same_grid(case["PET"])
    np.testing.assert_array_equal(ct.array, case["CT"].array)
    assert np.abs(pet.array - case["PET"].array).max() < 2e-3 * case["PET"].array.max()  # in SUV
