"""PET onto the CT grid, with seed 004's rigid-registration fallback when the two do not overlap.

A PET/CT study's PET and CT share the scanner's coordinates, so the PET is simply resampled
onto the CT grid. Some exports lose that: a PET whose origin was rewritten (anonymisers,
conversions through other tools) lies hundreds of mm away from its CT. Seed 004's released
preprocessing (Liiiii2101/HECKTOR2025-MEDAI, ``preprocess.py``: ``register_pet_to_ct``, called
when resampling onto the common extent fails) then registers the PET to the CT rigidly and
goes on. We do the same, with a warning, when the PET covers less than ``min_fraction`` of
the CT's physical extent (:func:`HNTumorSegLib.image.physical_overlap_fraction`):

| step | value (as the released code) |
|---|---|
| transform | ``Euler3DTransform`` (rigid: 3 rotations, 3 translations) |
| start | ``CenteredTransformInitializer(..., GEOMETRY)``: the two images' geometric centres aligned |
| metric | Mattes mutual information, 50 histogram bins, random sampling of 1 % of the voxels |
| optimiser | gradient descent, learning rate 1.0, 100 iterations, convergence 1e-6 over 10 steps, scales from physical shift |
| pyramid | shrink 4, 2, 1 with Gaussian smoothing 2, 1, 0 mm |
| result | PET resampled onto the CT grid with linear interpolation, 0 outside |

*Choices.* The released code triggers on an exception; we trigger on a measured overlap
(default 50 %, the same limit :func:`HNTumorSegLib.image.check_overlap` uses) so the user is
told why. The random sampling gets a fixed seed, so a case gives the same result every run.
After registration the PET must cover at least ``min_fraction`` of the CT; otherwise the
images are not one study and an :class:`InputError` says so (nothing is guessed further).

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> case = make_petct_case(seed=1, in_plane=64)
    >>> ct, pet = case["CT"], case["PET"]
    >>> result = pet_on_ct(ct, pet, warn=print)      # warns and registers only when needed
    >>> result.pet.same_grid(ct), result.registered, result.translation_mm   # they overlap: resampled only
    (True, False, (0.0, 0.0, 0.0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..image import Image, physical_overlap_fraction, resample_to
from .registration import last_transform, mattes_method

MIN_OVERLAP = 0.5
SAMPLING_SEED = 4  # fixed: the same case always registers the same way


@dataclass
class PetOnCt:
    """The PET on the CT grid and how it got there."""

    pet: Image
    registered: bool
    overlap_before: float
    overlap_after: float
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # PET point = CT point + this (LPS)
    rotation_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    metric: float | None = None
    notes: list[str] = field(default_factory=list)


def rigid_pet_to_ct(ct: Image, pet: Image, iterations: int = 100,
                    seed: int = SAMPLING_SEED) -> tuple[sitk.Euler3DTransform, float]:
    """Seed 004's rigid Mattes-MI registration of ``pet`` (moving) to ``ct`` (fixed): (transform, final metric).

    The transform maps CT (fixed) physical points to PET (moving) points, as ITK's resampling needs.
    """
    fixed = sitk.Cast(ct.to_sitk(), sitk.sitkFloat32)
    moving = sitk.Cast(pet.to_sitk(), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = mattes_method(0.01, seed, bins=50, shrink=(4, 2, 1), sigmas_mm=(2, 1, 0))   # shared with register
    reg.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=int(iterations),
                                      convergenceMinimumValue=1e-6, convergenceWindowSize=10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(initial, inPlace=False)
    # Execute returns a composite holding the Euler transform; flatten it for reporting
    euler = last_transform(reg.Execute(fixed, moving), sitk.Euler3DTransform)
    return euler, float(reg.GetMetricValue())


def _resample_with(pet: Image, ct: Image, transform: sitk.Transform) -> Image:
    out = sitk.Resample(sitk.Cast(pet.to_sitk(), sitk.sitkFloat32), ct.to_sitk(), transform,
                        sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return Image.from_sitk(out)


def _moved_extent_fraction(ct: Image, pet: Image, transform: sitk.Euler3DTransform) -> float:
    """Fraction of the CT extent the PET covers once the PET is placed by ``transform``."""
    inverse = transform.GetInverse()
    corners = np.array([inverse.TransformPoint(tuple(float(v) for v in c)) for c in pet.corners_lps()])
    lo, hi = corners.min(0), corners.max(0)
    c = ct.corners_lps()
    clo, chi = c.min(0), c.max(0)
    inter = np.prod(np.clip(np.minimum(hi, chi) - np.maximum(lo, clo), 0, None))
    return float(inter / np.prod(chi - clo))


def pet_on_ct(ct: Image, pet: Image, min_fraction: float = MIN_OVERLAP,
              warn: Callable[[str], None] | None = None, interpolator: str = "linear") -> PetOnCt:
    """The PET on the CT grid: resampled when they overlap, registered rigidly (with a warning) when not.

    ``warn`` receives one line when the fallback runs (the pipeline's progress/notes sink).
    Raises :class:`InputError` when even the registered PET covers less than ``min_fraction``.
    """
    before = physical_overlap_fraction(ct, pet)
    if before >= min_fraction:
        moved = pet if pet.same_grid(ct) else resample_to(pet, ct, interpolator=interpolator, default_value=0.0)
        return PetOnCt(pet=moved, registered=False, overlap_before=before, overlap_after=before)
    message = (f"the PET covers only {before:.0%} of the CT in physical space (origin or direction lost?); "
               f"registered it rigidly to the CT (Mattes mutual information), as seed 004 does - check the overlay")
    if warn is not None:
        warn(message)
    try:
        transform, metric = rigid_pet_to_ct(ct, pet)
    except RuntimeError as exc:  # ITK stops when no sample falls inside both images
        raise InputError(f"the PET does not overlap the CT and could not be registered to it ({exc.__class__.__name__})",
                         None, "check both files come from the same PET/CT study") from None
    after = _moved_extent_fraction(ct, pet, transform)
    if after < min_fraction:
        raise InputError(f"the PET covers only {after:.0%} of the CT even after rigid registration", None,
                         "check both files come from the same PET/CT study")
    params = transform.GetParameters()
    return PetOnCt(pet=_resample_with(pet, ct, transform), registered=True, overlap_before=before,
                   overlap_after=after, rotation_rad=tuple(float(v) for v in params[:3]),
                   translation_mm=tuple(float(v) for v in params[3:]),
                   metric=metric, notes=[message])
