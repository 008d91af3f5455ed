"""Read a checked DICOM series into an :class:`~HNTumorSegLib.image.Image` (SimpleITK/GDCM does the pixels).

The files are given in our order (ascending along the slice normal, :mod:`.geometry`), so
the volume's grid is exactly :attr:`SeriesGeometry.grid` and a label map written on it maps
back to the same slices for export. When any slice has a non-integer or varying rescale
(PET stores a slope per slice), the output is float32 so no slice is truncated.

A PET series is converted to SUVbw (:mod:`.suv`).

Example:
    >>> image = read_volume("study/", name="the CT")          # or a NIfTI file: the same checks
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image, checked_image, read_image
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


def read_volume(path: str | os.PathLike, label: bool = False, name: str | None = None,
                series: str | None = None, prefer_modality: str | None = None) -> Image:
    """An image file (:func:`HNTumorSegLib.image.read_image`) or a DICOM series folder, checked alike.

    The one reader for inputs that may be DICOM (``segment --input``, Slicer's folder loading):
    a folder gives its one image series, or ``series`` (SeriesInstanceUID) when it holds several
    (or the only one of ``prefer_modality``, e.g. ``"PT"`` for a PET input), a PET in SUVbw;
    then the same checks as a file (:func:`HNTumorSegLib.image.checked_image`).
    """
    p = Path(path)
    what = name or "image"
    if not p.is_dir():
        if series:
            raise InputError(f"a series ({series}) is named for the {what}, which is a file, not a DICOM folder",
                             p, "drop --series, or give the DICOM folder")
        return read_image(p, label=label, name=name)
    image = read_dicom_folder(p, series_uid=series, name=what, prefer_modality=prefer_modality)
    return checked_image(image.to_sitk(), p, label=label, what=what)


def read_dicom_folder(folder: str | os.PathLike, series_uid: str | None = None, name: str = "image",
                      modality: str | None = None, pet_in_suv: bool = True,
                      prefer_modality: str | None = None) -> Image:
    """Choose (:func:`.select.select_series`), check and read one series of ``folder``.

    A PET series comes back in SUVbw (:func:`.suv.to_suv`) unless ``pet_in_suv=False``: the
    models and the biomarkers expect SUV, and a PET that cannot be converted is refused here.
    """
    geometry = select_series(folder, series_uid=series_uid, modality=modality, need_frame_of_reference=False,
                             prefer_modality=prefer_modality)
    image = read_series(geometry, name=name)
    if pet_in_suv and geometry.series.modality == "PT":
        from .suv import to_suv

        image = to_suv(geometry, image)
    return image
