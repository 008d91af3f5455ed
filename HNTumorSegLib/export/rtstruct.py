"""DICOM RT Structure Set (RTSTRUCT) of a result, written with pydicom; 0 errors from ``dciodvfy``.

Choice: inside Slicer with SlicerRT installed, the clinician can also export the segmentation
through Slicer's DICOM export (SlicerRT's RTSTRUCT exporter; the segmentation already sits in
the source study for that). This module is the exporter that works everywhere else (and in
Slicer without SlicerRT): ``rt-utils`` pulls in OpenCV and is not maintained for pydicom 3, and
highdicom has no RTSTRUCT writer, so we write the IOD with pydicom (a maintained library) from
the PS3.3 A.19 modules: Patient, General Study, Patient Study (copied exactly from the source,
with its ``SpecificCharacterSet``: :func:`._dicom_source.copy_identity`), RT Series (with
``OperatorsName``), General Equipment, Frame of Reference, Structure Set, ROI Contour, RT ROI
Observations, SOP Common.

Contours (:mod:`.contours`): on every source slice, one ``CLOSED_PLANAR`` contour per island
in patient coordinates (LPS mm = DICOM's patient system), each referencing its image; holes
as nested contours read with the even-odd rule (default) or, with ``holes="keyhole"``, joined
to their island by a zero-width cut so each island is one contour. A one-voxel lesion is
kept (a small diamond around the voxel centre). ROI numbers are the labels (1 GTVp, 2 GTVn),
``RTROIInterpretedType`` ``GTV``, colours as the segments, and the radiotherapy target codes
(DCM 130052 "GTV Primary" / 130051 "GTV Nodal", CID 9534) in ``RTROIIdentificationCodeSequence``
(see :mod:`.codes`).

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> labels = case["mask"]                                     # labels 0/1/2 on the T2 grid
    >>> _ = write_dicom_series(case["T2"], "mr", modality="MR")  # the T2 as the source DICOM series
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> write_rtstruct(labels, select_series("mr/", labels=labels), "out/rtstruct.dcm", holes="keyhole")
    PosixPath('out/rtstruct.dcm')
    >>> import pydicom
    >>> [roi.ROIName for roi in pydicom.dcmread("out/rtstruct.dcm").StructureSetROISequence]
    ['GTVp', 'GTVn']
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import LABEL_NAMES, __version__
from ..dicom.geometry import SeriesGeometry
from ..errors import InputError
from ..fileio import atomic_path
from ..image import Image, check_labels
from ..vocab import HoleStyle
from ._dicom_source import copy_identity, match_series
from .codes import RGB, RT_TYPES
from .contours import island_contours

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
DETACHED_STUDY_CLASS = "1.2.840.10008.3.1.2.3.1"  # retired, but what planning systems expect here


def slice_contours(mask2d: np.ndarray, holes: str = "nested") -> list[np.ndarray]:
    """Closed contours (N, 2) in (row, col) voxel coordinates around a 2D mask (see :mod:`.contours`)."""
    return island_contours(mask2d, holes=holes)


def _item(**kw):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _code_item(code: tuple[str, str, str]):
    scheme, value, meaning = code
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _ds(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def write_rtstruct(labels: Image, source: SeriesGeometry | Iterable[str | os.PathLike], path: str | os.PathLike,
                   structure_set_label: str = "HNTumorSeg", series_number: int = 901, holes: str = "nested",
                   operator: str = "", algorithm: str = "SEMIAUTOMATIC") -> Path:
    """Write an RTSTRUCT of ``labels`` (0/1/2 on the source series' grid) to ``path``.

    ``source``: the checked source series (:func:`HNTumorSegLib.dicom.select.select_series`) or
    its files. ``holes``: ``"nested"`` or ``"keyhole"``. ``operator``: OperatorsName (may be empty).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    holes = HoleStyle.parse(holes, "hole style")
    check_labels(labels)
    slices = match_series(labels, source)
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
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    copy_identity(first, ds)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = structure_set_label
    ds.SeriesDate, ds.SeriesTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.OperatorsName = operator
    ds.Manufacturer = "HNTumorSeg"
    ds.ManufacturerModelName = "HNTumorSeg"
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "") or ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetName = structure_set_label[:64]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime

    contour_images = Sequence([_item(ReferencedSOPClassUID=s.dataset.SOPClassUID,
                                     ReferencedSOPInstanceUID=s.dataset.SOPInstanceUID) for s in slices])
    series_ref = _item(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=contour_images)
    study_ref = _item(ReferencedSOPClassUID=DETACHED_STUDY_CLASS, ReferencedSOPInstanceUID=first.StudyInstanceUID,
                      RTReferencedSeriesSequence=Sequence([series_ref]))
    ds.ReferencedFrameOfReferenceSequence = Sequence([_item(FrameOfReferenceUID=frame_uid,
                                                            RTReferencedStudySequence=Sequence([study_ref]))])
    rois, contours, observations = [], [], []
    for label in present:
        rois.append(_item(ROINumber=label, ReferencedFrameOfReferenceUID=frame_uid, ROIName=LABEL_NAMES[label],
                          ROIGenerationAlgorithm=algorithm))
        items = []
        for s in slices:
            for rc in island_contours(labels.array[s.k] == label, holes=holes):
                ijk = np.column_stack([rc[:, 1], rc[:, 0], np.full(len(rc), float(s.k))])
                xyz = labels.index_to_physical(ijk)
                items.append(_item(ContourImageSequence=Sequence([_item(
                                       ReferencedSOPClassUID=s.dataset.SOPClassUID,
                                       ReferencedSOPInstanceUID=s.dataset.SOPInstanceUID)]),
                                   ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(xyz),
                                   ContourNumber=len(items) + 1,
                                   ContourData=[_ds(v) for v in xyz.ravel()]))
        contours.append(_item(ReferencedROINumber=label, ROIDisplayColor=list(RGB[label]),
                              ContourSequence=Sequence(items)))
        observations.append(_item(ObservationNumber=label, ReferencedROINumber=label,
                                  RTROIIdentificationCodeSequence=Sequence([_code_item(RT_TYPES[label])]),
                                  RTROIInterpretedType="GTV", ROIInterpreter=""))
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
