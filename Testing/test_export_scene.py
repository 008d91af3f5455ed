"""Exports read back equal the segmentation: NIfTI (SimpleITK), DICOM SEG (highdicom, pydicom), RTSTRUCT, CSV.

The DICOM case is made here: a small conformant MR series (dciodvfy-clean, written by
:mod:`HNTumorSegLib.phantoms.dicom_series`), loaded into a real vtkMRMLScene (slicer-core)
from its folder by series, segmented with the phantom's label map, then exported through the
module's logic; the last test's folder also holds a README and an earlier RTSTRUCT.
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")
pydicom = require_module("pydicom")
hd = require_module("highdicom")

import SimpleITK as sitk  # noqa: E402

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.export.dicom_seg import read_dicom_seg_labels  # noqa: E402
from HNTumorSegLib.export.rtstruct import read_rtstruct_labels  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402
from HNTumorSegLib.scene.inputs import load_image_node  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    from HNTumorSegLib.phantoms import make_prert_case

    case = make_prert_case(seed=3, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
    folder = tmp_path_factory.mktemp("dicom") / "T2"
    files = write_dicom_series(case["T2"], folder, "MR")
    app = make_scene()
    node = load_image_node(app.scene, folder, name="T2")
    grid = image_from_volume_node(node)
    labels = grid.with_array(case["mask"].array.astype(np.uint8))
    assert set(np.unique(labels.array)) == {0, 1, 2}
    seg = import_label_map(app.scene, labels, node)
    return app, node, seg, labels, files


def test_loaded_dicom_series_keeps_geometry_and_files(dicom_case):
    _, node, _, labels, files = dicom_case
    assert node.GetAttribute("HNTumorSeg.SourceFiles").split("|") == [str(f) for f in files]
    ds = pydicom.dcmread(files[0])
    np.testing.assert_allclose(labels.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)


def test_all_exports_read_back_equal_the_segmentation(dicom_case, tmp_path):
    app, node, seg, labels, files = dicom_case
    out = SegmentationSceneLogic(app.scene).export(seg, node, tmp_path,
                                                   formats=("nifti", "dicom_seg", "rtstruct", "csv"), basename="case1")
    # NIfTI through SimpleITK: same voxels, same grid, uint8 0/1/2
    nii = sitk.ReadImage(str(out["nifti"]))
    assert nii.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nii), labels.array)
    np.testing.assert_allclose(nii.GetOrigin(), labels.origin, atol=1e-4)
    np.testing.assert_allclose(nii.GetSpacing(), labels.spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(nii.GetDirection(), (3, 3)), labels.direction, atol=1e-6)

    # DICOM SEG through highdicom: voxel for voxel, and its codes
    back = read_dicom_seg_labels(out["dicom_seg"], labels, files)
    np.testing.assert_array_equal(back.array, labels.array)
    ds = pydicom.dcmread(out["dicom_seg"])
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    segs = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    assert segs[1].SegmentLabel == "GTVp" and segs[2].SegmentLabel == "GTVn"
    assert segs[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "372087000"
    assert segs[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "14799000"
    assert segs[1].AnatomicRegionSequence[0].CodeValue == "774007"
    for number, rgb in ((1, (227, 66, 51)), (2, (31, 158, 191))):  # the segments' colours, as CIELab
        lab = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in segs[number].RecommendedDisplayCIELabValue))
        assert lab.to_rgb() == rgb
    assert ds.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    # ... and frame by frame with plain pydicom: each frame's referenced slice holds that segment's voxels
    uid_to_k = {pydicom.dcmread(f).SOPInstanceUID: k for k, f in enumerate(sorted(files))}
    pixels = ds.pixel_array.reshape(-1, *labels.array.shape[1:])
    rebuilt = np.zeros_like(labels.array)
    for frame, item in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        src = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        rebuilt[uid_to_k[src]][frame > 0] = number
    np.testing.assert_array_equal(rebuilt, labels.array)

    # RTSTRUCT through pydicom, filled back with the even-odd rule
    rt = pydicom.dcmread(out["rtstruct"])
    assert rt.Modality == "RTSTRUCT"
    assert [r.ROIName for r in rt.StructureSetROISequence] == ["GTVp", "GTVn"]
    np.testing.assert_array_equal(read_rtstruct_labels(out["rtstruct"], labels).array, labels.array)

    # statistics CSV: segment volumes equal voxel counts x voxel volume
    rows = list(csv.DictReader(open(out["csv"], newline="")))
    voxel_ml = np.prod(labels.spacing) / 1000
    for row in rows[:2]:
        count = int((labels.array == int(row["label"])).sum())
        assert int(row["voxels"]) == count
        np.testing.assert_allclose(float(row["volume_ml"]), count * voxel_ml, rtol=1e-5)
    assert sum(int(r["voxels"]) for r in rows if r["kind"] == "lesion") == int((labels.array > 0).sum())


def test_dicom_export_refused_for_a_nifti_input(tmp_path):
    app = make_scene()
    img = Image(np.zeros((3, 4, 5), np.float32))
    from HNTumorSegLib.image import write_image

    path = write_image(img, tmp_path / "t2.nii.gz")
    node = load_image_node(app.scene, path)
    labels = img.with_array(np.pad(np.ones((1, 2, 2), np.uint8), ((1, 1), (1, 1), (1, 2))))
    seg = import_label_map(app.scene, labels, node)
    with pytest.raises(InputError, match="not loaded from DICOM"):
        SegmentationSceneLogic(app.scene).export(seg, node, tmp_path / "out", formats=("dicom_seg",))
    with pytest.raises(InputError, match="NIfTI file name"):
        from HNTumorSegLib.export.nifti import write_label_nifti

        write_label_nifti(labels, tmp_path / "x.nrrd")


def test_folder_with_other_files_loads_and_exports_its_image_series(tmp_path):
    """A README and an earlier RTSTRUCT beside the MR: load by series, export on it only."""
    from HNTumorSegLib.phantoms import make_prert_case

    case = make_prert_case(seed=4, shape=(8, 32, 32), spacing=(1.5, 1.5, 3.0), n_nodes=1)
    folder = tmp_path / "study"
    files = write_dicom_series(case["T2"], folder, "MR", prefix="MR")
    (folder / "README").write_text("not DICOM")
    app = make_scene()
    node = load_image_node(app.scene, folder, name="T2")
    labels = image_from_volume_node(node).with_array(case["mask"].array.astype(np.uint8))
    seg = import_label_map(app.scene, labels, node)
    first = SegmentationSceneLogic(app.scene).export(seg, node, tmp_path / "a", formats=("rtstruct",), basename="c")
    shutil.copy(first["rtstruct"], folder / "old_rtstruct.dcm")  # an earlier export now lies in the folder
    node2 = load_image_node(app.scene, folder, name="T2 again")
    assert node2.GetAttribute("HNTumorSeg.SourceFiles").split("|") == [str(f) for f in files]
    out = SegmentationSceneLogic(app.scene).export(seg, node2, tmp_path / "b", formats=("dicom_seg", "rtstruct"),
                                            basename="c", holes="keyhole")
    np.testing.assert_array_equal(read_dicom_seg_labels(out["dicom_seg"], labels, files).array, labels.array)
    np.testing.assert_array_equal(read_rtstruct_labels(out["rtstruct"], labels).array, labels.array)
    # source files of two series (what "every file in the folder" was) are refused before anything is written
    other = write_dicom_series(case["T2"], tmp_path / "other", "MR")
    with pytest.raises(InputError, match="belong to 2 series"):
        SegmentationSceneLogic(app.scene).export(seg, node2, tmp_path / "c", formats=("nifti", "rtstruct"),
                                          source_files=files + other)
    assert not (tmp_path / "c" / "c_gtv.nii.gz").exists()
