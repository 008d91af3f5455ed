"""Seed 002's CT channels: the released variant (default ``seed002``) and the paper's (``seed002_paper``).

Seed 002 (SJTU_lab426, HECKTOR 2025) adds powers of the windowed CT as extra input channels.
Its paper and its released code (MoriiHuang/SJTU_lab426_Solution_of_Hecktor,
``process_hecktor.py``) differ, and the code made the published weights and scores:

| | released code (``seed002``, default) | paper (``seed002_paper``) |
|---|---|---|
| CT window | level 45, width 300 = **[-105, 195] HU**, clipped, to **[0, 1]** (``apply_window``) | [-110, 190] HU to [-1, 1] |
| then | min-max over the crop the network sees, ``(x - min) / (max - min + 1e-6)`` (``apply_transforms``) | - |
| powers | ``x**2`` and ``x**(1/3)`` of that [0, 1] value | ``x**2`` and ``cbrt(x)`` of the [-1, 1] value |
| PET | min-max over the crop, ``+ 1e-6`` as above | min-max over the crop |
| channels | declared by the model: **2** ``[CT, PET]`` (the released fine ResEnc-L, ``Dataset014_HECKFine2chan``), **4** ``[x, x^2, x^(1/3), PET]``, or **6** ``[x, x^2, x^(1/3), p, p^2, p^(1/3)]`` (its training helper ``save_as_nnunet_extended_sitk``) | **4** ``[x, x^2, x^(1/3), PET]`` |

Why they differ matters: on [-1, 1], ``x**2`` maps fat (-110 HU, x = -1) and bone (x = +1) to
the same value and the cube root of a negative number needs a sign convention; on [0, 1] both
powers are monotonic in HU, so nothing folds and no sign question arises. The paper's variant
is kept for models trained that way (``cbrt`` keeps the sign there).

The number of channels is never guessed: a model card lists its inputs one by one
(:func:`channel_set_inputs` writes that list for a named set), and
:func:`channel_set_arrays` refuses a count the set does not define.

Example:
    >>> ct_crop = np.linspace(-300, 300, 64, dtype=np.float32).reshape(4, 4, 4)   # HU
    >>> pet_crop = np.linspace(0, 12, 64, dtype=np.float32).reshape(4, 4, 4)      # SUV, on the same grid
    >>> x = channel_set_arrays("seed002", ct_crop, pet_crop, n_channels=4)   # (4, z, y, x) in [0, 1]
    >>> x.shape, round(float(x.min()), 4), round(float(x.max()), 4)
    ((4, 4, 4, 4), 0.0, 1.0)
    >>> [i["name"] for i in channel_set_inputs("seed002", 4)]
    ['CT', 'ct_sq', 'ct_cbrt', 'PET']
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..image import Image

CT_WINDOW_HU = (-110.0, 190.0)                 # the paper's window (-> [-1, 1])
CT_WINDOW_RELEASED_HU = (-105.0, 195.0)        # the released code's: level 45, width 300 (-> [0, 1])
RELEASED_EPS = 1e-6                            # the released min-max's denominator term
CHANNEL_SETS = {"seed002": (2, 4, 6), "seed002_paper": (4,)}
DEFAULT_CHANNEL_SET = "seed002"


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


# ---- the released variant and the named channel sets ------------------------------------------

def window_ct_01(ct: Image | np.ndarray, lo: float = CT_WINDOW_RELEASED_HU[0],
                 hi: float = CT_WINDOW_RELEASED_HU[1]) -> np.ndarray:
    """CT clipped to ``[lo, hi]`` HU and mapped to [0, 1] (seed 002's released ``apply_window``)."""
    if not hi > lo:
        raise ValueError(f"CT window needs hi > lo, got [{lo}, {hi}]")
    x = _array(ct).astype(np.float32)
    return np.clip((x - np.float32(lo)) / np.float32(hi - lo + RELEASED_EPS), 0.0, 1.0).astype(np.float32)


def minmax_released(values: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min + 1e-6)`` over the array: seed 002's ``apply_transforms`` normalisation."""
    x = np.asarray(values, dtype=np.float32)
    return ((x - x.min()) / np.float32(float(x.max()) - float(x.min()) + RELEASED_EPS)).astype(np.float32)


def _check_set(name: str, n_channels: int) -> None:
    if name not in CHANNEL_SETS:
        raise InputError(f"unknown channel set {name!r}", None, f"use one of {', '.join(CHANNEL_SETS)}")
    if int(n_channels) not in CHANNEL_SETS[name]:
        raise InputError(f"channel set {name!r} has no {n_channels}-channel form", None,
                         f"declare {' or '.join(map(str, CHANNEL_SETS[name]))} channels in the model card")


def channel_set_arrays(name: str, ct: Image | np.ndarray, pet: Image | np.ndarray, n_channels: int) -> np.ndarray:
    """The ``n_channels`` input channels of the named set on one crop (float32, ``(C, z, y, x)``).

    ``seed002``: x = min-max of the [-105, 195] HU window over the crop, p = min-max PET;
    2 -> ``[x, p]``, 4 -> ``[x, x^2, x^(1/3), p]``, 6 -> ``[x, x^2, x^(1/3), p, p^2, p^(1/3)]``.
    ``seed002_paper``: 4 -> :func:`enhanced_channels`.
    """
    _check_set(name, n_channels)
    c, p = _array(ct), _array(pet)
    if c.shape != p.shape:
        raise InputError(f"CT {c.shape} and PET {p.shape} are not on the same grid", None,
                         "resample the PET onto the CT grid first (image.resample_to)")
    if name == "seed002_paper":
        return enhanced_channels(c, p)
    return seed002_stack(minmax_released(window_ct_01(c)), minmax_released(p), n_channels)


def seed002_stack(x: np.ndarray, q: np.ndarray, n_channels: int) -> np.ndarray:
    """The released set's channels from the prepared CT ``x`` and PET ``q`` (both in [0, 1]).

    2 -> ``[x, q]``, 4 -> ``[x, x^2, x^(1/3), q]``, 6 -> ``[x, x^2, x^(1/3), q, q^2, q^(1/3)]``.
    """
    _check_set("seed002", n_channels)
    x = np.clip(np.asarray(x, np.float32), 0.0, None)
    q = np.clip(np.asarray(q, np.float32), 0.0, None)
    if n_channels == 2:
        out = [x, q]
    elif n_channels == 4:
        out = [x, x * x, np.power(x, 1.0 / 3.0), q]
    else:
        out = [x, x * x, np.power(x, 1.0 / 3.0), q, q * q, np.power(q, 1.0 / 3.0)]
    return np.stack(out).astype(np.float32)


def channel_set_inputs(name: str, n_channels: int) -> list[dict]:
    """The model-card ``inputs`` list of a named set (what :func:`channel_set_arrays` computes, by name).

    The released set's CT scheme is ``window01`` with ``minmax``; PET ``range`` with the released
    ``eps``; powers are derived channels (``ct_sq``, ``ct_cbrt``, ``pet_sq``, ``pet_cbrt``)
    computed from the normalised base channel (:mod:`HNTumorSegLib.pipeline.channels`).
    """
    _check_set(name, n_channels)
    none = {"type": "none"}
    if name == "seed002_paper":
        return [{"name": "CT", "normalisation": {"type": "window", "lo": CT_WINDOW_HU[0], "hi": CT_WINDOW_HU[1]}},
                {"name": "ct_sq", "derived_from": "CT", "normalisation": dict(none)},
                {"name": "ct_cbrt", "derived_from": "CT", "normalisation": dict(none)},
                {"name": "PET", "normalisation": {"type": "range"}}]
    ct = {"name": "CT", "normalisation": {"type": "window01", "lo": CT_WINDOW_RELEASED_HU[0],
                                          "hi": CT_WINDOW_RELEASED_HU[1], "minmax": True}}
    pet = {"name": "PET", "normalisation": {"type": "range", "eps": RELEASED_EPS}}
    powers_ct = [{"name": "ct_sq", "derived_from": "CT", "normalisation": dict(none)},
                 {"name": "ct_cbrt", "derived_from": "CT", "normalisation": dict(none)}]
    powers_pet = [{"name": "pet_sq", "derived_from": "PET", "normalisation": dict(none)},
                  {"name": "pet_cbrt", "derived_from": "PET", "normalisation": dict(none)}]
    if n_channels == 2:
        return [ct, pet]
    if n_channels == 4:
        return [ct, *powers_ct, pet]
    return [ct, *powers_ct, pet, *powers_pet]
