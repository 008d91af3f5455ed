"""The label map as NIfTI in the challenges' convention: uint8, 0 background, 1 GTVp, 2 GTVn.

The file lies on the input image's grid (the caller passes the label map exported on the input
volume's geometry), written atomically by :func:`HNTumorSegLib.image.write_image`.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> labels = Image(np.zeros((4, 8, 8), np.uint8)); labels.array[1:3, 2:5, 2:5] = 1
    >>> write_label_nifti(labels, "out/case1.nii.gz")
    PosixPath('out/case1.nii.gz')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image, check_labels, write_image


def write_label_nifti(labels: Image, path: str | os.PathLike) -> Path:
    """Write ``labels`` (values in {0, 1, 2}) as a uint8 NIfTI at ``path`` (``.nii`` or ``.nii.gz``)."""
    p = Path(path)
    if not (p.name.endswith(".nii.gz") or p.name.endswith(".nii")):
        raise InputError("is not a NIfTI file name", p, "end the file name with .nii.gz")
    check_labels(labels, path=p)
    return write_image(labels.with_array(np.asarray(labels.array).astype(np.uint8)), p)
