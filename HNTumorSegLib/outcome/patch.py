"""The network's input: a CT/PET/mask patch around the lesions' centroid (seed 004 section 2.2).

* Centre: the centroid (mean of voxel centres, physical mm) of all GTVp + GTVn voxels of the
  label map; with no lesion, the geometric centre of the label map's extent (as the released
  ``find_lesion_centroid``).
* Grid: ``size_zyx`` voxels (96^3 by default) of ``spacing_xyz_mm`` (1 mm, the seed's
  resampling) along the label map's axes, centred there. CT and PET are resampled onto it
  directly with linear interpolation (the seed resamples whole images with B-spline first and
  then crops; resampling only the patch gives the same grid at a fraction of the cost, and
  linear keeps SUVs within the range of the data); the mask with nearest neighbour. Outside
  the scan: CT -1000 HU (air; the released code pads with 0 HU), PET 0, mask 0.
* CT: clipped to [-1000, 3000] HU and mapped linearly to [0, 1] (paper).
* PET: **our choice**, SUV clipped to [0, 50] and divided by 10. The paper does not say; the
  released inference feeds raw SUV. A fixed scale keeps absolute uptake, which is what carries
  prognosis (a per-patch z-score would erase it), and the clip stops a hot bladder or brain
  from dominating a batch.

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> phantom = make_petct_case(seed=1, in_plane=64)
    >>> ct, pet, labels = phantom["CT"], phantom["PET"], phantom["mask"]
    >>> spec = PatchSpec()                                   # 96^3 at 1 mm
    >>> x = make_patch(ct, pet, labels, spec)                # float32 [3, 96, 96, 96]
    >>> x.shape, x.dtype
    ((3, 96, 96, 96), dtype('float32'))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..image import Image, resample_to


@dataclass(frozen=True)
class PatchSpec:
    """Patch geometry and intensity normalisation; stored in the outcome model card."""

    size_zyx: tuple[int, int, int] = (96, 96, 96)
    spacing_xyz_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ct_window_hu: tuple[float, float] = (-1000.0, 3000.0)
    pet_clip_suv: tuple[float, float] = (0.0, 50.0)
    pet_divisor: float = 10.0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "PatchSpec":
        return cls(tuple(int(v) for v in data["size_zyx"]), tuple(float(v) for v in data["spacing_xyz_mm"]),
                   tuple(float(v) for v in data["ct_window_hu"]), tuple(float(v) for v in data["pet_clip_suv"]),
                   float(data["pet_divisor"]))


def lesion_centre_lps(labels: Image) -> np.ndarray:
    """Centroid (LPS mm) of the voxels labelled 1 or 2; the centre of the image when none."""
    idx = np.argwhere(labels.array > 0)
    if len(idx):
        return labels.index_to_physical(idx.mean(axis=0)[::-1])
    return labels.index_to_physical((np.array(labels.shape_xyz) - 1) / 2.0)


def patch_grid(centre_lps: np.ndarray, spec: PatchSpec, direction: np.ndarray) -> Image:
    """An empty image of the patch's geometry centred at ``centre_lps``."""
    size_xyz = np.array(spec.size_zyx[::-1], float)
    offset = direction @ (np.array(spec.spacing_xyz_mm) * (size_xyz - 1) / 2.0)
    origin = np.asarray(centre_lps, float) - offset
    return Image(np.zeros(spec.size_zyx, np.uint8), spec.spacing_xyz_mm, tuple(origin), direction)


def normalise_ct(ct_hu: np.ndarray, spec: PatchSpec) -> np.ndarray:
    lo, hi = spec.ct_window_hu
    return ((np.clip(ct_hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def normalise_pet(suv: np.ndarray, spec: PatchSpec) -> np.ndarray:
    lo, hi = spec.pet_clip_suv
    return (np.clip(suv, lo, hi) / spec.pet_divisor).astype(np.float32)


def make_patch(ct: Image, pet: Image, labels: Image, spec: PatchSpec = PatchSpec()) -> np.ndarray:
    """float32 [3, D, H, W]: normalised CT, normalised PET, mask labels (0/1/2 as floats)."""
    grid = patch_grid(lesion_centre_lps(labels), spec, labels.direction)
    ct_p = resample_to(ct, grid, interpolator="linear", default_value=-1000.0).array
    pet_p = resample_to(pet, grid, interpolator="linear", default_value=0.0).array
    mask_p = resample_to(labels, grid, label=True).array
    return np.stack([normalise_ct(ct_p, spec), normalise_pet(pet_p, spec), mask_p.astype(np.float32)])
