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


def _inside(points_xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of ``points_xy`` (M, 2) against the closed polygon ``poly`` (N, 2); edges count as inside."""
    x, y = points_xy[:, 0][:, None], points_xy[:, 1][:, None]
    a, b = poly[None, :, :], np.roll(poly, -1, axis=0)[None, :, :]
    ax, ay, bx, by = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    crosses = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = ax + (y - ay) * (bx - ax) / (by - ay)
    inside = (np.count_nonzero(crosses & (x < x_at), axis=1) % 2) == 1
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.where(length2 > 0, ((x - ax) * dx + (y - ay) * dy) / length2, 0.0), 0.0, 1.0)
    d2 = (ax + t * dx - x) ** 2 + (ay + t * dy - y) ** 2
    return inside | (d2.min(axis=1) <= EDGE_TOL ** 2)


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
        xy = ijk[:, :2]
        lo = np.maximum(np.floor(xy.min(axis=0) - EDGE_TOL), 0).astype(int)
        hi = np.minimum(np.ceil(xy.max(axis=0) + EDGE_TOL), [shape[2] - 1, shape[1] - 1]).astype(int)
        if np.any(hi < lo):
            continue
        ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="xy")
        centres = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
        hit = _inside(centres, xy)
        out[k, jj.ravel()[hit], ii.ravel()[hit]] ^= True
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
