"""RTSTRUCT holes and islands: nested (even-odd) by default, keyhole on request; one contour per
island per plane; a one-voxel lesion kept. Read back by plastimatch and by our even-odd reader."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
require_module("skimage")

from dicom_testlib import dciodvfy, dice, plastimatch_labels  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.select import select_series  # noqa: E402
from HNTumorSegLib.export.contours import island_contours  # noqa: E402
from HNTumorSegLib.export.rtstruct import read_rtstruct_labels, write_rtstruct  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402


def _ring_case(tmp_path):
    """A CT series with a GTVp ring (hole inside, and an island inside the hole), a GTVn of two
    islands on one plane and a one-voxel GTVn lesion on another plane."""
    ct = Image(np.full((6, 32, 32), -50, np.int16), (1.0, 1.0, 2.0), (-16.0, -16.0, 0.0))
    folder = tmp_path / "ct"
    write_dicom_series(ct, folder, "CT")
    labels = np.zeros(ct.array.shape, np.uint8)
    for k in (1, 2, 3):
        labels[k, 4:20, 4:20] = 1
        labels[k, 8:16, 8:16] = 0  # the hole
        labels[k, 11:13, 11:13] = 1  # an island inside the hole
    labels[2, 24:28, 2:6] = 2
    labels[2, 24:28, 9:12] = 2  # second island of GTVn on plane 2
    labels[4, 26, 26] = 2  # one-voxel lesion
    return ct.with_array(labels), folder


def test_contours_per_island_and_hole_styles():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5:9, 5:9] = False
    mask[15, 15] = True
    nested = island_contours(mask, holes="nested")
    keyhole = island_contours(mask, holes="keyhole")
    assert len(nested) == 3  # ring outer, ring hole, single voxel
    assert len(keyhole) == 2  # ring as one keyhole contour, single voxel
    single = [c for c in keyhole if np.abs(c - [15, 15]).max() <= 0.5]
    assert len(single) == 1 and len(single[0]) == 4  # a diamond around the voxel centre


@pytest.mark.parametrize("holes", ["nested", "keyhole"])
def test_rtstruct_holes_read_back(holes, tmp_path):
    labels, folder = _ring_case(tmp_path)
    path = write_rtstruct(labels, select_series(folder, labels=labels), tmp_path / f"rt_{holes}.dcm", holes=holes)
    errors, _ = dciodvfy(path)
    assert errors == []
    rt = pydicom.dcmread(path)
    by_roi = {int(r.ReferencedROINumber): r.ContourSequence for r in rt.ROIContourSequence}
    per_plane = {}
    for item in by_roi[1]:
        uid = item.ContourImageSequence[0].ReferencedSOPInstanceUID
        per_plane[uid] = per_plane.get(uid, 0) + 1
    # ring plane: outer + hole + inner island (nested); keyholed ring + inner island (keyhole)
    assert set(per_plane.values()) == {3 if holes == "nested" else 2}
    assert len(by_roi[2]) == 3  # two islands on plane 2 and the one-voxel lesion: one contour each
    # our even-odd reader: exact for both styles
    np.testing.assert_array_equal(read_rtstruct_labels(path, labels).array, labels.array)
    # plastimatch: exact with keyholes; with nested contours it fills holes (why keyhole exists)
    masks = plastimatch_labels(path, folder, labels, tmp_path / f"pl_{holes}")
    assert dice(masks["GTVn"], labels.array == 2) == 1.0  # islands and the one-voxel lesion kept
    gtvp = dice(masks["GTVp"], labels.array == 1)
    if holes == "keyhole":
        assert gtvp == 1.0
    else:
        assert gtvp >= 0.8


def test_export_command_holes_option(tmp_path, capsys):
    labels, folder = _ring_case(tmp_path)
    labels_path = write_image(labels, tmp_path / "labels.nii.gz")
    out = tmp_path / "out" / "rt.dcm"
    assert main(["export", "--labels", str(labels_path), "--source", str(folder), "--rtstruct", str(out),
                 "--holes", "Keyhole"]) == 0
    assert len(pydicom.dcmread(out).ROIContourSequence[0].ContourSequence) == 6  # 2 per ring plane
    assert main(["export", "--labels", str(labels_path), "--source", str(folder), "--rtstruct",
                 str(tmp_path / "out" / "rt2.dcm"), "--holes", "keyhol"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean keyhole" in err[0]
    assert not (tmp_path / "out" / "rt2.dcm").exists()


def test_export_is_all_or_nothing_and_keeps_an_earlier_rtstruct(tmp_path, monkeypatch):
    """When the SEG fails after the RTSTRUCT was written, the earlier RTSTRUCT at the same path
    stays byte-identical and no temporary file is left (issue 11: a set of outputs is committed
    all or nothing)."""
    import HNTumorSegLib.export.dicom_seg as dicom_seg
    from HNTumorSegLib.commands.export import export_dicom

    labels, folder = _ring_case(tmp_path)
    labels_path = write_image(labels, tmp_path / "labels.nii.gz")
    out = tmp_path / "out"
    written = export_dicom(labels_path, folder, rtstruct=out / "rt.dcm", seg=out / "seg.dcm")
    assert set(written) == {"rtstruct", "seg"}
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_seg(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dicom_seg, "write_dicom_seg", broken_seg)
    from HNTumorSegLib.errors import EnvironmentFault

    # a full disk is an environment fault (exit 1) naming the user's file, not the hidden temp
    with pytest.raises(EnvironmentFault, match="seg.dcm"):
        export_dicom(labels_path, folder, rtstruct=out / "rt.dcm", seg=out / "seg.dcm", holes="keyhole")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
