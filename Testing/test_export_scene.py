"""Exports read back equal the segmentation: NIfTI (SimpleITK), DICOM SEG (highdicom, pydicom), RTSTRUCT, CSV.

The DICOM case is made here: a small MR series written with pydicom from a phantom T2, loaded
into a real vtkMRMLScene (slicer-core) from its folder, segmented with the phantom's label map,
then exported through the module's logic.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")
pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

import SimpleITK as sitk  # noqa: E402

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.export.dicom_seg import read_dicom_seg_labels  # noqa: E402
from HNTumorSegLib.export.rtstruct import read_rtstruct_labels  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.scene.inputs import load_image_node  # noqa: E402
from HNTumorSegLib.scene.logic import HNTumorSegLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402


def write_dicom_series(image: Image, folder: Path, modality: str = "MR") -> list[Path]:
    """One file per slice with the tags highdicom needs (patient, study, series, frame of reference, plane)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sop_class = "1.2.840.10008.5.1.4.1.1.4" if modality == "MR" else "1.2.840.10008.5.1.4.1.1.2"
    d = image.direction
    files = []
    for k in range(image.array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, modality
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "HNTS-1", "Phantom^One", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "", 1, k + 1, "phantom"
        ds.ImagePositionPatient = [float(v) for v in image.index_to_physical(np.array([0.0, 0.0, k]))]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
        ds.PixelSpacing = [float(image.spacing[1]), float(image.spacing[0])]
        ds.SliceThickness = float(image.spacing[2])
        ds.Rows, ds.Columns = image.array.shape[1], image.array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(image.array[k].astype(np.int16)).tobytes()
        path = folder / f"slice_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    from HNTumorSegLib.phantoms import make_prert_case

    case = make_prert_case(seed=3, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
    folder = tmp_path_factory.mktemp("dicom") / "T2"
    files = write_dicom_series(case["T2"], folder)
    app = make_scene()
    node = load_image_node(app.scene, folder, name="T2")
    grid = image_from_volume_node(node)
    labels = grid.with_array(case["mask"].array.astype(np.uint8))
    assert set(np.unique(labels.array)) == {0, 1, 2}
    seg = import_label_map(app.scene, labels, node)
    return app, node, seg, labels, files


def test_loaded_dicom_series_keeps_geometry_and_files(dicom_case):
    _, node, _, labels, files = dicom_case
    assert sorted(node.GetAttribute("HNTumorSeg.SourceFiles").split("|")) == sorted(str(f) for f in files)
    ds = pydicom.dcmread(files[0])
    np.testing.assert_allclose(labels.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)


def test_all_exports_read_back_equal_the_segmentation(dicom_case, tmp_path):
    app, node, seg, labels, files = dicom_case
    out = HNTumorSegLogic(app.scene).export(seg, node, tmp_path, formats=("nifti", "dicom_seg", "rtstruct", "csv"),
                                            basename="case1")
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
        HNTumorSegLogic(app.scene).export(seg, node, tmp_path / "out", formats=("dicom_seg",))
    with pytest.raises(InputError, match="NIfTI file name"):
        from HNTumorSegLib.export.nifti import write_label_nifti

        write_label_nifti(labels, tmp_path / "x.nrrd")
