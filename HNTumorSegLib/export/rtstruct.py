"""DICOM RT Structure Set (RTSTRUCT) of a result, written with pydicom.

Choice: inside Slicer with SlicerRT installed, the clinician can also export the segmentation
through Slicer's DICOM export (SlicerRT's RTSTRUCT exporter; the segmentation already sits in
the source study for that). This module is the exporter that works everywhere else (and in
Slicer without SlicerRT): ``rt-utils`` pulls in OpenCV and is not maintained for pydicom 3, and
highdicom has no RTSTRUCT writer, so we write the IOD with pydicom (a maintained library) from
the PS3.3 C.8.8 modules: patient / study / series, Structure Set, ROI Contour, RT ROI Observations.

Contours: on every source slice, each label's mask is traced with marching squares
(``skimage.measure.find_contours`` at level 0.5 on the zero-padded slice), so a contour runs
half-way between inside and outside voxel centres; every closed line becomes one
``CLOSED_PLANAR`` contour in patient coordinates (LPS mm = DICOM's patient system) referencing
its slice. Holes come out as separate nested contours, to be read with the even-odd rule (as
SlicerRT and most planning systems do). ROI numbers are the labels (1 GTVp, 2 GTVn),
``RTROIInterpretedType`` ``GTV``, colours as the segments.

Example:
    >>> write_rtstruct(labels, sorted(Path("ct").glob("*.dcm")), "out/rtstruct.dcm")
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import __version__
from ..errors import InputError
from ..fileio import atomic_path
from ..image import Image, check_labels
from ..prompts.boxes import LABEL_NAMES
from ._dicom_source import match_series
from .codes import RGB

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_COPY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
         "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription")


def slice_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed contours (N, 2) in (row, col) voxel coordinates around a 2D mask (holes included)."""
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask2d, dtype=float), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c - 1.0  # undo the padding
        if np.allclose(c[0], c[-1]):
            c = c[:-1]  # DICOM closes the polygon itself
        if len(c) >= 3:
            out.append(c)
    return out


def _item(**kw):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def write_rtstruct(labels: Image, source_files: Iterable[str | os.PathLike], path: str | os.PathLike,
                   structure_set_label: str = "HNTumorSeg", series_number: int = 901) -> Path:
    """Write an RTSTRUCT of ``labels`` (0/1/2 on the source series' grid) to ``path``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    check_labels(labels)
    slices = match_series(labels, source_files)
    present = [v for v in LABEL_NAMES if np.any(labels.array == v)]
    if not present:
        raise InputError("the segmentation is empty", None, "segment at least one lesion before exporting RTSTRUCT")
    first = slices[0].dataset
    frame_uid = str(first.FrameOfReferenceUID)
    now = datetime.datetime.now()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for key in _COPY:
        setattr(ds, key, getattr(first, key, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = structure_set_label
    ds.InstanceNumber = 1
    ds.Manufacturer = "HNTumorSeg"
    ds.SoftwareVersions = __version__
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")

    contour_images = Sequence([_item(ReferencedSOPClassUID=s.dataset.SOPClassUID,
                                     ReferencedSOPInstanceUID=s.dataset.SOPInstanceUID) for s in slices])
    series_ref = _item(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=contour_images)
    study_ref = _item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",  # Detached Study Management (retired, customary)
                      ReferencedSOPInstanceUID=first.StudyInstanceUID,
                      RTReferencedSeriesSequence=Sequence([series_ref]))
    ds.ReferencedFrameOfReferenceSequence = Sequence([_item(FrameOfReferenceUID=frame_uid,
                                                            RTReferencedStudySequence=Sequence([study_ref]))])
    rois, contours, observations = [], [], []
    for label in present:
        rois.append(_item(ROINumber=label, ReferencedFrameOfReferenceUID=frame_uid, ROIName=LABEL_NAMES[label],
                          ROIGenerationAlgorithm="SEMIAUTOMATIC"))
        items = []
        for s in slices:
            for rc in slice_contours(labels.array[s.k] == label):
                ijk = np.column_stack([rc[:, 1], rc[:, 0], np.full(len(rc), float(s.k))])
                xyz = labels.index_to_physical(ijk)
                items.append(_item(ContourImageSequence=Sequence([_item(
                                       ReferencedSOPClassUID=s.dataset.SOPClassUID,
                                       ReferencedSOPInstanceUID=s.dataset.SOPInstanceUID)]),
                                   ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(xyz),
                                   ContourData=[f"{v:.4f}" for v in xyz.ravel()]))
        contours.append(_item(ReferencedROINumber=label, ROIDisplayColor=list(RGB[label]),
                              ContourSequence=Sequence(items)))
        observations.append(_item(ObservationNumber=label, ReferencedROINumber=label, RTROIInterpretedType="GTV",
                                  ROIInterpreter=""))
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def read_rtstruct_labels(path: str | os.PathLike, labels_grid: Image) -> Image:
    """Rasterise an RTSTRUCT written by :func:`write_rtstruct` back onto ``labels_grid`` (even-odd rule).

    For checks and for importing a reference drawn in a planning system: each contour is filled
    (voxel centres inside the polygon) and contours of one ROI on one slice are XOR-ed.
    """
    import pydicom
    from skimage.draw import polygon

    ds = pydicom.dcmread(str(path))
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out = np.zeros(labels_grid.array.shape, dtype=np.uint8)
    for roi in ds.ROIContourSequence:
        name = names.get(int(roi.ReferencedROINumber), "")
        label = next((v for v, n in LABEL_NAMES.items() if name.lower().startswith(n.lower())), None)
        if label is None:
            continue
        layer = np.zeros(out.shape, dtype=bool)
        for c in getattr(roi, "ContourSequence", []):
            pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
            ijk = labels_grid.physical_to_index(pts)
            k = int(round(float(ijk[:, 2].mean())))
            if not 0 <= k < out.shape[0]:
                continue
            rr, cc = polygon(ijk[:, 1], ijk[:, 0], shape=out.shape[1:])
            fill = np.zeros(out.shape[1:], dtype=bool)
            fill[rr, cc] = True
            layer[k] ^= fill
        out[layer] = label
    return labels_grid.with_array(out)
