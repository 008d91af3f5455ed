"""The voxels of a checked DICOM series (SimpleITK/GDCM reads the pixels), on the series' own grid.

The files are given in our order (ascending along the slice normal, :mod:`.geometry`), so
the volume's grid is exactly :attr:`SeriesGeometry.grid` and a label map written on it maps
back to the same slices for export. When any slice has a non-integer or varying rescale
(PET stores a slope per slice), the output is float32 so no slice is truncated.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> image = read_series(select_series("study/"))
    >>> image.array.shape                          # z, y, x
    (4, 32, 32)
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

from ..errors import InputError
from ..image import Image
from .geometry import SeriesGeometry


def _needs_float(headers) -> bool:
    slopes = {float(h.get("RescaleSlope", 1) or 1) for h in headers}
    intercepts = {float(h.get("RescaleIntercept", 0) or 0) for h in headers}
    return len(slopes) > 1 or any(s != int(s) for s in slopes) or any(i != int(i) for i in intercepts)


@contextlib.contextmanager
def quiet_native_stderr(caught: list[str]):
    """Hold what native code (GDCM's JPEG codecs) writes on file descriptor 2 while reading, into
    ``caught``: a 12-bit JPEG made libjpeg print 13 lines ("Unsupported JPEG data precision 12")
    as GDCM tried its 8-, 12- and 16-bit decoders in turn, on success too (issue 25).

    Example:
        >>> caught = []
        >>> with quiet_native_stderr(caught):
        ...     _ = os.write(2, b"Unsupported JPEG data precision 12\\n")
        >>> caught
        ['Unsupported JPEG data precision 12']
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):   # no file descriptor 2 (an embedded interpreter): nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            caught.extend(line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


def read_series(geometry: SeriesGeometry, name: str = "image") -> Image:
    """The voxels of a checked series on its grid (rescaled values: HU, Bq/mL ...)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in geometry.files])
    if _needs_float(geometry.headers):
        reader.SetOutputPixelType(sitk.sitkFloat32)
    native: list[str] = []
    try:
        with quiet_native_stderr(native):
            img = reader.Execute()
    except RuntimeError as exc:
        reason = (str(exc).strip().splitlines() or native or ["unreadable"])[-1]
        raise InputError(f"cannot read the pixels of the {name} ({reason[:120]})", geometry.files[0],
                         "check the files are complete DICOM images") from None
    image = Image.from_sitk(img)
    g = geometry.grid
    if image.array.shape != g.array.shape or not np.allclose(image.origin, g.origin, atol=1e-3):
        raise InputError(f"the {name}'s pixels do not form the grid its headers describe", geometry.files[0],
                         "export the series again from the scanner or PACS")
    return Image(image.array, g.spacing, g.origin, g.direction)
