"""An RTSTRUCT read as GTVp/GTVn voxels on the grid of the series it references (contours in).

Rasterisation: every ``CLOSED_PLANAR`` contour of a structure is taken to the grid's continuous
indices; it must lie in one slice plane of the grid (within :data:`PLANE_TOL` of a voxel; a
contour between slices or across them means another grid, and is refused with one line).
A voxel is inside a contour when its centre is inside the polygon or on its edge (within
:data:`EDGE_TOL` voxel): writers that trace the centres of the boundary voxels (rt-utils,
OpenCV) and those that trace half-way between voxel centres (ours, plastimatch, SlicerRT) both
read back to the voxels they came from. Several contours of one structure on one slice are
combined with the even-odd rule - each flips the voxels it covers (XOR) - which is how nested
holes are written (:class:`HNTumorSegLib.vocab.HoleStyle` ``nested``, :mod:`HNTumorSegLib.export.contours`);
keyhole contours fill right with the same rule. Structures of one label are merged (OR).
``POINT`` and ``OPEN_PLANAR`` contours (markers, lines) are no volume and are skipped; a
``CLOSED_PLANAR`` contour of one or two points (what OpenCV-based writers such as rt-utils make of
a one-voxel-wide island) keeps the voxels it runs through.

Example:
    >>> from HNTumorSegLib.image import Image
    >>> grid = Image(np.zeros((3, 8, 8), np.uint8))
    >>> square = np.array([[1.5, 1.5, 1], [5.5, 1.5, 1], [5.5, 5.5, 1], [1.5, 5.5, 1]])   # LPS mm = ijk here
    >>> int(fill_contours(grid, [square], "rt.dcm", "GTVp").sum())
    16
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..image import Image
from .structures import Structure

PLANE_TOL = 0.2   # voxels (slice direction): a contour must lie on a slice of the grid
EDGE_TOL = 1e-3   # voxels (in plane): a centre this close to an edge is inside


def _scanline(xy: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """bool (ny, nx): the voxel centres inside the closed polygon ``xy`` (N, 2; i, j) or on its edge
    (within :data:`EDGE_TOL`), even-odd. Row by row (scanline): where the edges cross the row of
    centres, the spans between crossings 1-2, 3-4 ... are inside, their ends included; vertices and
    edges lying along the row are edge. O(rows x edges), fast on a planning system's contours."""
    out = np.zeros((ny, nx), dtype=bool)
    a, b = xy, np.roll(xy, -1, axis=0)
    j_lo = max(int(np.ceil(xy[:, 1].min() - EDGE_TOL)), 0)
    j_hi = min(int(np.floor(xy[:, 1].max() + EDGE_TOL)), ny - 1)
    if j_hi < j_lo:
        return out
    rows = np.arange(j_lo, j_hi + 1, dtype=float)[:, None]
    ay, by, ax, bx = a[:, 1][None], b[:, 1][None], a[:, 0][None], b[:, 0][None]
    crosses = (ay > rows) != (by > rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = np.where(crosses, ax + (rows - ay) * (bx - ax) / (by - ay), np.inf)
    x_at.sort(axis=1)
    for r, j in enumerate(range(j_lo, j_hi + 1)):
        xs = x_at[r][np.isfinite(x_at[r])]
        for x0, x1 in zip(xs[0::2], xs[1::2]):
            lo, hi = max(int(np.ceil(x0 - EDGE_TOL)), 0), min(int(np.floor(x1 + EDGE_TOL)), nx - 1)
            out[j, lo:hi + 1] = True
    along = np.abs(a[:, 1] - b[:, 1]) <= EDGE_TOL   # edges along a row of centres (and 1-point contours)
    for (x0, y0), (x1, y1) in zip(a[along], b[along]):
        j = int(round(y0))
        if abs(y0 - j) <= EDGE_TOL and 0 <= j < ny:
            lo, hi = max(int(np.ceil(min(x0, x1) - EDGE_TOL)), 0), min(int(np.floor(max(x0, x1) + EDGE_TOL)), nx - 1)
            out[j, lo:hi + 1] = True
    near = np.all(np.abs(xy - np.round(xy)) <= EDGE_TOL, axis=1)   # vertices on a centre (a peak of the outline)
    for i, j in np.round(xy[near]).astype(int):
        if 0 <= i < nx and 0 <= j < ny:
            out[j, i] = True
    return out


def fill_contours(grid: Image, contours_lps: list[np.ndarray], path, name: str) -> np.ndarray:
    """The voxels (bool, grid's array shape) inside ``contours_lps`` (each (N, 3) LPS mm), even-odd per slice."""
    shape = grid.array.shape
    out = np.zeros(shape, dtype=bool)
    for pts in contours_lps:
        ijk = grid.physical_to_index(pts)
        k = int(round(float(ijk[:, 2].mean())))
        if np.abs(ijk[:, 2] - k).max() > PLANE_TOL:
            raise InputError(f"a contour of structure {name!r} does not lie in a slice of the reference grid "
                             f"(it spans {ijk[:, 2].min():.2f} to {ijk[:, 2].max():.2f} in slice index)", path,
                             "give the series the contours were drawn on with --reference DICOM_FOLDER")
        if not 0 <= k < shape[0]:
            raise InputError(f"a contour of structure {name!r} lies outside the reference grid (slice {k} of "
                             f"{shape[0]})", path, "give the series the contours were drawn on with --reference DICOM_FOLDER")
        out[k] ^= _scanline(ijk[:, :2], shape[1], shape[2])
    return out


def rtstruct_structures(ds) -> list[Structure]:
    """The ROIs of an RTSTRUCT dataset as :class:`Structure` (name, identification codes, interpreted type)."""
    observations = {int(o.ReferencedROINumber): o for o in getattr(ds, "RTROIObservationsSequence", [])
                    if "ReferencedROINumber" in o}
    out = []
    for roi in getattr(ds, "StructureSetROISequence", []):
        number = int(roi.ROINumber)
        obs = observations.get(number)
        codes = [str(c.get("CodeValue", "")) for c in getattr(obs, "RTROIIdentificationCodeSequence", [])] if obs else []
        interpreted = str(obs.get("RTROIInterpretedType", "") or "") if obs is not None else ""
        out.append(Structure(number, str(roi.get("ROIName", "") or f"ROI {number}"), codes, interpreted))
    return out


def referenced_series(ds) -> tuple[str, str]:
    """(SeriesInstanceUID, FrameOfReferenceUID) the structure set references ("" when absent)."""
    frame, series = "", ""
    for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        frame = frame or str(fr.get("FrameOfReferenceUID", "") or "")
        for study in getattr(fr, "RTReferencedStudySequence", []):
            for s in getattr(study, "RTReferencedSeriesSequence", []):
                series = series or str(s.get("SeriesInstanceUID", "") or "")
    if not frame:
        frame = next((str(r.get("ReferencedFrameOfReferenceUID", "") or "")
                      for r in getattr(ds, "StructureSetROISequence", [])), "")
    return series, frame


def rasterise_rtstruct(ds, grid: Image, labels_of: dict[int, int], structures: list[Structure], path) -> np.ndarray:
    """A uint8 label array on ``grid``: each ROI number of ``labels_of`` filled with its label (GTVn wins
    where a GTVp and a GTVn structure overlap: a node drawn over the primary's edge keeps its voxels)."""
    names = {s.key: s.name for s in structures}
    out = np.zeros(grid.array.shape, dtype=np.uint8)
    for label in sorted(set(labels_of.values())):
        layer = np.zeros(out.shape, dtype=bool)
        for roi in getattr(ds, "ROIContourSequence", []):
            number = int(roi.get("ReferencedROINumber", -1))
            if labels_of.get(number) != label:
                continue
            contours = [np.asarray([float(v) for v in c.ContourData], float).reshape(-1, 3)
                        for c in getattr(roi, "ContourSequence", [])
                        if str(c.get("ContourGeometricType", "CLOSED_PLANAR")).upper() == "CLOSED_PLANAR"
                        and len(c.get("ContourData", [])) >= 3]
            layer |= fill_contours(grid, contours, path, names.get(number, str(number)))
        out[layer] = label
    return out
