"""Seed 002's coarse-to-fine regions, with the formulas of its released code.

Seed 002 (SJTU_lab426, HECKTOR 2025) segments a PET/CT in three steps, each on its own grid.
The released code (MoriiHuang/SJTU_lab426_Solution_of_Hecktor, ``process_hecktor.py``) made the
published weights; every number below is that code's (the paper agrees where it says anything):

| stage | grid (x, y, z) | placed | resampled from |
|---|---|---|---|
| head region (:func:`head_grid`) | **256 x 256 x 128** voxels at **2 x 2 x 3 mm**, identity direction | x, y start at the image's first voxel centre; z ends at the top of the scan: ``origin_z = top - 128 * 3`` with ``top = origin_z + 3rd spacing * n_z`` (``resample_head_neck_region``), **each image on its own**: the CT's grid from the CT, the PET's from the PET (:data:`PET_HEAD_GRID`) | the CT and the PET, B-spline, **-1** outside |
| head point (:func:`head_point`) | - | largest **face-connected** component of the head mask (``skimage.measure.label(connectivity=1)``); its bounding box ``[lo, hi)``: ``x = (lo+hi)//2``, ``y`` likewise, ``z = int(lo_z + 0.7 (hi_z - lo_z))`` (70 % of its height toward the head); to mm as ``(index - 1) * spacing + origin`` (``get_head_centroid``) | - |
| coarse ROI (:func:`coarse_grid`) | **144^3** at **2 mm** | ``origin = point - (72*2, 72*2, 144*2)``: centred in x, y, the point on its top face (``resample_roi``) | the windowed head-region images, B-spline, -1 (CT) / 0 (PET) outside |
| tumour centroid (:func:`tumour_centroid`) | - | mean voxel index of every non-zero coarse label, ``index * spacing + origin`` (``get_tumor_centroid``) | - |
| fine ROI (:func:`fine_grid`) | **144^3** at **1 mm** | centred: ``origin = centroid - 72`` (``resample_tumor_roi``) | the windowed head-region images, B-spline, -1 (CT) / 0 (PET) outside |
| back | the CT grid | nearest neighbour, 0 outside the fine ROI | - |

Intensities (:func:`window_head_images`, released ``apply_window``): CT level 45 / width 300 =
[-105, 195] HU to [0, 1] (``(x + 105) / (300 + 1e-6)``, clipped); PET min-max over the PET's
own head region (its -1 fill outside the PET's field of view included, as released), then
window level 2.5 / width 5 (so divided by 5) and clipped to [0, 1]. The head
model sees the CT only; the coarse model CT and PET; the fine models the fine ROI's
channels (:func:`HNTumorSegLib.prompts.ct_channels.channel_set_arrays`-style min-max; the
released fine ResEnc-L takes 2 channels).

*Choices.*

* The ``- 1`` in the head point's index-to-mm conversion is in the released code (it shifts
  the point by one voxel, 2 / 2 / 3 mm, toward the origin). The released head and coarse
  models were trained on ROIs placed the same way, so we keep it (``released_offset=True``);
  ``False`` gives the textbook conversion.
* The fine ROI is resampled from the 2 x 2 x 3 mm head-region images, not from the original
  scans: the released inference and its training conversion both do so, and the fine models
  learnt on those inputs.
* The PET's head region is cut on the PET's own grid (its own x, y origin and its own top), as
  the released inference and training conversion do (``resample_head_neck_region(pet)``):
  ``pet_grid=PetHeadGrid.OWN``, the default. When the fields of view differ (the usual case)
  the two head regions do not coincide; the later stages resample both in physical space, so
  the coarse and fine ROIs still hold CT and PET of the same place. ``PetHeadGrid.CT`` puts
  the PET on the CT's head grid instead (HNTumorSeg before issue 28): every PET voxel the CT
  region covers, none outside it, and a min-max over the same region as the CT's.
* The released code uses the image's origin and ignores its direction matrix; we take the
  minimum voxel-centre x and y and the maximum voxel-centre z of the CT in LPS (the same
  numbers for an identity direction), so a flipped CT gets the same region.
* Where the released code stops with an error we go on, saying so: no head found -> the
  scan's centre in x, y and 70 % of the head region's height; no tumour in the coarse labels
  -> the coarse ROI's centre (:class:`FineRoiChoice`).

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> case = make_petct_case(seed=1, in_plane=64)
    >>> ct, pet = case["CT"], case["PET"]
    >>> grid = head_grid(ct)                          # 256 x 256 x 128 at 2 x 2 x 3 mm
    >>> grid.size_xyz, grid.spacing_xyz
    ((256, 256, 128), (2.0, 2.0, 3.0))
    >>> ct_h, pet_h = window_head_images(ct, pet, grid)
    >>> head_mask_on_grid = ct_h.with_array((grid.resample(ct, default=-1000).array > -300).astype(np.uint8))
    >>> point = head_point(head_mask_on_grid)         # point.xyz: x, y, z in LPS mm
    >>> point.found
    True
    >>> coarse = coarse_grid(point.xyz)               # the coarse network's labels go on this grid:
    >>> coarse_labels = coarse.resample(case["mask"], label=True)     # here the true mask stands in
    >>> fine = fine_grid(tumour_centroid(coarse_labels))
    >>> fine.size_xyz, fine.spacing_xyz
    ((144, 144, 144), (1.0, 1.0, 1.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..image import Image, resample_to
from ..vocab import PetHeadGrid

HEAD_SIZE_XYZ = (256, 256, 128)
HEAD_SPACING_XYZ = (2.0, 2.0, 3.0)
HEAD_Z_FRACTION = 0.7
COARSE_SIZE_XYZ = (144, 144, 144)
COARSE_SPACING_XYZ = (2.0, 2.0, 2.0)
FINE_SIZE_XYZ = (144, 144, 144)
FINE_SPACING_XYZ = (1.0, 1.0, 1.0)
CT_LEVEL_WIDTH = (45.0, 300.0)     # -> [-105, 195] HU
PET_LEVEL_WIDTH = (2.5, 5.0)       # after min-max: -> divided by 5
OUTSIDE_HEAD = -1.0                # the head region's fill value (CT and PET), as released
OUTSIDE_CT, OUTSIDE_PET = -1.0, 0.0   # coarse and fine ROIs' fill values
_EPS = 1e-6
#: Which grid the PET's head region is cut on by default: its own, as released (:class:`~HNTumorSegLib.vocab.PetHeadGrid`).
PET_HEAD_GRID = PetHeadGrid.OWN
_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class RoiGrid:
    """A resampling grid: origin (first voxel centre, LPS mm), spacing and size (x, y, z), direction."""

    origin_xyz: tuple[float, float, float]
    spacing_xyz: tuple[float, float, float]
    size_xyz: tuple[int, int, int]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def reference(self) -> Image:
        """An all-zero uint8 Image on this grid (what :func:`HNTumorSegLib.image.resample_to` takes)."""
        x, y, z = self.size_xyz
        return Image(np.zeros((z, y, x), np.uint8), self.spacing_xyz, self.origin_xyz,
                     np.asarray(self.direction, float).reshape(3, 3))

    def resample(self, image: Image, label: bool = False, default: float = 0.0) -> Image:
        """``image`` on this grid: B-spline (nearest for labels), ``default`` outside."""
        return resample_to(image, self.reference(), label=label, interpolator=None if not label else "nearest",
                           default_value=default)

    def to_json(self) -> dict:
        return {"origin": [round(float(v), 4) for v in self.origin_xyz], "spacing": [float(v) for v in self.spacing_xyz],
                "size": [int(v) for v in self.size_xyz]}


def _voxel_centre_bounds(image: Image) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = image.shape_xyz
    idx = np.array([[a, b, c] for a in (0, x - 1) for b in (0, y - 1) for c in (0, z - 1)], float)
    pts = image.index_to_physical(idx)
    return pts.min(0), pts.max(0)


def head_grid(ct: Image, size_xyz: Sequence[int] = HEAD_SIZE_XYZ,
              spacing_xyz: Sequence[float] = HEAD_SPACING_XYZ) -> RoiGrid:
    """The head region: the top ``size_z * spacing_z`` mm of the scan (module docstring)."""
    lo, hi = _voxel_centre_bounds(ct)
    axis_z = int(np.argmax(np.abs(np.asarray(ct.direction)[2])))   # the image axis closest to S
    top = hi[2] + float(ct.spacing[axis_z])                         # released: origin_z + spacing_z * n_z
    origin = (float(lo[0]), float(lo[1]), float(top - int(size_xyz[2]) * float(spacing_xyz[2])))
    return RoiGrid(origin, tuple(float(s) for s in spacing_xyz), tuple(int(s) for s in size_xyz))


def apply_window(values: np.ndarray, level: float, width: float, minmax_first: bool = False) -> np.ndarray:
    """Seed 002's ``apply_window``: optional min-max, then ``(x - (level - width/2)) / (width + 1e-6)`` in [0, 1]."""
    x = np.asarray(values, dtype=np.float32)
    if minmax_first:
        x = (x - x.min()) / np.float32(float(x.max()) - float(x.min()) + _EPS)
    lo = level - width / 2.0
    return np.clip((x - np.float32(lo)) / np.float32(width + _EPS), 0.0, 1.0).astype(np.float32)


def window_head_images(ct: Image, pet: Image, grid: RoiGrid,
                       pet_grid: PetHeadGrid | str = PET_HEAD_GRID) -> tuple[Image, Image]:
    """CT on ``grid`` (the CT's head region) and PET on its own head region (``pet_grid="own"``,
    as released) or on ``grid`` (``"ct"``), windowed as released (module docstring)."""
    ct_h = grid.resample(ct, default=OUTSIDE_HEAD)
    own = PetHeadGrid.parse(pet_grid, "PET head grid") is PetHeadGrid.OWN
    pet_on = head_grid(pet, grid.size_xyz, grid.spacing_xyz) if own else grid
    pet_h = pet_on.resample(pet, default=OUTSIDE_HEAD)
    return (ct_h.with_array(apply_window(ct_h.array, *CT_LEVEL_WIDTH)),
            pet_h.with_array(apply_window(pet_h.array, *PET_LEVEL_WIDTH, minmax_first=True)))


@dataclass(frozen=True)
class HeadPoint:
    """Where the coarse ROI's top-centre goes, and whether a head was found."""

    xyz: tuple[float, float, float]
    found: bool
    bbox_zyx: tuple[tuple[int, int], ...] | None = None


def head_point(head_mask: Image, z_fraction: float = HEAD_Z_FRACTION, released_offset: bool = True,
               scan: Image | None = None) -> HeadPoint:
    """The released ``get_head_centroid`` on a head mask (on the head-region grid).

    No head in the mask (the released code stops there): the centre of ``scan``'s extent in x, y
    (the head region's when no scan is given) at ``z_fraction`` of the head region's height.
    """
    labels, n = ndimage.label(np.asarray(head_mask.array) > 0, structure=_FACES)
    origin, spacing = np.asarray(head_mask.origin), np.asarray(head_mask.spacing)
    if n == 0:
        z, y, x = (np.array(head_mask.array.shape) * np.array([z_fraction, 0.5, 0.5])).astype(int)
        xyz = np.array([x, y, z]) * spacing + origin
        if scan is not None:
            lo, hi = _voxel_centre_bounds(scan)
            xyz[:2] = (lo[:2] + hi[:2]) / 2
        return HeadPoint(tuple(float(v) for v in xyz), False)
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1          # ties: the first label, as max() over regionprops
    box = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    (z0, z1), (y0, y1), (x0, x1) = [(s.start, s.stop) for s in box]
    x, y = (x0 + x1) // 2, (y0 + y1) // 2
    z = int(z0 + (z1 - z0) * z_fraction)
    shift = 1 if released_offset else 0
    xyz = (np.array([x, y, z], float) - shift) * spacing + origin
    return HeadPoint(tuple(float(v) for v in xyz), True, ((z0, z1), (y0, y1), (x0, x1)))


def coarse_grid(point_xyz: Sequence[float], size_xyz: Sequence[int] = COARSE_SIZE_XYZ,
                spacing_xyz: Sequence[float] = COARSE_SPACING_XYZ) -> RoiGrid:
    """The coarse ROI: centred on the point in x, y; the point on its top face (z extends below)."""
    s, n = np.asarray(spacing_xyz, float), np.asarray(size_xyz, int)
    origin = np.asarray(point_xyz, float) - np.array([n[0] / 2 * s[0], n[1] / 2 * s[1], n[2] * s[2]])
    return RoiGrid(tuple(float(v) for v in origin), tuple(float(v) for v in s), tuple(int(v) for v in n))


def tumour_centroid(labels: Image) -> tuple[float, float, float] | None:
    """Mean position of every non-zero voxel (``index * spacing + origin``, as released); None if empty."""
    idx = np.argwhere(np.asarray(labels.array) != 0)
    if idx.size == 0:
        return None
    z, y, x = idx.mean(axis=0)
    xyz = np.array([x, y, z]) * np.asarray(labels.spacing) + np.asarray(labels.origin)
    return tuple(float(v) for v in xyz)


def fine_grid(centroid_xyz: Sequence[float], size_xyz: Sequence[int] = FINE_SIZE_XYZ,
              spacing_xyz: Sequence[float] = FINE_SPACING_XYZ) -> RoiGrid:
    """The fine ROI: 144^3 at 1 mm centred on the coarse tumour centroid."""
    s, n = np.asarray(spacing_xyz, float), np.asarray(size_xyz, int)
    origin = np.asarray(centroid_xyz, float) - n / 2 * s
    return RoiGrid(tuple(float(v) for v in origin), tuple(float(v) for v in s), tuple(int(v) for v in n))


@dataclass(frozen=True)
class FineRoiChoice:
    """The fine ROI and why it is where it is."""

    grid: RoiGrid
    from_tumour: bool   # False: the coarse stage found nothing, the coarse ROI's centre was used


def choose_fine_roi(coarse_labels: Image, coarse: RoiGrid, size_xyz: Sequence[int] = FINE_SIZE_XYZ,
                    spacing_xyz: Sequence[float] = FINE_SPACING_XYZ) -> FineRoiChoice:
    """Fine ROI on the coarse labels' centroid, or on the coarse ROI's centre when they are empty."""
    centroid = tumour_centroid(coarse_labels)
    if centroid is not None:
        return FineRoiChoice(fine_grid(centroid, size_xyz, spacing_xyz), True)
    centre = np.asarray(coarse.origin_xyz) + (np.asarray(coarse.size_xyz) - 1) / 2 * np.asarray(coarse.spacing_xyz)
    return FineRoiChoice(fine_grid(centre, size_xyz, spacing_xyz), False)


def paste_back(labels: Image, ct: Image) -> Image:
    """Fine-ROI labels onto the original CT grid: nearest neighbour, 0 outside the ROI."""
    return resample_to(labels, ct, label=True, default_value=0)
