"""One image type that keeps voxels and geometry together, its reading, writing and resampling.

Conventions (the same as SimpleITK and ITK, so files round-trip exactly):

* ``Image.array`` is indexed ``[k, j, i]`` = ``[z, y, x]`` (``sitk.GetArrayFromImage`` order);
* ``spacing`` and ``origin`` are ``(x, y, z)`` in millimetres, ``origin`` and all physical
  points in **LPS** (ITK's world);
* ``direction`` is a 3x3 matrix whose *columns* are the directions of the i, j, k axes.

The physical point of voxel index ``(i, j, k)`` is ``origin + direction @ (spacing * (i, j, k))``.
Slicer and ``boxes.json`` speak **RAS**: :func:`lps_to_ras` / :func:`ras_to_lps` convert
(they flip the sign of x and y).

Example:
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> write_hntsmrg_cohort("case", 1, shape=(8, 24, 24))    # a tiny phantom case
    ['1']
    >>> img = read_image("case/1/midRT/1_midRT_T2.nii.gz")
    >>> mask = read_image("case/1/preRT/1_preRT_mask.nii.gz", label=True)
    >>> on_grid = resample_to(mask, img, label=True)   # nearest neighbour, in physical space
    >>> write_image(on_grid, "out/mask_on_t2.nii.gz")
    PosixPath('out/mask_on_t2.nii.gz')
    >>> on_grid.array.shape == img.array.shape, on_grid.spacing == img.spacing
    (True, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .fileio import atomic_path
from .image_checks import (NiftiData, check_geometry, check_nifti_header, content_warnings, decode_nifti,
                           decode_nifti_bytes)
from .protect import check_regular_input

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert points (..., 3) from ITK's LPS to Slicer's RAS (and back: the map is its own inverse)."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the axis-aligned box ``lo..hi`` (any one space)."""
    return np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])],
                    dtype=float)


def index_box_to_ras(image: Image, lo_ijk, hi_ijk) -> tuple[np.ndarray, np.ndarray]:
    """RAS min and max of the voxels ``lo_ijk..hi_ijk`` (inclusive, i j k order), edges included.

    Here (ground) and not with the lesion boxes in :mod:`~HNTumorSegLib.prompts.boxes`: export's
    statistics CSV needs it too, and export sits below prompts (docs/design.md, inner map).
    """
    lo = np.asarray(lo_ijk, dtype=float) - 0.5
    hi = np.asarray(hi_ijk, dtype=float) + 0.5
    ras = lps_to_ras(image.index_to_physical(box_corners(lo, hi)))
    return ras.min(axis=0), ras.max(axis=0)


@dataclass
class Image:
    """A 3D image: voxels plus geometry. See the module docstring for the conventions."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    #: Warnings found when it was read (:func:`HNTumorSegLib.image_checks.content_warnings`).
    notes: list = field(default_factory=list, compare=False, repr=False)
    #: The file whose voxels these are, exactly as read (:func:`read_image`); None once changed or
    #: made in memory. nnU-Net folders get the array itself rather than the file read again (issue 27).
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if self.array.ndim != 3:
            raise ValueError(f"Image needs a 3D array, got shape {self.array.shape}")

    # ---- geometry -------------------------------------------------------------------
    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Size along (i, j, k), as SimpleITK's ``GetSize()``."""
        z, y, x = self.array.shape
        return (x, y, z)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def index_to_lps_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix mapping (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def index_to_ras_matrix(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS millimetres (Slicer's IJKToRAS)."""
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        return flip @ self.index_to_lps_matrix()

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous indices (..., 3) in (i, j, k) order to LPS points (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """LPS points (..., 3) to continuous (i, j, k) indices (..., 3)."""
        inv = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return (np.asarray(points, dtype=float) - np.asarray(self.origin)) @ inv.T

    def corners_lps(self) -> np.ndarray:
        """The 8 corners of the image's extent (voxel edges, not centres) in LPS, shape (8, 3)."""
        x, y, z = self.shape_xyz
        lo, hi = -0.5, np.array([x, y, z]) - 0.5
        corners = np.array([[a, b, c] for a in (lo, hi[0]) for b in (lo, hi[1]) for c in (lo, hi[2])])
        return self.index_to_physical(corners)

    def same_grid(self, other: "Image", tol: float = 1e-4) -> bool:
        """True when both images share size, spacing, origin and direction (within ``tol``)."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 100)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def with_array(self, array: np.ndarray) -> "Image":
        """A new image on the same grid holding ``array``."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.array.shape}")
        return Image(array, self.spacing, self.origin, self.direction.copy())

    # ---- SimpleITK bridge ------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        arr = self.array
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.flatten()))
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image) -> "Image":
        return cls(
            sitk.GetArrayFromImage(img),
            img.GetSpacing(),
            img.GetOrigin(),
            np.array(img.GetDirection()).reshape(3, 3),
        )


# ---- reading and writing ---------------------------------------------------------------

def _check_nifti_complete(path: Path, what: str) -> bytes:
    """Raise :class:`InputError` when a NIfTI file is truncated or its gzip stream is corrupt;
    returns the file's header bytes (:func:`~HNTumorSegLib.image_checks.decode_nifti` reads every voxel byte)."""
    return decode_nifti(path, what).header


def _image_from_nifti(nifti: NiftiData, p: Path) -> Image | None:
    """The decoded voxels with ITK's geometry for them (an :class:`Image`), or None when ITK
    would read the file into another type or shape (then ITK reads it: a second decode, rare)."""
    if nifti.voxels is None:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.ReadImageInformation()
    arr = nifti.voxels
    itk_type = sitk.GetImageFromArray(np.zeros((1, 1, 1), arr.dtype)).GetPixelID()
    if (reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or reader.GetPixelID() != itk_type
            or tuple(reader.GetSize()) != arr.shape[::-1]):
        return None
    return Image(arr, reader.GetSpacing(), reader.GetOrigin(), np.array(reader.GetDirection()).reshape(3, 3))


#: DICOM objects that hold contours, not an image: read as one, a SEG gave "labels [255]" or, worse,
#: its frames in file order as a volume (issue 25). Commands that take contours read them
#: (:mod:`HNTumorSegLib.dicom.contours_in`); anywhere else the file is named for what it is.
CONTOUR_OBJECTS = {"1.2.840.10008.5.1.4.1.1.66.4": "a DICOM SEG (segmentation object)",
                   "1.2.840.10008.5.1.4.1.1.481.3": "a DICOM RTSTRUCT (structure set)"}


def _refuse_contour_object(p: Path, what: str, label: bool) -> None:
    try:
        with open(p, "rb") as fh:
            if fh.read(132)[128:] != b"DICM":
                return
        import pydicom

        header = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - not readable as DICOM here: SimpleITK says why below
        return
    kind = CONTOUR_OBJECTS.get(str(header.get("SOPClassUID", "") or ""))
    if kind:
        where = "segment --prior, evaluate --ref/--pred, export/biomarkers/outcome --labels"
        raise InputError(f"{what} is {kind}, not {'a label map' if label else 'an image'}", p,
                         f"give a label map here (NIfTI, NRRD); the commands that read contours take it: {where}"
                         if label else "give the image itself (NIfTI, NRRD, or its DICOM series folder)")


def read_image(path: str | os.PathLike, label: bool = False, name: str | None = None) -> Image:
    """Read a 3D NIfTI, NRRD or MetaImage file.

    A DICOM series folder is read by :func:`HNTumorSegLib.dicom.read.read_volume` (series
    choice, checks, PET in SUV), which ends with the same checks (:func:`checked_image`); it
    lives above this module (imports point down only, docs/design.md "Inner map").

    ``label=True`` checks that values are whole numbers and returns ``uint8``.
    ``name`` is a human name for messages ("the CT", "the prior"). Every failure raises
    :class:`InputError` naming the file and what to do.
    """
    p = Path(path)
    what = name or "image"
    if not p.exists():
        raise InputError(f"{what} file does not exist", p, "check the path")
    check_regular_input(p, what)   # a FIFO or device would block the reader forever
    nifti = None
    try:
        if p.is_dir():
            raise InputError(f"{what} is a folder, not an image file", p,
                             "give a NIfTI, NRRD or MetaImage file (a DICOM series folder is read where a "
                             "command takes one: segment --input, export --source)")
        if p.name.lower().endswith((".nii", ".nii.gz")):
            nifti = decode_nifti(p, what)     # the one decode (issue 27)
            check_nifti_header(p, what, nifti.header)   # zero/negative pixdim, singular sform, qform != sform
            decoded = _image_from_nifti(nifti, p)
            if isinstance(decoded, Image):
                if nifti.nonfinite:
                    raise InputError(f"{what} holds NaN or infinite values", p, "fix or re-export the image")
                decoded.source = str(p)     # these voxels are the file's, as ITK would give them
                return check_decoded(decoded, p, label=label, what=what)
        else:
            _refuse_contour_object(p, what, label)
        img = sitk.ReadImage(str(p))
    except InputError:
        raise
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(f"cannot read the {what} ({reason[:120]})", p,
                         "check the file is a complete NIfTI, NRRD or DICOM image") from None
    return checked_image(img, p, label=label, what=what, nonfinite=bool(nifti and nifti.nonfinite))


def checked_image(img: sitk.Image, p: Path, label: bool = False, what: str = "image",
                  nifti_bytes: bytes | None = None, nonfinite: bool = False) -> Image:
    """The checks every image read passes (scalar, 3D, finite, labels whole numbers), as an :class:`Image`.

    Shared by :func:`read_image` and the DICOM series reader (:mod:`HNTumorSegLib.dicom.read`).
    ``nonfinite``: the file's raw voxels held NaN/Inf (ITK 5 shows them as 0); ``nifti_bytes``:
    the same told by a whole NIfTI file's bytes (kept for older callers).
    """
    notes = []
    if "complex" in img.GetPixelIDTypeAsString():
        img = sitk.ComplexToModulus(img)
        notes.append(f"{what} is complex-valued: its magnitude is used")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} has {img.GetNumberOfComponentsPerPixel()} components per voxel", p,
                         "give a scalar (grey-level) image")
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise InputError(f"{what} is {img.GetDimension()}D, a 3D volume is needed", p,
                         "give a single 3D volume (split 4D series first)")
    if nonfinite or (nifti_bytes is not None and _nifti_has_nonfinite(nifti_bytes)):
        raise InputError(f"{what} holds NaN or infinite values", p, "fix or re-export the image")
    return check_decoded(Image.from_sitk(img), p, label=label, what=what, notes=notes)


def _nifti_has_nonfinite(data: bytes) -> bool:
    """True when the whole (decompressed) bytes of a float NIfTI-1 file hold NaN or +-Inf voxels."""
    raw = decode_nifti_bytes(data)
    return bool(raw is not None and raw.nonfinite)


def check_decoded(image: Image, p: Path, label: bool = False, what: str = "image", notes: list | None = None) -> Image:
    """The checks on the decoded voxels (one pass each, no second read; issue 27): size, geometry,
    finite values, content warnings, and for ``label=True`` whole numbers 0..255 as ``uint8``."""
    if min(image.shape_xyz) < 2 and not label:
        raise InputError(f"{what} is a single slice (size {image.shape_xyz})", p, "give a 3D volume")
    check_geometry(image, p, what)
    if not label:
        image.notes = list(notes or []) + content_warnings(image, what)
    if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).all():
        raise InputError(f"{what} holds NaN or infinite values", p, "fix or re-export the image")
    if label:
        arr = image.array
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.mod(arr, 1) == 0):
                raise InputError(f"{what} is not a label map (non-integer values)", p,
                                 "give a label map with values 0, 1 (GTVp), 2 (GTVn)")
        if arr.min() < 0 or arr.max() > 255:
            raise InputError(f"{what} has label values outside 0..255", p,
                             "give a label map with values 0, 1 (GTVp), 2 (GTVn)")
        if arr.dtype != np.uint8:
            image.array, image.source = arr.astype(np.uint8), None
    return image


def check_labels(label: Image, allowed=(0, 1, 2), path: str | os.PathLike | None = None,
                 name: str = "label map") -> None:
    """Raise :class:`InputError` when ``label`` holds values outside ``allowed``."""
    values = np.unique(label.array)
    bad = sorted(set(values.tolist()) - set(allowed))
    if bad:
        raise InputError(f"{name} holds labels {bad} outside {{{', '.join(map(str, allowed))}}}", path,
                         "use 0 background, 1 GTVp, 2 GTVn")


def write_image(image: Image, path: str | os.PathLike, compress: bool = True, verify: bool = True) -> Path:
    """Write, verify, then rename (:mod:`HNTumorSegLib.fileio`): a temporary file beside ``path``
    is written, read back (header and voxel count) and only then renamed over ``path``.

    A crash, an error or a full disk never leaves a half-written file at ``path``, and an
    earlier file there stays byte-identical.

    ``verify=False`` (with ``compress=False``) is for hand-off files our own client writes for our own
    worker (issue 27): not read back - the worker reads them once, with every check - only their size
    compared with header plus voxels from ``stat`` (a full disk still leaves a short file, caught here).
    Outputs the user keeps are written with ``verify=True``.
    """
    with atomic_path(path) as tmp:
        write_sitk_verified(image.to_sitk(), tmp, path, compress, verify=verify)
    return Path(path)


def write_sitk_verified(img: sitk.Image, tmp: str | os.PathLike, final: str | os.PathLike,
                        compress: bool = True, verify: bool = True) -> None:
    """Write ``img`` to the temporary file ``tmp`` and prove it complete; errors name ``final``.

    Needed because ``sitk.WriteImage`` does not raise when the disk fills up: it leaves a short
    file. The check reads the header back (size, components) and, for NIfTI, every voxel byte
    the header promises (:func:`_check_nifti_complete`); other formats are read back whole.
    ``verify=False``: an uncompressed file's size from ``stat`` instead (no read; :func:`write_image`).
    """
    from .errors import EnvironmentFault
    from .fileio import free_space_text

    tmp = Path(tmp)
    fix = "free disk space or write to another disk; earlier outputs were kept"
    try:
        sitk.WriteImage(img, str(tmp), useCompression=compress)
        size = tmp.stat().st_size
    except (RuntimeError, OSError) as exc:
        reason = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else "the writer failed"
        raise EnvironmentFault(f"cannot write the image ({reason}; {free_space_text(tmp.parent)})", final, fix) from None
    if not verify and not compress and not tmp.name.lower().endswith(".gz"):   # a .nii.gz is compressed anyway
        voxels = int(np.prod(img.GetSize())) * img.GetNumberOfComponentsPerPixel() * img.GetSizeOfPixelComponent()
        if size < voxels + 348:
            raise EnvironmentFault(f"cannot write the image: it was written short ({size} bytes) - is the disk full? "
                                   f"({free_space_text(tmp.parent)})", final, fix)
        return
    try:
        if size <= 0:
            raise InputError("the file is empty", tmp)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp))
        reader.ReadImageInformation()
        if tuple(reader.GetSize()) != tuple(img.GetSize()):
            raise InputError(f"reads back with size {reader.GetSize()}, not {img.GetSize()}", tmp)
        if tmp.name.lower().endswith((".nii", ".nii.gz")):
            _check_nifti_complete(tmp, "written image")
        else:
            sitk.ReadImage(str(tmp))
    except (InputError, RuntimeError, OSError) as exc:
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[-1][:120]
        raise EnvironmentFault(f"cannot write the image: it reads back incomplete ({problem}) - is the disk full? "
                               f"({free_space_text(tmp.parent)})", final, fix) from None


def strip_image_suffix(name: str) -> str:
    """``"case_01__CT.nii.gz"`` -> ``"case_01__CT"``."""
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---- resampling --------------------------------------------------------------------------

_INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}


def resample_to(image: Image, reference: Image, label: bool = False,
                interpolator: str | None = None, default_value: float | None = None) -> Image:
    """Resample ``image`` onto ``reference``'s grid, in physical space.

    Labels use nearest neighbour (no new label values); images use B-spline by default
    (``interpolator="linear"`` for speed). Voxels outside ``image`` get ``default_value``
    (0 for labels, the image's minimum otherwise, so CT outside the scan reads as air).
    """
    if image.same_grid(reference):
        return image.with_array(image.array.copy())
    kind = interpolator or ("nearest" if label else "bspline")
    if default_value is None:
        default_value = 0.0 if label else float(image.array.min())
    src = image.to_sitk()
    if not label and src.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        src = sitk.Cast(src, sitk.sitkFloat32)
    out = sitk.Resample(src, reference.to_sitk(), sitk.Transform(), _INTERPOLATORS[kind], default_value)
    result = Image.from_sitk(out)
    if label:
        result.array = result.array.astype(image.array.dtype)
    return result


def resample_to_spacing(image: Image, spacing: tuple[float, float, float], label: bool = False,
                        interpolator: str | None = None) -> Image:
    """Resample onto a grid of the same extent and direction with a new ``spacing`` (x, y, z)."""
    spacing = tuple(float(s) for s in spacing)
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.shape_xyz, image.spacing, spacing)]
    # keep the physical extent centred: the first voxel centre moves by half the size change
    old_first_edge = -0.5 * np.array(image.spacing)
    new_origin_offset = old_first_edge + 0.5 * np.array(spacing)
    origin = np.asarray(image.origin) + image.direction @ new_origin_offset
    ref = Image(np.zeros(size[::-1], dtype=np.uint8), spacing, tuple(origin), image.direction)
    return resample_to(image, ref, label=label, interpolator=interpolator)


def physical_overlap_fraction(a: Image, b: Image) -> float:
    """Fraction of ``a``'s physical bounding box (axis-aligned in LPS) that ``b``'s box covers."""
    ca, cb = a.corners_lps(), b.corners_lps()
    lo = np.maximum(ca.min(0), cb.min(0))
    hi = np.minimum(ca.max(0), cb.max(0))
    inter = np.prod(np.clip(hi - lo, 0, None))
    vol_a = np.prod(ca.max(0) - ca.min(0))
    return float(inter / vol_a) if vol_a > 0 else 0.0


def check_overlap(a: Image, b: Image, a_name: str, b_name: str, b_path: str | os.PathLike | None = None,
                  min_fraction: float = 0.5) -> None:
    """Raise :class:`InputError` when ``b`` covers less than ``min_fraction`` of ``a`` in space.

    Catches images from different patients or studies, or files with a lost origin.
    """
    frac = physical_overlap_fraction(a, b)
    if frac < min_fraction:
        raise InputError(
            f"{b_name} covers only {frac:.0%} of the {a_name} in physical space",
            b_path,
            "check that both come from the same study and keep their origin and direction",
        )
