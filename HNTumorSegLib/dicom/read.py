"""Read an input that may be a DICOM folder: choose the series, read it (:mod:`.pixels`), PET in SUV.

:func:`read_volume` is the reader for every input that may be DICOM (``segment --input``,
Slicer's folder loading): a file goes to :func:`HNTumorSegLib.image.read_image`, a folder to
:func:`read_dicom_folder` (series choice :mod:`.select`, checks :mod:`.geometry`, a PET series
converted to SUVbw :mod:`.suv`), then the same checks as a file.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> image = read_volume("study/", name="the T2")          # or a NIfTI file: the same checks
    >>> image.array.shape, image.spacing
    ((4, 32, 32), (0.9, 0.9, 3.0))
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..image import Image, checked_image, read_image
from ..warm_cache import Handover, cached, file_identity
from .pixels import read_series
from .select import refuse_mosaic_file, select_series
from .pet_units import pet_to_suv


def input_image_name(name: str) -> str:
    """How messages, and the read cache, call a request's input ``name`` (``"T2 image"``)."""
    return f"{name} image"


def _read_key(p: Path, label: bool, name: str | None):
    """The cache key of :func:`read_volume`'s file read (None when ``p`` is not a regular file)."""
    ident = file_identity(p)
    return ident and ("read", ident, label, name)


def read_ahead(handover: Handover, path: str | os.PathLike, name: str | None = None) -> bool:
    """Start decoding the image file ``path`` for the :func:`read_volume` call to come (same ``name``).

    A new worker's read-ahead (:class:`HNTumorSegLib.warm_cache.Handover`, issue 27); a DICOM
    folder or a missing path is left to that call. Returns whether a read was started.
    """
    p = Path(path)
    key = _read_key(p, False, name)
    if key is None:
        return False
    handover.start(key, lambda: read_image(p, label=False, name=name))
    return True


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
        refuse_mosaic_file(p)   # not "a single slice": a mosaic of tiled slices (issue 25)
        # a warm session decodes an unchanged file once; a new worker may have read it ahead (issue 27)
        return cached(_read_key(p, label, name), lambda: read_image(p, label=label, name=name))
    image = read_dicom_folder(p, series_uid=series, name=what, prefer_modality=prefer_modality)
    return checked_image(image.to_sitk(), p, label=label, what=what)


def read_dicom_folder(folder: str | os.PathLike, series_uid: str | None = None, name: str = "image",
                      modality: str | None = None, pet_in_suv: bool = True,
                      prefer_modality: str | None = None) -> Image:
    """Choose (:func:`.select.select_series`), check and read one series of ``folder``.

    A PET series comes back in SUVbw (:func:`.pet_units.pet_to_suv`) unless ``pet_in_suv=False``: the
    models and the biomarkers expect SUV, and a PET that cannot be converted is refused here.
    """
    geometry = select_series(folder, series_uid=series_uid, modality=modality, need_frame_of_reference=False,
                             prefer_modality=prefer_modality)
    image = read_series(geometry, name=name)
    if pet_in_suv and geometry.series.modality == "PT":   # the one PET path (issue 24)
        image = pet_to_suv(image, folder, geometry=geometry).image
    return image
