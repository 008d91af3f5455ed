"""Seed 002's CT enhancement: a soft-tissue CT window and the 4 channels ``[x, x^2, cbrt(x), PET]``.

* :func:`window_ct`: CT clipped to [-110, 190] HU and scaled linearly to [-1, 1]
  (``x = 2 (clip(ct) - lo) / (hi - lo) - 1``), as seed 002 does at every stage.
* :func:`scale_pet`: PET to [0, 1]. Seed 002 only says "PET values are simply normalized to
  [0, 1]". We choose **min-max over the given array** (the crop the network sees): it needs no
  assumption about SUV calibration, which differs between centres. ``suv_max=`` gives the
  alternative, a fixed clip at that SUV then division by it, for models trained that way.
* :func:`enhanced_channels`: ``[x, x**2, cbrt(x), PET]`` with ``x`` the windowed CT. The cube
  root keeps the sign (``np.cbrt``; a real cube root of a negative number is negative), so the
  channel stays monotonic in HU; ``x**2`` folds fat (-110 HU, x = -1) onto bone-ish values
  (x = +1), which is the point of the extra channel.

Example:
    >>> x = enhanced_channels(ct_crop, pet_crop)   # float32, shape (4, z, y, x)
    >>> x[0].min(), x[0].max()                    # within [-1, 1]
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..image import Image

CT_WINDOW_HU = (-110.0, 190.0)


def _array(data: Image | np.ndarray) -> np.ndarray:
    return data.array if isinstance(data, Image) else np.asarray(data)


def window_ct(ct: Image | np.ndarray, lo: float = CT_WINDOW_HU[0], hi: float = CT_WINDOW_HU[1]) -> np.ndarray:
    """CT in HU clipped to ``[lo, hi]`` and mapped linearly to [-1, 1] (float32)."""
    if not hi > lo:
        raise ValueError(f"CT window needs hi > lo, got [{lo}, {hi}]")
    x = np.clip(_array(ct).astype(np.float32), lo, hi)
    return (2.0 * (x - lo) / (hi - lo) - 1.0).astype(np.float32)


def scale_pet(pet: Image | np.ndarray, suv_max: float | None = None) -> np.ndarray:
    """PET to [0, 1]: min-max over the array (default), or ``clip(pet, 0, suv_max) / suv_max``.

    A flat PET (max == min) gives zeros.
    """
    p = _array(pet).astype(np.float32)
    if suv_max is not None:
        if suv_max <= 0:
            raise ValueError(f"suv_max must be positive, got {suv_max}")
        return (np.clip(p, 0.0, suv_max) / np.float32(suv_max)).astype(np.float32)
    lo, hi = float(p.min()), float(p.max())
    if hi <= lo:
        return np.zeros_like(p)
    return ((p - lo) / (hi - lo)).astype(np.float32)


def enhanced_channels(ct: Image | np.ndarray, pet: Image | np.ndarray, lo: float = CT_WINDOW_HU[0],
                      hi: float = CT_WINDOW_HU[1], suv_max: float | None = None) -> np.ndarray:
    """Seed 002's 4-channel input ``[x, x^2, cbrt(x), PET]`` (float32, shape ``(4, z, y, x)``).

    CT and PET must already share one grid (resample the PET onto the CT first).
    """
    c, p = _array(ct), _array(pet)
    if c.shape != p.shape:
        raise InputError(f"CT {c.shape} and PET {p.shape} are not on the same grid", None,
                         "resample the PET onto the CT grid first (image.resample_to)")
    x = window_ct(c, lo, hi)
    return np.stack([x, x * x, np.cbrt(x), scale_pet(p, suv_max)]).astype(np.float32)
