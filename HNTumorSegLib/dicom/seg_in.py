"""A DICOM SEG read as GTVp/GTVn voxels on the grid of its source series (segments in).

A SEG stores binary (or fractional, or label-map) frames, one per segment and slice, usually
only the non-empty ones, in any order. Each frame is placed by its own geometry - the
``PlanePositionSequence`` of its per-frame functional group, the orientation and pixel spacing
of the shared (or per-frame) groups - never by its index: the frame's first pixel must fall on
a voxel of the grid with ``i = j = 0`` and an integer slice ``k`` (within :data:`ALIGN_TOL`
voxel), its rows and columns along the grid's. Which segment a frame holds comes from its
``SegmentIdentificationSequence`` (``LABELMAP`` SEGs store segment numbers as pixel values).
A fractional frame counts where it is at least half its maximum. Reading the pixels is
pydicom's (bit-packed binary frames unpacked; compressed transfer syntaxes through its handlers).

Why not read the frames as label values: a binary SEG's frames hold 0/1 (or 0/255 once
converted by some tools), which read as a label map gave "labels [255] outside {0,1,2}".

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> from HNTumorSegLib.export.dicom_seg import write_dicom_seg
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> import pydicom
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> _ = write_dicom_series(case["T2"], "mr", modality="MR")
    >>> source = select_series("mr")
    >>> _ = write_dicom_seg(case["mask"], source, "seg.dcm")
    >>> out = place_segments(pydicom.dcmread("seg.dcm"), source.grid, {1: 1, 2: 2}, "seg.dcm")
    >>> bool((out == case["mask"].array).all())
    True
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..image import Image
from .structures import Structure

ALIGN_TOL = 0.1   # voxels


def seg_structures(ds) -> list[Structure]:
    """The segments of a SEG dataset as :class:`Structure` (label, type codes)."""
    out = []
    for d in getattr(ds, "SegmentSequence", []):
        number = int(d.SegmentNumber)
        codes = [str(c.get("CodeValue", "")) for c in getattr(d, "SegmentedPropertyTypeCodeSequence", [])]
        name = str(d.get("SegmentLabel", "") or d.get("SegmentDescription", "") or f"segment {number}")
        out.append(Structure(number, name, codes))
    return out


def _group_item(ds, frame_group, keyword: str):
    """``keyword``'s first item from the frame's own functional group, else the shared one."""
    for group in (frame_group, *getattr(ds, "SharedFunctionalGroupsSequence", [])):
        if group is not None and keyword in group and len(group[keyword].value):
            return group[keyword].value[0]
    return None


def _frame_index(ds, frame_group, grid: Image, n: int, path) -> int:
    """The slice ``k`` of ``grid`` that frame ``n`` lies on (module docstring), else an InputError."""
    fix = "give the series the SEG was made on with --reference DICOM_FOLDER"
    pos = _group_item(ds, frame_group, "PlanePositionSequence")
    orient = _group_item(ds, frame_group, "PlaneOrientationSequence")
    measures = _group_item(ds, frame_group, "PixelMeasuresSequence")
    if pos is None or orient is None or measures is None:
        raise InputError(f"SEG frame {n + 1} has no plane position, orientation or pixel spacing", path,
                         "export the SEG again with its per-frame functional groups")
    iop = np.array([float(v) for v in orient.ImageOrientationPatient])
    spacing = np.array([float(v) for v in measures.PixelSpacing])   # row spacing (y), column spacing (x)
    origin = np.array([float(v) for v in pos.ImagePositionPatient])
    corners = origin + np.array([[0, 0, 0], iop[:3] * spacing[1], iop[3:] * spacing[0]])  # pixel (0,0), (1,0), (0,1)
    ijk = grid.physical_to_index(corners)
    k = int(round(float(ijk[0, 2])))
    want = np.array([[0, 0, k], [1, 0, k], [0, 1, k]], float)
    if np.abs(ijk - want).max() > ALIGN_TOL or not 0 <= k < grid.array.shape[0]:
        raise InputError(f"SEG frame {n + 1} does not lie on a slice of the reference grid "
                         f"(its first pixel falls at index {np.round(ijk[0], 2).tolist()})", path, fix)
    return k


def place_segments(ds, grid: Image, labels_of: dict[int, int], path) -> np.ndarray:
    """A uint8 label array on ``grid``: the frames of the segments in ``labels_of`` (segment number ->
    label) placed by their positions; GTVn wins where both labels claim a voxel (as for RTSTRUCT)."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    ny, nx = grid.array.shape[1:]
    if (rows, cols) != (ny, nx):
        raise InputError(f"SEG frames are {rows}x{cols} pixels, the reference series {ny}x{nx}", path,
                         "give the series the SEG was made on with --reference DICOM_FOLDER")
    kind = str(ds.get("SegmentationType", "BINARY")).upper()
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:   # pydicom raises several kinds for missing handlers or broken data
        raise InputError(f"cannot read the SEG's frames ({str(exc).splitlines()[0][:120] if str(exc) else 'unreadable'})",
                         path, "export the SEG uncompressed, or install the pydicom pixel handler it needs") from None
    pixels = pixels.reshape(-1, rows, cols)
    groups = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []))
    if len(groups) != len(pixels):
        raise InputError(f"SEG has {len(pixels)} frames but {len(groups)} per-frame functional groups", path,
                         "export the SEG again")
    layers = {label: np.zeros(grid.array.shape, dtype=bool) for label in set(labels_of.values())}
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 1) or 1) if kind == "FRACTIONAL" else 0.5
    for n, (group, frame) in enumerate(zip(groups, pixels)):
        if kind == "LABELMAP":
            k = _frame_index(ds, group, grid, n, path)
            for number, label in labels_of.items():
                layers[label][k] |= frame == number
            continue
        ident = _group_item(ds, group, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None else -1
        if number not in labels_of:
            continue
        k = _frame_index(ds, group, grid, n, path)
        layers[labels_of[number]][k] |= frame >= threshold
    out = np.zeros(grid.array.shape, dtype=np.uint8)
    for label in sorted(layers):
        out[layers[label]] = label
    return out


def seg_reference(ds) -> tuple[str, str]:
    """(SeriesInstanceUID, FrameOfReferenceUID) of the SEG's source series ("" when absent)."""
    series = next((str(s.get("SeriesInstanceUID", "") or "") for s in getattr(ds, "ReferencedSeriesSequence", [])), "")
    return series, str(ds.get("FrameOfReferenceUID", "") or "")

