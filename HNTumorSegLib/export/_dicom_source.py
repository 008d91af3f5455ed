"""Reading a source DICOM series and matching its slices to a label map's grid (shared by SEG and RTSTRUCT).

Each source file is one slice. Its ``ImagePositionPatient`` (the first pixel's centre, LPS mm,
the same world as ITK's) goes through the label map's inverse geometry to a continuous index;
the slice must fall on an integer ``k`` with ``i = j = 0`` (within 1 % of a voxel), and its
rows / columns must match the grid. So the label map must lie on the series' own grid, which is
what the worker produces (the output lies on the first input's grid).

Example:
    >>> slices = match_series(labels, sorted(Path("ct_dicom").glob("*.dcm")))
    >>> [(s.k, s.dataset.SOPInstanceUID) for s in slices][:2]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import InputError
from ..image import Image

_TOL = 0.01  # voxels


@dataclass
class SourceSlice:
    k: int
    dataset: object  # pydicom.Dataset
    path: str


def match_series(labels: Image, files: Iterable[str | os.PathLike]) -> list[SourceSlice]:
    """The source slices with their ``k`` index on ``labels``' grid, ordered by ``k``."""
    import pydicom

    out: list[SourceSlice] = []
    nx, ny, nz = labels.shape_xyz
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
        except Exception as exc:  # pydicom raises many kinds for a non-DICOM file
            raise InputError(f"is not a readable DICOM file ({exc.__class__.__name__})", f,
                             "give the files of the series the segmentation was made on") from None
        if "ImagePositionPatient" not in ds or "PixelData" not in ds:
            raise InputError("is not an image slice (no ImagePositionPatient or pixels)", f,
                             "give only the image files of the source series")
        if int(ds.Rows) != ny or int(ds.Columns) != nx:
            raise InputError(f"has {ds.Rows}x{ds.Columns} pixels, the segmentation {ny}x{nx}", f,
                             "export on the grid of the DICOM series it was made on")
        ijk = labels.physical_to_index(np.array([float(v) for v in ds.ImagePositionPatient]))
        k = int(round(ijk[2]))
        if abs(ijk[0]) > _TOL or abs(ijk[1]) > _TOL or abs(ijk[2] - k) > _TOL or not 0 <= k < nz:
            raise InputError("does not lie on the segmentation's grid", f,
                             "export on the grid of the DICOM series it was made on (do not resample the result)")
        out.append(SourceSlice(k, ds, str(f)))
    if not out:
        raise InputError("no source DICOM files given", None, "give the files of the source series")
    out.sort(key=lambda s: s.k)
    ks = [s.k for s in out]
    if len(set(ks)) != len(ks):
        raise InputError("two source files fall on the same slice", out[0].path,
                         "give the files of one series only")
    return out
