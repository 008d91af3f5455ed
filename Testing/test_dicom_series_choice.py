"""Choosing and checking the source series of a study folder (HNTumorSegLib.dicom).

A study folder holds the series the label map was made on, a second series of the same matrix
(another position), a README, an old RTSTRUCT and a DICOMDIR (with the second series in its
own sub-folders, as pydicom's FileSet writes them). Export finds the right series without
--series; a wrong --series or a label map on no series' grid ends with one line listing the
series, exit 2 and nothing written. Tilted, unevenly spaced, multi-frame and frame-of-reference-
less series are refused with a line that says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
hd = require_module("highdicom")

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.scan import scan_folder  # noqa: E402
from HNTumorSegLib.dicom.select import select_series  # noqa: E402
from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.export.rtstruct import write_rtstruct  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import DicomPatient, write_dicom_series  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("choice")
    case = make_prert_case(seed=5, shape=(10, 32, 32), spacing=(1.5, 1.5, 3.0), n_nodes=1)
    patient = DicomPatient()
    study_dir = root / "study"
    t2_files = write_dicom_series(case["T2"], study_dir / "t2", "MR", patient=patient, series_description="T2 TSE")
    shifted = Image(case["T2"].array, case["T2"].spacing, tuple(np.add(case["T2"].origin, (0.0, 0.0, 40.0))))
    other_dir = root / "other"
    write_dicom_series(shifted, other_dir, "MR", patient=patient, series_description="T1 other position")
    from pydicom.fileset import FileSet

    fs = FileSet()
    for f in sorted(other_dir.iterdir()):
        fs.add(pydicom.dcmread(f))
    fs.write(study_dir)  # DICOMDIR + PT000000/ST000000/SE000000/IM...
    (study_dir / "README.txt").write_text("exported from the PACS on Monday\n")
    grid = read_volume(study_dir / "t2")
    labels = grid.with_array(case["mask"].array.astype(np.uint8))
    write_rtstruct(labels, t2_files, study_dir / "old_rtstruct.dcm")
    labels_path = write_image(labels, root / "labels.nii.gz")
    return {"root": root, "study": study_dir, "labels": labels, "labels_path": labels_path,
            "t2_uid": str(pydicom.dcmread(t2_files[0]).SeriesInstanceUID), "t2_files": t2_files}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_scan_tells_series_apart(study):
    found = scan_folder(study["study"])
    kinds = sorted((s.modality, s.is_image, len(s.files)) for s in found)
    assert kinds == [("MR", True, 10), ("MR", True, 10), ("RTSTRUCT", False, 1)]


def test_export_picks_the_series_the_labels_lie_on(study, tmp_path, capsys):
    rt, seg = tmp_path / "rt.dcm", tmp_path / "seg.dcm"
    assert main(["export", "--labels", str(study["labels_path"]), "--source", str(study["study"]),
                 "--rtstruct", str(rt), "--seg", str(seg)]) == 0, capsys.readouterr().err
    refs = pydicom.dcmread(rt).ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    assert refs.RTReferencedSeriesSequence[0].SeriesInstanceUID == study["t2_uid"]
    seg_ds = pydicom.dcmread(seg)
    assert seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID == study["t2_uid"]
    # the same with the series named
    assert main(["export", "--labels", str(study["labels_path"]), "--source", str(study["study"]),
                 "--series", study["t2_uid"], "--seg", str(tmp_path / "seg2.dcm")]) == 0


def test_wrong_series_lists_the_series_and_writes_nothing(study, tmp_path, capsys):
    rt = tmp_path / "rt.dcm"
    assert main(["export", "--labels", str(study["labels_path"]), "--source", str(study["study"]),
                 "--series", "1.2.3.4", "--rtstruct", str(rt)]) == 2
    line = _one_error_line(capsys)
    assert "1.2.3.4" in line and study["t2_uid"] in line
    assert 'MR "T2 TSE" 10 files 32x32' in line and 'MR "T1 other position" 10 files 32x32' in line
    assert "RTSTRUCT" in line
    assert not rt.exists() and list(tmp_path.iterdir()) == []


def test_label_map_on_no_grid(study, tmp_path, capsys):
    labels = study["labels"]
    off = Image(labels.array, labels.spacing, tuple(np.add(labels.origin, (0.75, 0.0, 0.0))), labels.direction)
    path = write_image(off, tmp_path / "off.nii.gz")
    out = tmp_path / "out"
    assert main(["export", "--labels", str(path), "--source", str(study["study"]),
                 "--rtstruct", str(out / "rt.dcm"), "--seg", str(out / "seg.dcm")]) == 2
    line = _one_error_line(capsys)
    assert "lies on none of the series' grids" in line and study["t2_uid"] in line
    assert not out.exists()
    # a named series the labels do not lie on: the same refusal
    assert main(["export", "--labels", str(path), "--source", str(study["study"]), "--series", study["t2_uid"],
                 "--seg", str(out / "seg.dcm")]) == 2
    assert "does not lie on the grid" in _one_error_line(capsys)
    assert not out.exists()


def test_several_series_without_labels_need_a_choice(study):
    with pytest.raises(InputError, match="holds 2 image series.*series found"):
        read_volume(study["study"])
    image = read_volume(study["study"], series=study["t2_uid"])
    assert image.same_grid(study["labels"])


def _copy_series(files, folder: Path, change) -> Path:
    folder.mkdir(parents=True)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        if change(ds, k) is not False:
            ds.save_as(folder / Path(f).name)
    return folder


def test_gantry_tilt_refused(study, tmp_path):
    def tilt(ds, k):
        pos = [float(v) for v in ds.ImagePositionPatient]
        pos[1] += k * 3.0 * np.tan(np.radians(15))
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
    folder = _copy_series(study["t2_files"], tmp_path / "tilted", tilt)
    with pytest.raises(InputError, match=r"gantry tilt of about 15\.0 deg"):
        select_series(folder)


def test_uneven_spacing_refused(study, tmp_path):
    folder = _copy_series(study["t2_files"], tmp_path / "gap", lambda ds, k: False if k == 4 else None)
    with pytest.raises(InputError, match=r"uneven slice spacing \(3\.00 to 6\.00 mm\)"):
        select_series(folder)


def test_missing_frame_of_reference_is_a_clear_line(study, tmp_path):
    folder = _copy_series(study["t2_files"], tmp_path / "nofor", lambda ds, k: delattr(ds, "FrameOfReferenceUID"))
    with pytest.raises(InputError, match="no FrameOfReferenceUID"):
        select_series(folder)
    assert read_volume(folder).same_grid(study["labels"])  # reading to segment needs no frame of reference ...
    with pytest.raises(InputError, match="no FrameOfReferenceUID"):  # ... an export on it does
        write_rtstruct(study["labels"], sorted(folder.iterdir()), tmp_path / "rt.dcm")
    assert not (tmp_path / "rt.dcm").exists()


def test_enhanced_multiframe_refused(study, tmp_path):
    sources = [pydicom.dcmread(f) for f in study["t2_files"]]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(sources, series_instance_uid=hd.UID(), series_number=7,
                                                         sop_instance_uid=hd.UID(), instance_number=1)
    folder = tmp_path / "enhanced"
    folder.mkdir()
    enhanced.save_as(folder / "enhanced.dcm")
    with pytest.raises(InputError, match=r"Legacy Converted Enhanced MR \(multi-frame\)"):
        select_series(folder)
