"""SEG and RTSTRUCT from sources with an empty or ISO 2022 SpecificCharacterSet (issue 25, defects 1-2).

Scanners write an empty SpecificCharacterSet (dcmqi's ct-3slice GE CT); Japanese and Korean sites
the ISO 2022 form with an empty value 1 (pydicom's chrH31, chrKoreanMulti). highdicom refused both
(a traceback, and the RTSTRUCT of the same export lost with it); the RTSTRUCT copied the empty
value (a dciodvfy error). Here the names and character sets are grafted onto a phantom CT series:
the objects we write keep the names' bytes exactly and declare a valid character set.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
require_module("highdicom")

from dicom_testlib import dciodvfy  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402


def _case(tmp_path, charset, patient_name):
    """A 4-slice CT series whose files declare ``charset`` and carry ``patient_name`` (a
    PersonName with its original bytes, or a str), and a label map on its grid."""
    ct = Image(np.full((4, 24, 24), -50, np.int16), (1.0, 1.0, 2.0), (-12.0, -12.0, 0.0))
    folder = tmp_path / "ct"
    for f in write_dicom_series(ct, folder, "CT"):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = charset
        ds.PatientName = patient_name
        ds.save_as(f)
    labels = np.zeros(ct.array.shape, np.uint8)
    labels[1:3, 4:10, 4:10] = 1
    labels[2, 14:18, 14:18] = 2
    return write_image(ct.with_array(labels), tmp_path / "labels.nii.gz"), folder


def _raw(path, keyword):
    ds = pydicom.dcmread(path)
    return ds.get_item(keyword).value, ds


def _charset_source(name):
    from pydicom.data import get_charset_files

    return pydicom.dcmread(get_charset_files(name)[0])


def _export(tmp_path, labels, folder, capsys):
    out = tmp_path / "out"
    code = main(["export", "--labels", str(labels), "--source", str(folder),
                 "--rtstruct", str(out / "rt.dcm"), "--seg", str(out / "seg.dcm")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""   # no highdicom UserWarning with its source line on success (defect 5)
    return out / "rt.dcm", out / "seg.dcm"


@pytest.mark.parametrize("source_name", ["chrH31.dcm", "chrH32.dcm", "chrKoreanMulti.dcm", "chrX1.dcm"])
def test_names_are_kept_byte_identical(tmp_path, capsys, source_name):
    src = _charset_source(source_name)
    labels, folder = _case(tmp_path, src.SpecificCharacterSet, src.PatientName)
    source_bytes, _ = _raw(next(folder.glob("*.dcm")), "PatientName")
    for path in _export(tmp_path, labels, folder, capsys):
        raw, ds = _raw(path, "PatientName")
        assert raw.rstrip(b" ") == source_bytes.rstrip(b" "), path.name
        assert list(ds.SpecificCharacterSet) == list(src.SpecificCharacterSet)
        assert str(ds.PatientName) == str(src.PatientName)
        errors, _ = dciodvfy(path)
        assert errors == [], (path.name, errors)


def test_empty_character_set_becomes_the_default_repertoire(tmp_path, capsys):
    labels, folder = _case(tmp_path, "", "JANCT000")
    for path in _export(tmp_path, labels, folder, capsys):
        raw, ds = _raw(path, "PatientName")
        assert raw.rstrip(b" ") == b"JANCT000"
        assert "SpecificCharacterSet" not in ds, path.name
        errors, _ = dciodvfy(path)
        assert errors == [], (path.name, errors)   # the RTSTRUCT had 1 error (empty type 1C value)


def test_empty_character_set_with_non_ascii_names_declares_utf8(tmp_path, capsys):
    """Latin-1 bytes under an empty character set: the same characters, declared as ISO_IR 192."""
    labels, folder = _case(tmp_path, "", "placeholder")
    for f in folder.glob("*.dcm"):   # the raw bytes a mislabelled scanner writes (no charset declared)
        data = f.read_bytes().replace(b"placeholder ", b"M\xfcller^J\xf6rg ")
        f.write_bytes(data)
    for path in _export(tmp_path, labels, folder, capsys):
        _, ds = _raw(path, "PatientName")
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "Müller^Jörg"
        errors, _ = dciodvfy(path)
        assert errors == [], (path.name, errors)


def test_unknown_character_set_is_refused_before_writing(tmp_path, capsys):
    labels, folder = _case(tmp_path, "ISO_IR 999", "DOE^JOHN")
    out = tmp_path / "out"
    code = main(["export", "--labels", str(labels), "--source", str(folder), "--seg", str(out / "seg.dcm")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ISO_IR 999" in err[0] and "not a DICOM character set" in err[0], err
    assert not out.exists()


def test_a_format_failing_keeps_the_others(tmp_path, capsys, monkeypatch):
    """A library error in one format: the RTSTRUCT is still written, one line names both, exit 1."""
    import HNTumorSegLib.export.dicom_seg as dicom_seg

    labels, folder = _case(tmp_path, "ISO_IR 100", "DOE^JOHN")

    def broken(*args, **kwargs):
        raise ValueError("'' is not a valid SpecificCharacterSetValues")

    monkeypatch.setattr(dicom_seg, "write_dicom_seg", broken)
    out = tmp_path / "out"
    code = main(["export", "--labels", str(labels), "--source", str(folder),
                 "--rtstruct", str(out / "rt.dcm"), "--seg", str(out / "seg.dcm")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "SEG could not be written" in err[0] and "RTSTRUCT was written" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["rt.dcm"]   # no temporary file left
    assert pydicom.dcmread(out / "rt.dcm").Modality == "RTSTRUCT"


def _mr_case(tmp_path, charset):
    from HNTumorSegLib.phantoms import make_prert_case

    case = make_prert_case(seed=3, shape=(4, 32, 32))
    folder = tmp_path / "study" / "T2"
    for f in write_dicom_series(case["T2"], folder, modality="MR"):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = charset
        ds.save_as(f)
    return case, folder


def test_segment_refuses_an_unknown_character_set_before_the_worker(tmp_path, capsys):
    """``segment --seg`` checks the source's character set before inference (it crashed after it)."""
    from HNTumorSegLib.commands.export import DicomOutputs
    from HNTumorSegLib.errors import InputError
    from HNTumorSegLib.pipeline.request import SegmentRequest

    _, folder = _mr_case(tmp_path, "ISO_IR 999")
    out = tmp_path / "out"
    request = SegmentRequest(model="demo-midrt", input_paths={"T2": str(folder)}, output_path=str(out / "l.nii.gz"))
    with pytest.raises(InputError, match="ISO_IR 999.*not a DICOM character set"):
        DicomOutputs.plan(request, None, str(out / "seg.dcm"))   # segment calls it before starting the worker
    assert not out.exists()


def test_segment_outputs_on_an_empty_character_set(tmp_path):
    """What ``segment --rtstruct --seg`` writes after the run, on a source with an empty character set."""
    from HNTumorSegLib.commands.export import DicomOutputs
    from HNTumorSegLib.pipeline.request import SegmentRequest

    case, folder = _mr_case(tmp_path, "")
    out = tmp_path / "out"
    request = SegmentRequest(model="demo-midrt", input_paths={"T2": str(folder)}, output_path=str(out / "l.nii.gz"))
    plan = DicomOutputs.plan(request, str(out / "rt.dcm"), str(out / "seg.dcm"))
    write_image(case["mask"], request.output_path)      # (the run's label map)
    written = plan.write(request.output_path)
    assert set(written) == {"rtstruct", "seg"}
    for path in written.values():
        assert "SpecificCharacterSet" not in pydicom.dcmread(path)
        errors, _ = dciodvfy(path)
        assert errors == [], (path.name, errors)
