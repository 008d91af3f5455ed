"""Read a checked DICOM series into an :class:`~HNTumorSegLib.image.Image` (SimpleITK/GDCM does the pixels).

The files are given in our order (ascending along the slice normal, :mod:`.geometry`), so
the volume's grid is exactly :attr:`SeriesGeometry.grid` and a label map written on it maps
back to the same slices for export. When any slice has a non-integer or varying rescale
(PET stores a slope per slice), the output is float32 so no slice is truncated.

A PET series is converted to SUVbw (:mod:`.suv`).

Example:
    >>> image = read_dicom_folder("study/", series_uid=None, name="the CT")
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..image import Image
from .geometry import SeriesGeometry
from .select import select_series


def _needs_float(headers) -> bool:
    slopes = {float(h.get("RescaleSlope", 1) or 1) for h in headers}
    intercepts = {float(h.get("RescaleIntercept", 0) or 0) for h in headers}
    return len(slopes) > 1 or any(s != int(s) for s in slopes) or any(i != int(i) for i in intercepts)


def read_series(geometry: SeriesGeometry, name: str = "image") -> Image:
    """The voxels of a checked series on its grid (rescaled values: HU, Bq/mL ...)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in geometry.files])
    if _needs_float(geometry.headers):
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        reason = (str(exc).strip().splitlines() or ["unreadable"])[-1]
        raise InputError(f"cannot read the pixels of the {name} ({reason[:120]})", geometry.files[0],
                         "check the files are complete DICOM images") from None
    image = Image.from_sitk(img)
    g = geometry.grid
    if image.array.shape != g.array.shape or not np.allclose(image.origin, g.origin, atol=1e-3):
        raise InputError(f"the {name}'s pixels do not form the grid its headers describe", geometry.files[0],
                         "export the series again from the scanner or PACS")
    return Image(image.array, g.spacing, g.origin, g.direction)


def read_dicom_folder(folder: str | os.PathLike, series_uid: str | None = None, name: str = "image",
                      modality: str | None = None, pet_in_suv: bool = True) -> Image:
    """Choose (:func:`.select.select_series`), check and read one series of ``folder``.

    A PET series comes back in SUVbw (:func:`.suv.to_suv`) unless ``pet_in_suv=False``: the
    models and the biomarkers expect SUV, and a PET that cannot be converted is refused here.
    """
    geometry = select_series(folder, series_uid=series_uid, modality=modality, need_frame_of_reference=False)
    image = read_series(geometry, name=name)
    if pet_in_suv and geometry.series.modality == "PT":
        from .suv import to_suv

        image = to_suv(geometry, image)
    return image
