"""The checks a DICOM image series must pass before we read it or export on it, and its voxel grid.

Why these checks: a volume is a stack of parallel, evenly spaced slices of one series in one
frame of reference. A series that is not (mixed studies or frames of reference, a changed
orientation, a gap or uneven spacing, CT slices sheared by gantry tilt, two slices at one
position) would be read into a wrong grid without a word, and contours exported on it would
land in the wrong place. Each case is refused with one line saying what and what to do.
Enhanced multi-frame objects (one file holding all slices) and Siemens mosaics (slices tiled in
one image) are refused clearly as well: this version reads one-file-per-slice series, what PACS
and scanners export by default.

Tolerances: orientation 1e-4 (direction cosines), in-plane shift of a slice 5 % of a pixel
(more is gantry tilt), slice spacing 1 % of the mean spacing (more is uneven spacing).

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> geo = check_series(select_series("study/").series)
    >>> geo.grid.shape_xyz, geo.grid.spacing
    ((32, 32, 4), (0.9, 0.9, 3.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image
from .scan import ENHANCED_CLASSES, SeriesInfo

ORIENTATION_TOL = 1e-4
SHIFT_TOL = 0.05  # pixels
SPACING_TOL = 0.01  # fraction of the mean slice spacing


@dataclass
class SeriesGeometry:
    """A checked series: files and headers sorted along the slice normal, and the grid they form."""

    series: SeriesInfo
    files: list[Path]
    headers: list
    grid: Image  # uint8 zeros on the series' grid (k = position along the normal, ascending)

    @property
    def uid(self) -> str:
        return self.series.uid


def _floats(value) -> np.ndarray:
    return np.array([float(v) for v in value], dtype=float)


def mosaic_tiles(header) -> int:
    """Slices tiled in a Siemens mosaic image (``ImageType`` MOSAIC; CSA NumberOfImagesInMosaic), else 0
    (-1: a mosaic that does not say how many)."""
    if "MOSAIC" not in [str(v).upper() for v in (header.get("ImageType") or [])]:
        return 0
    n = header.get((0x0019, 0x100A))
    try:
        return int.from_bytes(n.value, "little") if isinstance(n.value, bytes) else int(n.value)
    except (AttributeError, TypeError, ValueError):
        return -1


def _same(headers, key: str, series: SeriesInfo) -> str:
    values = {str(h.get(key, "") or "") for h in headers}
    if len(values) > 1:
        raise InputError(f"series {series.uid} mixes {len(values)} different {key} values", series.files[0],
                         "give the files of one series only")
    return values.pop()


def check_series(series: SeriesInfo, need_frame_of_reference: bool = True) -> SeriesGeometry:
    """Check ``series`` (see the module docstring) and return its sorted files and grid.

    ``need_frame_of_reference=False`` (reading a volume to segment) accepts a series whose
    slices all lack ``FrameOfReferenceUID``; an export on it (which must name the frame) refuses it.
    """
    first_path = series.files[0]
    if series.is_multiframe:
        kind = ENHANCED_CLASSES.get(str(series.first.get("SOPClassUID", "")), "multi-frame")
        article = "an" if kind[0] in "AEIOU" else "a"
        raise InputError(f"series {series.uid} is {article} {kind} (multi-frame) object; one file per slice is needed",
                         first_path, "export the series from the PACS or scanner as classic single-frame images")
    tiles = mosaic_tiles(series.first)
    if tiles:
        count = f"{tiles} slices" if tiles > 0 else "slices"
        raise InputError(f"series {series.uid} is a Siemens mosaic ({count} tiled in each image), "
                         "not a stack of slices", first_path,
                         "convert it to a volume first (e.g. dcm2niix) or export the scanner's non-mosaic series")
    if not series.is_image:
        raise InputError(f"series {series.uid} ({series.modality}) is not an image series", first_path,
                         "choose an image series (CT, MR, PT)")
    headers = series.headers
    for h, f in zip(headers, series.files):
        for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if key not in h:
                raise InputError(f"image has no {key}", f, "export the series again from the scanner or PACS")
        if need_frame_of_reference and not str(h.get("FrameOfReferenceUID", "") or ""):
            raise InputError("image has no FrameOfReferenceUID (its position in space is undefined)", f,
                             "export the series again from the scanner or PACS with its Frame of Reference")
    _same(headers, "StudyInstanceUID", series)
    _same(headers, "FrameOfReferenceUID", series)
    iop = _floats(headers[0].ImageOrientationPatient)
    spacing = _floats(headers[0].PixelSpacing)
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    for h, f in zip(headers, series.files):
        if np.abs(_floats(h.ImageOrientationPatient) - iop).max() > ORIENTATION_TOL:
            raise InputError(f"series {series.uid} changes its slice orientation", f,
                             "give a series whose slices are parallel")
        if int(h.Rows) != rows or int(h.Columns) != cols or np.abs(_floats(h.PixelSpacing) - spacing).max() > 1e-4:
            raise InputError(f"series {series.uid} changes its matrix size or pixel spacing", f,
                             "give a series whose slices share one grid")
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_dir, col_dir)
    positions = np.array([_floats(h.ImagePositionPatient) for h in headers])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    files = [series.files[i] for i in order]
    headers = [headers[i] for i in order]
    along = positions @ normal
    if len(along) > 1:
        steps = np.diff(along)
        if steps.min() < 1e-3:
            i = int(np.argmin(steps))
            raise InputError(f"series {series.uid} has two slices at one position ({along[i]:.2f} mm)", files[i + 1],
                             "give one volume (one echo, phase or acquisition) per series")
        mean = float(steps.mean())
        if steps.max() - steps.min() > SPACING_TOL * mean:
            raise InputError(f"series {series.uid} has uneven slice spacing "
                             f"({steps.min():.2f} to {steps.max():.2f} mm)",
                             files[int(np.argmax(np.abs(steps - mean)))],
                             "resample it to even spacing first, or export a series without gaps")
        shift = positions - positions[0] - np.outer(along - along[0], normal)
        in_plane = np.abs(np.column_stack([shift @ row_dir / spacing[1], shift @ col_dir / spacing[0]]))
        if in_plane.max() > SHIFT_TOL:
            k = int(np.argmax(in_plane.max(axis=1)))
            tilt = np.degrees(np.arctan2(np.linalg.norm(shift[k]), along[k] - along[0]))
            raise InputError(f"series {series.uid} has slices shifted in-plane (gantry tilt of about {tilt:.1f} deg)",
                             files[k], "correct the gantry tilt first (resample to an untilted grid), "
                             "or use an untilted series")
        dz = mean
    else:
        dz = float(headers[0].get("SliceThickness", 1.0) or 1.0)
    direction = np.column_stack([row_dir, col_dir, normal])
    grid = Image(np.zeros((len(files), rows, cols), np.uint8), (spacing[1], spacing[0], dz), tuple(positions[0]),
                 direction)
    return SeriesGeometry(series, files, headers, grid)


def slice_index_on(labels: Image, header, tol: float = 0.1) -> int | None:
    """The ``k`` of ``labels`` whose plane is this slice (i = j = 0 at its first pixel), else None."""
    ijk = labels.physical_to_index(_floats(header.ImagePositionPatient))
    k = int(round(ijk[2]))
    if abs(ijk[0]) > tol or abs(ijk[1]) > tol or abs(ijk[2] - k) > tol or not 0 <= k < labels.array.shape[0]:
        return None
    return k


def grid_matches(geometry: SeriesGeometry, labels: Image, tol: float = 0.1) -> bool:
    """True when ``labels`` lies on the series' grid: same matrix, each slice on one of its planes,
    rows and columns along the same axes (slice order may be reversed). ``tol`` in voxels."""
    g = geometry.grid
    if labels.shape_xyz[:2] != g.shape_xyz[:2] or labels.array.shape[0] != g.array.shape[0]:
        return False
    nx, ny, _ = g.shape_xyz
    ks = []
    for k, h in enumerate(geometry.headers):
        kl = slice_index_on(labels, h, tol)
        if kl is None:
            return False
        far = labels.physical_to_index(g.index_to_physical(np.array([[nx - 1, 0, k], [0, ny - 1, k]], float)))
        if np.abs(far[0] - [nx - 1, 0, kl]).max() > tol or np.abs(far[1] - [0, ny - 1, kl]).max() > tol:
            return False
        ks.append(kl)
    return len(set(ks)) == len(ks)
