"""Geometry sanity and content warnings for an image being read (issue 11).

Refused (InputError naming the file and the header field, exit 2), because the result would be
silently wrong:

* NIfTI ``pixdim[1..3]`` zero, negative or not finite: ITK turns 0 into 1 mm without a word
  (a 0.5 mm image would be segmented as 1 mm, volumes 8x off);
* a singular orientation: the sform's 3x3 (NIfTI) or the direction matrix (any format) with a
  determinant near 0 - no voxel has a place in space;
* qform and sform both set (codes > 0) but disagreeing beyond :data:`QFORM_SFORM_TOL_MM`: two
  different places for one image; ITK picks one silently and the tools downstream may pick the
  other. Choice of tolerance: 1e-3 mm per voxel step for the 3x3 part and 0.01 mm for the
  offset - far above float32 rounding of a header, far below any real registration;
* non-finite spacing or origin from any reader.

Warned about (a line in the progress stream and in the result's ``warnings``), since a run is
still possible but the user should look: an image that is constant (no contrast at all), one
with values beyond +-1e30 (an overflowed export), and a complex image (its magnitude is used).

Example:
    >>> check_nifti_header(Path("t2.nii.gz"), "T2 image")    # InputError on a zero pixdim
    >>> content_warnings(image, "T2 image")
    ['T2 image is constant (every voxel 0): there is nothing to segment']
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

QFORM_SFORM_TOL_MM = (1e-3, 1e-2)   # 3x3 part (mm per voxel step), offset (mm)
HUGE_VALUE = 1e30
_FIX = "fix the header (e.g. re-export the image from the scanner or the converter that made it)"


def _read_header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(540)
    except (EOFError, OSError, zlib.error):
        return b""  # the completeness check reports it


def _quaternion_matrix(b: float, c: float, d: float) -> np.ndarray:
    """The NIfTI qform rotation (nifti1.h, ``quatern_b/c/d``; ``a`` from unit length)."""
    a2 = 1.0 - (b * b + c * c + d * d)
    a = math.sqrt(a2) if a2 > 0 else 0.0
    if a2 < 0:  # not quite unit length: normalise as nifti1_io does
        n = math.sqrt(b * b + c * c + d * d)
        b, c, d = b / n, c / n, d / n
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])


def check_nifti_header(path: Path, what: str) -> None:
    """InputError for the NIfTI header problems of the module docstring (NIfTI-1 and -2)."""
    data = _read_header(path)
    for endian in ("<", ">"):
        size = int(np.frombuffer(data[:4], f"{endian}i4")[0]) if len(data) >= 4 else 0
        if size in (348, 540):
            break
    else:
        return
    if len(data) < size:
        return
    if size == 348:
        f, i16 = f"{endian}f4", f"{endian}i2"
        dims = np.frombuffer(data[40:56], i16).astype(int)
        pixdim = np.frombuffer(data[76:108], f).astype(float)
        qcode, scode = (int(x) for x in np.frombuffer(data[252:256], i16))
        quat = np.frombuffer(data[256:280], f).astype(float)
        srow = np.frombuffer(data[280:328], f).astype(float).reshape(3, 4)
    else:
        f, i32 = f"{endian}f8", f"{endian}i4"
        dims = np.frombuffer(data[16:80], f"{endian}i8").astype(int)
        pixdim = np.frombuffer(data[104:168], f).astype(float)
        qcode, scode = (int(x) for x in np.frombuffer(data[344:352], i32))
        quat = np.frombuffer(data[352:400], f).astype(float)
        srow = np.frombuffer(data[400:496], f).astype(float).reshape(3, 4)
    ndim = min(max(int(dims[0]), 1), 3)
    for axis in range(1, ndim + 1):
        value = pixdim[axis]
        if not math.isfinite(value):
            raise InputError(f"{what}: header field pixdim[{axis}] (voxel size) is not a finite number", path, _FIX)
        if value == 0:
            raise InputError(f"{what}: header field pixdim[{axis}] (voxel size) is 0", path, _FIX)
        if value < 0:
            raise InputError(f"{what}: header field pixdim[{axis}] (voxel size) is negative ({value:g})", path, _FIX)
    if scode > 0:
        if not np.isfinite(srow).all():
            raise InputError(f"{what}: header field srow (sform) holds a non-finite number", path, _FIX)
        if abs(np.linalg.det(srow[:, :3])) < 1e-12:
            raise InputError(f"{what}: header field srow (sform) is singular: its axes do not span space", path, _FIX)
    if qcode > 0 and scode > 0 and np.isfinite(quat).all():
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        spacing = np.abs(pixdim[1:4]) * np.array([1.0, 1.0, qfac])
        q_linear = _quaternion_matrix(*quat[:3]) @ np.diag(spacing)
        lin_tol, off_tol = QFORM_SFORM_TOL_MM
        lin = float(np.abs(q_linear - srow[:, :3]).max())
        off = float(np.abs(quat[3:6] - srow[:, 3]).max())
        if lin > lin_tol or off > off_tol:
            raise InputError(f"{what}: header fields qform and sform disagree (by {max(lin, off):.3g} mm): "
                             "two different positions for one image", path,
                             "re-export the image, or set qform_code or sform_code to 0 for the wrong one")


def check_geometry(image, path: Path, what: str) -> None:
    """InputError for non-finite or non-positive spacing, non-finite origin or a singular direction."""
    spacing = np.asarray(image.spacing, float)
    if not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise InputError(f"{what}: the voxel size (spacing) {tuple(spacing)} is not positive and finite", path, _FIX)
    if not np.isfinite(np.asarray(image.origin, float)).all():
        raise InputError(f"{what}: the origin is not finite", path, _FIX)
    direction = np.asarray(image.direction, float)
    if not np.isfinite(direction).all() or abs(np.linalg.det(direction)) < 1e-6:
        raise InputError(f"{what}: the direction (orientation) matrix is singular", path, _FIX)


def content_warnings(image, what: str) -> list[str]:
    """Warnings (module docstring) for a readable image whose content looks wrong."""
    arr = image.array
    out = []
    if arr.size and np.issubdtype(arr.dtype, np.number):
        lo, hi = float(arr.min()), float(arr.max())
        if lo == hi:
            out.append(f"{what} is constant (every voxel {lo:g}): there is nothing to segment")
        elif max(abs(lo), abs(hi)) > HUGE_VALUE:
            out.append(f"{what} holds values up to {max(abs(lo), abs(hi)):.3g}: check the export (overflow?)")
    return out


def patch_warnings(image, spacing_xyz, patch_zyx, what: str) -> list[str]:
    """A warning when ``image`` covers less than one model patch along an axis (it gets padded).

    ``spacing_xyz``: the model's working spacing (None = the image's own); ``patch_zyx``: its patch.
    """
    if not patch_zyx:
        return []
    own = np.asarray(image.spacing, float)
    work = own if spacing_xyz is None else np.asarray(spacing_xyz, float)
    voxels_xyz = np.asarray(image.shape_xyz, float) * own / work
    short = [(axis, int(round(n)), int(p)) for axis, n, p in zip("xyz", voxels_xyz, list(patch_zyx)[::-1])
             if round(n) < int(p)]
    if not short:
        return []
    detail = ", ".join(f"{axis} {n} < {p}" for axis, n, p in short)
    return [f"{what} is smaller than one model patch ({detail} voxels at the model's spacing): "
            "it is padded; check the result near its borders"]
