"""Which series of a folder: the one named, else the only image series, else the one a label map lies on.

A study folder may hold several series (and non-image objects, README files, a DICOMDIR:
:mod:`.scan`). The choice is never "every file in the folder":

1. ``series_uid`` given: that series (not found: exit 2 listing what was found);
2. ``labels`` given: the image series whose grid the label map lies on
   (:func:`.geometry.grid_matches`, 0.1 voxel tolerance); none or several: exit 2, listing;
3. otherwise the only image series (of ``modality`` when given; of ``prefer_modality`` when
   that makes it one); several: exit 2, listing.

The chosen series then passes :func:`.geometry.check_series`.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> from HNTumorSegLib.image import read_image, write_image
    >>> _ = write_image(case["mask"], "labels.nii.gz")                 # a label map on the T2's grid
    >>> geo = select_series("study/", labels=read_image("labels.nii.gz", label=True))
    >>> geo.uid, len(geo.files)
    ('1.2.826.0.1.3680043.8.498...', 4)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..image import Image
from .geometry import SeriesGeometry, mosaic_tiles, check_series, grid_matches
from .scan import SeriesInfo, list_series_text, read_header, scan_folder


def refuse_mosaic_file(path: str | os.PathLike) -> None:
    """A Siemens mosaic given as one file (not a folder) is refused as what it is, as in a folder
    (:func:`.geometry.check_series`), not read as a "single slice" of tiles (issue 25).

    Example:
        >>> refuse_mosaic_file("labels.nii.gz")      # not DICOM, or DICOM but no mosaic: nothing to say
    """
    header = read_header(path) if os.path.isfile(path) else None
    if header is not None and mosaic_tiles(header):
        info = SeriesInfo(str(header.get("SeriesInstanceUID", "") or "?"), str(header.get("Modality", "") or ""))
        info.files.append(Path(path))
        info.headers.append(header)
        check_series(info)


def select_series(folder: str | os.PathLike, series_uid: str | None = None, labels: Image | None = None,
                  modality: str | None = None, need_frame_of_reference: bool = True,
                  prefer_modality: str | None = None) -> SeriesGeometry:
    """The checked series of ``folder`` chosen as the module docstring says
    (``need_frame_of_reference``: see :func:`.geometry.check_series`). ``prefer_modality``
    breaks a tie: of several image series, the only one of that modality (``segment``'s CT and
    PET inputs may both name one study folder)."""
    need_for = need_frame_of_reference
    found = scan_folder(folder)
    listing = list_series_text(found)
    if series_uid:
        chosen = [s for s in found if s.uid == series_uid.strip()]
        if not chosen:
            raise InputError(f"holds no series {series_uid}; {listing}", folder, "give one of the series UIDs listed")
        geometry = check_series(chosen[0], need_for)
        if labels is not None and not grid_matches(geometry, labels):
            raise InputError(f"the label map does not lie on the grid of series {series_uid}; {listing}", folder,
                             "give the series the segmentation was made on (do not resample the result)")
        return geometry
    images = [s for s in found if s.is_image and (modality is None or s.modality == modality)]
    if not images:
        what = f"{modality} image series" if modality else "image series"
        raise InputError(f"holds no {what}; {listing}", folder, "give the folder of the image series")
    preferred = [s for s in images if prefer_modality and s.modality == prefer_modality]
    if len(images) > 1 and labels is None and len(preferred) == 1:
        images = preferred
    if len(images) == 1:
        geometry = check_series(images[0], need_for)
        if labels is not None and not grid_matches(geometry, labels):
            raise InputError(f"the label map does not lie on the grid of the series; {listing}", folder,
                             "export on the grid of the DICOM series it was made on (do not resample the result)")
        return geometry
    if labels is None:
        raise InputError(f"holds {len(images)} image series; {listing}", folder, "choose one with --series UID")
    matches = []
    for s in images:
        try:
            geometry = check_series(s, need_for)
        except InputError:
            continue  # a broken series cannot be the one the label map lies on
        if grid_matches(geometry, labels):
            matches.append(geometry)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(f"the label map lies on none of the series' grids; {listing}", folder,
                         "give the series the segmentation was made on (do not resample the result)")
    raise InputError(f"the label map lies on the grids of {len(matches)} series; {listing}", folder,
                     "choose one with --series UID")
