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
* a field that places voxels not finite (``qoffset_x`` ... when ``qform_code`` > 0, ``srow_*``
  when ``sform_code`` > 0), or a quaternion ``b, c, d`` that is no rotation (issue 22: ITK reads a
  NaN ``qoffset_x`` as 0, a silent shift): checked on the raw header bytes, before SimpleITK;
* non-finite spacing or origin from any reader.

* a volume too thin for the steps that run on it (issue 25: a 2-slice CT + PET killed the
  worker by SIGSEGV inside ITK's B-spline resampling): :func:`check_extent`, before ITK sees it.

Warned about (a line in the progress stream and in the result's ``warnings``), since a run is
still possible but the user should look: an image that is constant (no contrast at all), one
with values beyond +-1e30 (an overflowed export), and a complex image (its magnitude is used).

Example:
    >>> import SimpleITK as sitk
    >>> sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkInt16), "t2.nii.gz")
    >>> check_nifti_header(Path("t2.nii.gz"), "T2 image")    # a sound header: nothing; a zero pixdim: InputError
    >>> from HNTumorSegLib.image import Image
    >>> content_warnings(Image(np.zeros((4, 4, 4), np.int16)), "T2 image")
    ['T2 image is constant (every voxel 0): there is nothing to segment']
    >>> check_extent(Image(np.zeros((2, 64, 64), np.int16)), "ct.nii.gz", "CT image")
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.InputError: ct.nii.gz: CT image has 2 voxels along z (64 x 64 x 2); ...
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
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
    # nifti1_io's rule (nifti_quatern_to_mat44): a < 1e-7 is a 180-degree rotation, a = 0 and (b, c, d)
    # normalised. With float32 b, c, d a true 0 comes out as ~5e-8, whose root (2e-4) would tilt the
    # grid by a few micrometres and make qform and sform "disagree" on an oblique scan (issue 25).
    a = math.sqrt(a2) if a2 >= 1e-7 else 0.0
    if a2 < 1e-7:
        n = math.sqrt(b * b + c * c + d * d)
        b, c, d = b / n, c / n, d / n
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])


#: Where the fields that place voxels lie: NIfTI-1 (348-byte header, float32) and NIfTI-2 (540, float64).
#: name -> (offset, struct code of one value, count).
_LAYOUT = {
    348: {"dim": (40, "h", 8), "pixdim": (76, "f", 8), "qform_code": (252, "h", 1), "sform_code": (254, "h", 1),
          "quatern_b": (256, "f", 1), "quatern_c": (260, "f", 1), "quatern_d": (264, "f", 1),
          "qoffset_x": (268, "f", 1), "qoffset_y": (272, "f", 1), "qoffset_z": (276, "f", 1),
          "srow_x": (280, "f", 4), "srow_y": (296, "f", 4), "srow_z": (312, "f", 4)},
    540: {"dim": (16, "q", 8), "pixdim": (104, "d", 8), "qform_code": (344, "i", 1), "sform_code": (348, "i", 1),
          "quatern_b": (352, "d", 1), "quatern_c": (360, "d", 1), "quatern_d": (368, "d", 1),
          "qoffset_x": (376, "d", 1), "qoffset_y": (384, "d", 1), "qoffset_z": (392, "d", 1),
          "srow_x": (400, "d", 4), "srow_y": (432, "d", 4), "srow_z": (464, "d", 4)},
}
#: How far ``quatern_b^2 + c^2 + d^2`` may pass 1 (float32 rounding of a unit quaternion) before
#: the quaternion counts as inconsistent: readers then normalise it silently, each its own way.
QUATERNION_TOL = 1e-3


def nifti_header_fields(data: bytes) -> dict | None:
    """The fields that place voxels, parsed from raw header bytes with :mod:`struct` (both
    endians, NIfTI-1 and -2); None when ``data`` is no complete NIfTI header.

    Why raw bytes: SimpleITK (and nibabel) turn a NaN offset into 0 or a 0 voxel size into 1 mm
    without a word (issue 22: a silent 43 mm shift), so the header must be read before them.
    """
    for endian in ("<", ">"):
        size = struct.unpack(f"{endian}i", data[:4])[0] if len(data) >= 4 else 0
        if size in _LAYOUT:
            break
    else:
        return None
    if len(data) < size:
        return None
    fields: dict = {}
    for name, (offset, code, count) in _LAYOUT[size].items():
        values = struct.unpack_from(f"{endian}{count}{code}", data, offset)
        fields[name] = values[0] if count == 1 else list(values)
    return fields


def check_nifti_header(path: Path, what: str, data: bytes | None = None) -> None:
    """InputError naming the field for the NIfTI header problems of the module docstring.

    Checked are the fields a reader uses to place voxels: ``pixdim[1..3]`` always;
    ``quatern_b/c/d``, ``qoffset_x/y/z`` and ``pixdim[0]`` (qfac) when ``qform_code`` > 0;
    ``srow_x/y/z`` when ``sform_code`` > 0. A field whose code is 0 is not used by any reader.
    """
    h = nifti_header_fields(data[:540] if data is not None else _read_header(path))   # ``data``: the
    # file's bytes when the caller has already decompressed them (read_image): not gunzipped again
    if h is None:
        return

    def bad(field: str, problem: str, fix: str = _FIX) -> InputError:
        return InputError(f"{what}: header field {field} {problem}", path, fix)

    pixdim = h["pixdim"]
    ndim = min(max(int(h["dim"][0]), 1), 3)
    for axis in range(1, ndim + 1):
        value = pixdim[axis]
        if not math.isfinite(value):
            raise bad(f"pixdim[{axis}] (voxel size)", f"is not a finite number ({value})")
        if value == 0:
            raise bad(f"pixdim[{axis}] (voxel size)", "is 0")
        if value < 0:
            raise bad(f"pixdim[{axis}] (voxel size)", f"is negative ({value:g})")
    qcode, scode = h["qform_code"], h["sform_code"]
    quat = np.array([h[k] for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")])
    if qcode > 0:
        for name in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"):
            if not math.isfinite(h[name]):
                raise bad(f"{name} (qform)", f"is not a finite number ({h[name]}): the image has no place in space")
        if not math.isfinite(pixdim[0]):
            raise bad("pixdim[0] (qfac, qform)", f"is not a finite number ({pixdim[0]})")
        norm2 = float(np.sum(quat[:3] ** 2))
        if norm2 > 1.0 + QUATERNION_TOL:
            raise bad("quatern_b/c/d (qform)", f"is no rotation (b^2+c^2+d^2 = {norm2:.4g} > 1)")
    srow = np.array([h["srow_x"], h["srow_y"], h["srow_z"]], dtype=float)
    if scode > 0:
        for row, name in zip(srow, ("srow_x", "srow_y", "srow_z")):
            for i, value in enumerate(row):
                if not math.isfinite(value):
                    raise bad(f"{name}[{i}] (sform)", f"is not a finite number ({value}): the image has no place in space")
        if abs(np.linalg.det(srow[:, :3])) < 1e-12:
            raise bad("srow (sform)", "is singular: its axes do not span space")
    if qcode > 0 and scode > 0:
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        spacing = np.abs(np.array(pixdim[1:4], float)) * np.array([1.0, 1.0, qfac])
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


#: Fewest voxels along every axis that the pipeline's steps need. Cubic B-spline resampling
#: (every input onto the model's grid, seed 004's head crop from CT and PET) reads order + 1 = 4
#: samples per axis; the other steps (linear resampling, the hot-spot search, nearest-neighbour
#: labels, the tiled network, which pads) need fewer.
BSPLINE_ORDER = 3
MIN_VOXELS_PER_AXIS = BSPLINE_ORDER + 1


def check_extent(image, path, what: str, minimum: int = MIN_VOXELS_PER_AXIS) -> None:
    """InputError when ``image`` has fewer than ``minimum`` voxels along an axis (module docstring)."""
    short = [(axis, n) for axis, n in zip("xyz", image.shape_xyz) if n < minimum]
    if short:
        axis, n = short[0]
        size = " x ".join(str(v) for v in image.shape_xyz)
        raise InputError(f"{what} has {n} voxel{'s' if n != 1 else ''} along {axis} ({size}); at least {minimum} "
                         "along each axis are needed (cubic B-spline resampling)", path,
                         "give the whole scan, not a few slices of it")


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


# ---- one decode of a NIfTI file (issue 27) ---------------------------------------------------------

#: NIfTI ``datatype`` -> numpy dtype for the voxels :func:`decode_nifti` hands out itself
#: (the plain scalar types; anything else - RGB, complex - is left to ITK).
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
                1024: "i8", 1280: "u8"}
_INCOMPLETE = "the file is incomplete or damaged: copy or export it again"


def open_decompressed(path: Path):
    """``path`` opened for reading its decompressed bytes: ISA-L's gzip when installed (about twice
    as fast as Python's zlib 1.2: 0.54 s vs 1.2 s for a 300x512x512 CT, bench/results/io.md), else
    :mod:`gzip`; a plain ``.nii`` as it is."""
    if not path.name.lower().endswith(".gz"):
        return open(path, "rb")
    try:
        from isal import igzip
    except ImportError:
        return gzip.open(path, "rb")
    return igzip.open(path, "rb")


def _decode_errors() -> tuple:
    errors: tuple = (EOFError, OSError, zlib.error)
    try:
        from isal import isal_zlib
    except ImportError:
        return errors
    return errors + (isal_zlib.error,)


@dataclass
class NiftiLayout:
    """Where a NIfTI file's voxels lie and what they are, from its header bytes."""

    size: int            # 348 (NIfTI-1) or 540 (NIfTI-2)
    endian: str
    dims: list[int]      # dim[1..ndim]
    bitpix: int
    offset: int          # vox_offset
    datatype: int
    plain: bool          # single-file NIfTI-1, 3D, no intensity scaling: its voxels are what ITK gives

    @property
    def count(self) -> int:
        return int(np.prod(np.maximum(self.dims, 1))) if self.dims else 0

    @property
    def expected_bytes(self) -> int:
        return self.offset + self.count * max(self.bitpix, 8) // 8


def nifti_layout(head: bytes) -> NiftiLayout | None:
    """The :class:`NiftiLayout` of a file whose first bytes are ``head``; None: no NIfTI header."""
    for endian in ("<", ">"):
        size = struct.unpack(f"{endian}i", head[:4])[0] if len(head) >= 4 else 0
        if size in _LAYOUT:
            break
    else:
        return None
    if len(head) < size:
        return None
    if size == 348:
        dim = struct.unpack_from(f"{endian}8h", head, 40)
        datatype, bitpix = struct.unpack_from(f"{endian}2h", head, 70)
        offset, slope, inter = struct.unpack_from(f"{endian}3f", head, 108)
    else:
        datatype, bitpix = struct.unpack_from(f"{endian}2h", head, 12)
        dim = struct.unpack_from(f"{endian}8q", head, 16)
        offset, slope, inter = struct.unpack_from(f"{endian}q2d", head, 168)
    ndim = int(dim[0]) if 0 < int(dim[0]) <= 7 else 0
    plain = (size == 348 and head[344:348] == b"n+1\0" and ndim == 3 and slope in (0.0, 1.0) and inter == 0.0)
    return NiftiLayout(size, endian, [int(d) for d in dim[1:1 + ndim]], int(bitpix), int(offset), int(datatype), plain)


@dataclass
class NiftiData:
    """A NIfTI file decompressed once (:func:`decode_nifti`): its header bytes and raw voxels."""

    header: bytes                   # the first 540 bytes at most (a NIfTI-1 or -2 header)
    voxels: np.ndarray | None       # (z, y, x) in the file's type, native byte order; None: let ITK read it
    nonfinite: bool = False         # float voxels holding NaN or +-Inf (ITK 5 shows them as 0)


def _voxels(layout: NiftiLayout, head: bytes, body, body_start: int) -> NiftiData:
    """The voxels of ``layout`` from ``body`` (the bytes from file offset ``body_start`` on)."""
    dtype = NIFTI_DTYPES.get(layout.datatype)
    if dtype is None or not layout.dims or max(layout.bitpix, 8) // 8 != np.dtype(dtype).itemsize:
        return NiftiData(head, None)
    raw = np.frombuffer(body, f"{layout.endian}{dtype}", count=layout.count, offset=layout.offset - body_start)
    nonfinite = raw.dtype.kind == "f" and not bool(np.isfinite(raw).all())
    if not layout.plain:
        return NiftiData(head, None, nonfinite)
    if layout.endian == ">" or not raw.flags.writeable:
        raw = raw.astype(raw.dtype.newbyteorder("="))
    return NiftiData(head, raw.reshape(layout.dims[::-1]), nonfinite)


def decode_nifti(path: Path, what: str) -> NiftiData:
    """Decompress a NIfTI file once: refuse a truncated or corrupt one, return header and voxels.

    Why: ITK reads a truncated ``.nii.gz`` without a word (missing voxels become 0), ITK 5's
    NIfTI reader turns NaN/Inf into 0 (fixed only in ITK 6, InsightSoftwareConsortium/ITK#6683),
    Python's gzip raises a bare EOFError, and decompressing here for the checks and again in ITK
    cost twice the time (issue 27). So the file is decompressed once into one buffer, the voxel
    bytes the header promises are counted, the gzip CRC is checked (read to the end), and for a
    plain 3D scalar NIfTI-1 the voxels come back as a writable array;
    :func:`HNTumorSegLib.image.read_image` takes only the geometry from ITK (its header).
    """
    try:
        with open_decompressed(path) as fh:
            head = fh.read(348)
            if len(head) >= 4 and struct.unpack("<i", head[:4])[0] in (540, 0x1C020000):
                head += fh.read(540 - 348)   # NIfTI-2
            layout = nifti_layout(head)
            if layout is None:
                problem = "has no NIfTI header" if len(head) < 4 or struct.unpack("<i", head[:4])[0] not in (
                    348, 540, 0x5C010000, 0x1C020000) else "is truncated inside its header"
                raise InputError(f"cannot read the {what}: the file {problem}", path, _INCOMPLETE)
            if layout.offset < len(head):     # voxels said to start inside the header: malformed, read it all
                rest = fh.read()
                got, total, body, start = len(rest), len(head) + len(rest), head + rest, 0
            else:
                extensions = fh.read(layout.offset - len(head))
                body = bytearray(layout.expected_bytes - layout.offset)   # the voxels only: no copy after
                view, got = memoryview(body), 0
                while got < len(body):
                    n = fh.readinto(view[got:])
                    if not n:
                        break
                    got += n
                total, start = len(head) + len(extensions) + got, layout.offset
            while fh.read(1 << 20):   # to the end: gzip checks its CRC there
                pass
    except InputError:
        raise
    except _decode_errors() as exc:
        raise InputError(f"cannot read the {what}: the file is truncated or corrupt ({exc.__class__.__name__})",
                         path, _INCOMPLETE) from None
    if layout.dims and total < layout.expected_bytes:
        raise InputError(f"cannot read the {what}: the file is truncated ({total} of {layout.expected_bytes} bytes)",
                         path, _INCOMPLETE)
    return _voxels(layout, head, body, start)


def decode_nifti_bytes(data: bytes) -> NiftiData | None:
    """:func:`decode_nifti` for a whole file's decompressed bytes already in memory (None: not NIfTI)."""
    layout = nifti_layout(data[:540])
    if layout is None or len(data) < layout.expected_bytes:
        return None
    return _voxels(layout, data[:layout.size], data, 0)
