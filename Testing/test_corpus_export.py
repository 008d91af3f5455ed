"""`hntumorseg export` on every series of the real-file corpus that can be a source (issue 25).

For each *source* entry of ``Testing/corpus/index.json`` a label map on the series' grid (a GTVp
ring, its hole forcing a keyhole contour, and a GTVn block, on every slice) is exported by the
real command in a child process, SEG and RTSTRUCT at once, with the series chosen by the label
map's grid (the folders hold other series, RTSTRUCTs, a DICOMDIR). Then:

* dicom3tools' dciodvfy reports 0 errors on both objects;
* highdicom reads the SEG back onto the source's slices: exactly the label map;
* plastimatch rasterises the RTSTRUCT (keyhole contours) onto the series: Dice >= 0.99 per label;
* both keep the source's Patient / General Study elements, its frame of reference, and its
  patient name - the same characters, and the same bytes whenever the object declares the
  source's character set.

The entries that wait for the export fix of issue 25 (empty and ISO 2022 character sets) are
marked so in the index and assert the correct behaviour all the same. The derived entries
(grafted character sets, re-encoded transfer syntaxes) run under ``-m slow``, except one of each
(ISO 2022 Japanese; RLE).
"""

from __future__ import annotations

import subprocess
import sys

import corpus_lib
import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
hd = require_module("highdicom")

from dicom_testlib import dciodvfy, dice, plastimatch_labels  # noqa: E402

from HNTumorSegLib.dicom.read import read_dicom_folder  # noqa: E402
from HNTumorSegLib.dicom.select import select_series  # noqa: E402
from HNTumorSegLib.export._dicom_source import PATIENT_STUDY_KEYWORDS  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402

#: derived entries run in the default run (one character set, one compressed syntax); the rest is slow
DEFAULT_DERIVED = {"charset-chrH31", "ts-rle"}


def _params():
    out = []
    for e in corpus_lib.entries("source"):
        slow = e["origin"] == "derived" and e["id"] not in DEFAULT_DERIVED
        out.append(pytest.param(e["id"], marks=[pytest.mark.slow] if slow else [], id=e["id"]))
    return out


def label_map_on(grid: Image) -> Image:
    """GTVp: a square ring (its hole needs a keyhole contour); GTVn: a block; on every slice."""
    _, ny, nx = grid.array.shape
    a = np.zeros(grid.array.shape, np.uint8)
    y0, y1, x0, x1 = ny // 8, ny // 2, nx // 8, nx // 2
    a[:, y0:y1 + 1, x0:x1 + 1] = 1
    a[:, y0 + max(1, (y1 - y0) // 4):y1 + 1 - max(1, (y1 - y0) // 4),
      x0 + max(1, (x1 - x0) // 4):x1 + 1 - max(1, (x1 - x0) // 4)] = 0
    a[:, 5 * ny // 8:7 * ny // 8 + 1, 5 * nx // 8:7 * nx // 8 + 1] = 2
    return grid.with_array(a)


def _charset(ds) -> tuple[str, ...]:
    value = ds.get("SpecificCharacterSet", "") or ""
    values = [value] if isinstance(value, str) else list(value)
    return tuple(v.strip() for v in values) if any(v.strip() for v in values) else ()


def _empty_optional_sequence(element) -> bool:
    """A sequence of no items where the standard asks for 1-n or absence (Philips' empty
    ProcedureCodeSequence): it says nothing, and copying it is a dciodvfy error, so it may be left out."""
    return element.VR == "SQ" and len(element.value) == 0


def _seg_labels(seg_path, geometry) -> np.ndarray:
    """The SEG as a label map (by segment label) on the source's slices, read by highdicom."""
    seg = hd.seg.segread(str(seg_path))
    uids = [str(h.SOPInstanceUID) for h in geometry.headers]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                               relabel=False)
    ours = {"GTVp": 1, "GTVn": 2}
    out = np.zeros(pixels.shape, np.uint8)
    for s in seg.SegmentSequence:
        out[pixels == int(s.SegmentNumber)] = ours[s.SegmentLabel]
    return out


def _geometry_only(geometry, folder):
    """The source series alone (plastimatch reads one series), its pixels zeroed and uncompressed:
    plastimatch 1.9 drops the last slice of an RLE / JPEG compressed reference CT (Dice 0.89 with
    the very RTSTRUCT that scores 1.0 on the uncompressed series), and it needs only the geometry."""
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir()
    for i, f in enumerate(geometry.files):
        ds = pydicom.dcmread(f)
        ds.PixelData = bytes(int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8)
        ds["PixelData"].VR = "OW"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{i:04d}.dcm", implicit_vr=False, little_endian=True)
    return folder


@pytest.mark.parametrize("entry_id", _params())
def test_corpus_series_exports_valid_seg_and_rtstruct(entry_id, tmp_path):
    e = corpus_lib.entry(entry_id)
    folder = corpus_lib.materialise(entry_id, tmp_path)
    grid = read_dicom_folder(folder, series_uid=e.get("series_uid"))
    labels = label_map_on(grid)
    labels_path = write_image(labels, tmp_path / "labels.nii.gz")
    geometry = select_series(folder, labels=labels)          # the series the command will choose
    out = tmp_path / "out"
    rt, seg = out / "rtstruct.dcm", out / "seg.dcm"
    run = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "export", "--labels", str(labels_path),
                          "--source", str(folder), "--rtstruct", str(rt), "--seg", str(seg), "--holes", "keyhole"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr, run.stderr[-3000:]

    for path in (rt, seg):
        errors, _ = dciodvfy(path)
        assert errors == [], f"{path.name}: {errors}"

    source = pydicom.dcmread(geometry.files[0], stop_before_pixels=True)
    for path in (rt, seg):
        written = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in PATIENT_STUDY_KEYWORDS:
            if keyword in source and not _empty_optional_sequence(source[keyword]):
                assert written[keyword].value == source[keyword].value, f"{path.name}: {keyword}"
        assert str(written.get("PatientName", "")) == str(source.get("PatientName", "")), path.name
        if _charset(written) == _charset(source):
            ours, theirs = corpus_lib.raw_patient_name(path), corpus_lib.raw_patient_name(geometry.files[0])
            assert ours.rstrip(b" ") == theirs.rstrip(b" "), f"{path.name}: name bytes changed"  # spaces: padding
    rt_ds, seg_ds = pydicom.dcmread(rt, stop_before_pixels=True), pydicom.dcmread(seg, stop_before_pixels=True)
    assert rt_ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg_ds.FrameOfReferenceUID == source.FrameOfReferenceUID

    np.testing.assert_array_equal(_seg_labels(seg, geometry), labels.array)

    reference = _geometry_only(geometry, tmp_path / "series_only")
    by_name = plastimatch_labels(rt, reference, labels, tmp_path / "plastimatch")
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        score = dice(by_name[name], labels.array == value)
        assert score >= 0.99, f"{entry_id} {name}: plastimatch Dice {score:.4f}"


def test_rtstruct_of_another_tool_is_read_onto_its_ct_and_exported(tmp_path):
    """rt-utils' RTSTRUCT given as --labels (structure named by --structures) becomes a valid SEG on its CT."""
    e = corpus_lib.entries("contours")[0]
    folder = corpus_lib.materialise(e["id"], tmp_path)
    seg = tmp_path / "out" / "seg.dcm"
    run = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "export", "--labels", str(folder / e["labels"]),
                          "--reference", str(folder), "--structures", e["structures"], "--source", str(folder),
                          "--seg", str(seg)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert dciodvfy(seg)[0] == []
    geometry = select_series(folder)
    back = _seg_labels(seg, geometry)
    assert set(np.unique(back)) == {0, 1}
    assert (back == 1).sum() > 100                   # rt-utils' ROI-1 on the first slice
