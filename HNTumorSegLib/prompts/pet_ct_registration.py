"""PET onto the CT grid; when its header places it off the CT, a rigid registration behind a gate.

A PET/CT study's PET and CT share the scanner's coordinates, so the PET is simply resampled
onto the CT grid. Some exports lose that: a PET whose origin was rewritten (anonymisers,
conversions through other tools) lies hundreds of mm away from its CT. Seed 004's released
preprocessing (Liiiii2101/HECKTOR2025-MEDAI, ``preprocess.py``: ``register_pet_to_ct``) then
registers the PET to the CT rigidly (Mattes MI from the images' geometric centres, 1 % random
samples, all threads) and goes on whatever comes out. That is neither reproducible (a 30 mm
shift came back 13.6 mm and 37.8 mm on two runs of one AMD EPYC machine: issue 24) nor safe (a
PET 5 m away was "registered" and segmented). Here the registration runs only through a gate:

| step | what |
|---|---|
| when (``--align-pet``, :class:`~HNTumorSegLib.vocab.AlignPet`) | ``auto`` (default): the PET covers less than ``MIN_OVERLAP`` (50 %) of the CT's physical extent (:func:`HNTumorSegLib.image.physical_overlap_fraction`); ``force``: always; ``off``: never (a PET off its CT is refused) |
| body masks | CT > -500 HU, PET > 0.2 x the median of its voxels above 1 % of its 99.5th percentile; the largest connected part of each |
| starts | the header's placement (if the boxes touch), the body masks' centres of mass, and the best ``COARSE_STARTS`` integer shifts of an exhaustive search on 8 mm grids (z: every overlap; x, y: +-24 mm about the centres), scored by body-mask overlap counted in integers |
| refinement | each start: Euler3D about the CT body's centre, Mattes MI (50 bins, ``SAMPLES`` seeded samples per level), regular-step gradient descent, pyramid 4-2-1, **one thread**; the lowest metric wins (rounded to 1e-6, ties to the earlier start) |
| gate (every check must pass) | PET covers >= 50 % of the CT after; body-mask Dice after >= ``MIN_BODY_DICE`` (0.7); similarity gain: the metric after is lower than at the header's placement (0 when they do not touch); shift <= ``MAX_SHIFT_MM`` (2000 mm, a PET/CT table's travel); every rotation <= ``MAX_ROTATION_DEG`` (10 deg) |
| result | passed: applied, with a note; failed: ``auto`` stops with one line naming what was found (exit 2), ``force`` applies it with the figures in the note |

*Determinism.* Everything that decides is an integer count (the coarse search) or comes from
ITK on one thread with a fixed seed (the registration: ITK's Mattes metric sums the threads'
partial derivatives in the order they finish, :mod:`.registration`), and the SimpleITK wheels
have no CPU-dependent code paths; the ITK global default thread count is set to 1 for the
duration, whatever ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` says.
``Testing/test_pet_alignment_gate.py`` runs it in two processes with 1 and 2 threads.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> case = make_petct_case(seed=1, in_plane=64)
    >>> ct, pet = case["CT"], case["PET"]
    >>> result = pet_on_ct(ct, pet, warn=print)      # they overlap: resampled only
    >>> result.pet.same_grid(ct), result.registered, result.translation_mm
    (True, False, (0.0, 0.0, 0.0))
    >>> lost = Image(pet.array, pet.spacing, tuple(np.add(pet.origin, (0, 0, 400.0))), pet.direction)
    >>> moved = pet_on_ct(ct, lost)                  # 400 mm off: registered, checked, applied
    >>> moved.registered, moved.gate_passed, [round(v) for v in moved.translation_mm]
    (True, True, [0, 0, 400])
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..image import Image, physical_overlap_fraction, resample_to
from ..vocab import AlignPet
from .registration import REGISTRATION_THREADS, WORK_UNITS, optimizer_scales, last_transform, mattes_method

MIN_OVERLAP = 0.5          # the PET must cover half the CT's extent (image.check_overlap's limit)
SAMPLING_SEED = 4          # fixed: the same case always registers the same way
SAMPLES = 20_000           # metric samples per pyramid level (all voxels of a smaller level)
CT_BODY_HU = -500.0
PET_BODY_FRACTION = 0.2    # of the median uptake of the PET's non-background voxels
COARSE_MM = 8.0            # grid of the exhaustive shift search
SEARCH_XY_MM = 24.0        # +- about the body centres in x and y
COARSE_STARTS = 3
MIN_BODY_DICE = 0.7
MAX_SHIFT_MM = 2000.0      # no PET/CT table travels further: a larger shift is two frames, not one study
MAX_ROTATION_DEG = 10.0    # a rigid mix-up of the same couch position, not a re-positioned patient
FIX_HEADER = "check both files are one PET/CT study and fix the PET header (origin, direction)"


@dataclass
class PetOnCt:
    """The PET on the CT grid and how it got there (``to_dict``: the run's JSON ``alignment``)."""

    pet: Image
    registered: bool
    overlap_before: float
    overlap_after: float
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # PET point = R(CT point - centre) + centre + this (LPS)
    rotation_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    metric: float | None = None
    notes: list[str] = field(default_factory=list)
    mode: str = AlignPet.AUTO.value
    gate_passed: bool | None = None          # None: no registration ran
    failed_checks: list[str] = field(default_factory=list)
    body_dice_before: float | None = None
    body_dice_after: float | None = None
    metric_before: float | None = None
    start: str | None = None                 # which start won
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def shift_mm(self) -> float:
        return float(np.linalg.norm(self.translation_mm))

    def figures(self) -> str:
        """``shift (x, y, z) mm (|t| mm), rotation r deg, PET covers a% -> b% of the CT, body overlap c% -> d%``."""
        t = ", ".join(f"{v:.1f}" for v in self.translation_mm)
        rot = max(abs(math.degrees(r)) for r in self.rotation_rad)
        dice = "" if self.body_dice_after is None else (
            f", body overlap (Dice) {self.body_dice_before or 0.0:.0%} -> {self.body_dice_after:.0%}")
        return (f"shift ({t}) mm ({self.shift_mm:.0f} mm), rotation {rot:.1f} deg, "
                f"PET covers {self.overlap_before:.0%} -> {self.overlap_after:.0%} of the CT{dice}")

    def to_dict(self) -> dict:
        """JSON-ready facts: the run's result ``info["alignment"]``, batch.json and the QA report."""
        r6 = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {"mode": self.mode, "registered": self.registered, "gate_passed": self.gate_passed,
                "failed_checks": list(self.failed_checks), "start": self.start,
                "overlap_before": r6(self.overlap_before), "overlap_after": r6(self.overlap_after),
                "body_dice_before": r6(self.body_dice_before), "body_dice_after": r6(self.body_dice_after),
                "metric_before": r6(self.metric_before), "metric_after": r6(self.metric),
                "translation_mm": [r6(v) for v in self.translation_mm],
                "rotation_deg": [r6(math.degrees(v)) for v in self.rotation_rad],
                "centre_mm": [r6(v) for v in self.centre_mm], "summary": self.figures()}


@contextmanager
def _one_thread() -> Iterator[None]:
    """ITK's metric threaders read the global default, not only the method's setting: fix both."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


# ---- body masks and the coarse search (integers: the same on every CPU) --------------------------

def _largest_part(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    parts = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))),
                                  sortByObjectSize=True)
    return sitk.GetArrayViewFromImage(parts) == 1


def ct_body(ct: Image) -> np.ndarray:
    """The CT's body: above -500 HU, largest connected part (the couch and air pockets dropped)."""
    return _largest_part(np.asarray(ct.array) > CT_BODY_HU)


def pet_body(pet: Image) -> np.ndarray:
    """The PET's body: above 0.2 x the median of the voxels above 1 % of the 99.5th percentile (unit-free)."""
    a = np.asarray(pet.array, np.float32)
    top = float(np.percentile(a, 99.5))
    if not top > 0:
        return np.zeros(a.shape, bool)
    return _largest_part(a > PET_BODY_FRACTION * float(np.median(a[a > 0.01 * top])))


def _centre(image: Image, mask: np.ndarray) -> np.ndarray:
    """Physical (x, y, z) centre of mass of ``mask`` (the image's centre when empty)."""
    idx = np.argwhere(mask)   # z, y, x
    mean = idx.sum(0) / len(idx) if len(idx) else (np.array(mask.shape) - 1) / 2.0
    return np.asarray(image.index_to_physical(mean[::-1][None, :]), float)[0]


def _coarse(image: Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` on an axis-aligned ``COARSE_MM`` grid over the image's box: (0/1 array zyx, origin xyz)."""
    c = image.corners_lps()
    lo, hi = c.min(0), c.max(0)
    size = [max(1, int(math.ceil((b - a) / COARSE_MM))) for a, b in zip(lo, hi)]
    origin = lo + COARSE_MM / 2
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([COARSE_MM] * 3)
    ref.SetOrigin([float(v) for v in origin])
    src = image.with_array(mask.astype(np.float32)).to_sitk()
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return (sitk.GetArrayFromImage(out) >= 0.5).astype(np.uint8), origin


def coarse_starts(ct: Image, ct_mask: np.ndarray, pet: Image, pet_mask: np.ndarray,
                  centre_shift: np.ndarray, n: int = COARSE_STARTS) -> list[tuple[np.ndarray, int]]:
    """The ``n`` best shifts (x, y, z mm; PET point = CT point + shift) on the 8 mm grids by body-mask
    overlap (an integer count: exact on every CPU), at least 3 cells apart in z; with their counts."""
    a, oa = _coarse(ct, ct_mask)
    b, ob = _coarse(pet, pet_mask)
    base = ob - oa                                    # shift of k = 0: CT cell i meets PET cell i + k
    k0 = np.round((centre_shift - base) / COARSE_MM).astype(int)[::-1]   # zyx, about the centres
    r = int(SEARCH_XY_MM // COARSE_MM)
    found: list[tuple[int, int, int, int]] = []
    for kz in range(-a.shape[0] + 1, b.shape[0]):
        for ky in range(k0[1] - r, k0[1] + r + 1):
            for kx in range(k0[2] - r, k0[2] + r + 1):
                k = (kz, ky, kx)
                lo = [max(0, -ki) for ki in k]
                hi = [min(na, nb - ki) for ki, na, nb in zip(k, a.shape, b.shape)]
                if any(h <= low for low, h in zip(lo, hi)):
                    continue
                wa = a[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
                wb = b[lo[0] + kz:hi[0] + kz, lo[1] + ky:hi[1] + ky, lo[2] + kx:hi[2] + kx]
                found.append((int(np.count_nonzero(wa & wb)), kz, ky, kx))
    found.sort(key=lambda f: (-f[0], f[1], f[2], f[3]))   # most overlap first; ties in a fixed order
    chosen: list[tuple[int, int, int, int]] = []
    for f in found:
        if f[0] > 0 and all(abs(f[1] - c[1]) >= 3 for c in chosen):
            chosen.append(f)
        if len(chosen) == n:
            break
    return [(base + COARSE_MM * np.array([kx, ky, kz], float), count) for count, kz, ky, kx in chosen]


# ---- registration and the gate ------------------------------------------------------------------

def _euler(centre: np.ndarray, shift: np.ndarray, rotation=(0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(v) for v in centre])
    t.SetParameters([float(v) for v in rotation] + [float(v) for v in shift])
    return t


def _refine(fixed: sitk.Image, moving: sitk.Image, start: sitk.Euler3DTransform,
            seed: int = SAMPLING_SEED) -> tuple[sitk.Euler3DTransform, float]:
    """Mattes MI, regular-step gradient descent (4 mm steps halving), pyramid 4-2-1, one thread."""
    shrink = (4, 2, 1)
    reg = mattes_method(1.0, seed, 50, shrink, (2, 1, 0), REGISTRATION_THREADS, WORK_UNITS)
    voxels = float(np.prod(fixed.GetSize()))
    reg.SetMetricSamplingPercentagePerLevel([min(1.0, SAMPLES * f ** 3 / voxels) for f in shrink], seed)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=0.01, numberOfIterations=200,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScales(optimizer_scales(fixed, start))
    reg.SetInitialTransform(start, inPlace=False)
    fitted = last_transform(reg.Execute(fixed, moving), sitk.Euler3DTransform)
    return fitted, float(reg.GetMetricValue())


def similarity(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
               seed: int = SAMPLING_SEED) -> float | None:
    """Mattes MI (ITK's sign: lower is more alike) at full resolution; None when the images do not touch."""
    reg = mattes_method(1.0, seed, 50, (1,), (0,), REGISTRATION_THREADS, WORK_UNITS)
    reg.SetMetricSamplingPercentage(min(1.0, SAMPLES / float(np.prod(fixed.GetSize()))), seed)
    reg.SetInitialTransform(transform, inPlace=False)
    try:
        return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:   # too few samples inside both images
        return None


def body_dice(ct: Image, ct_mask: np.ndarray, pet: Image, pet_mask: np.ndarray, transform: sitk.Transform) -> float:
    """Dice of the body masks on the CT grid, where the placed PET has voxels (integer counts)."""
    ref = ct.to_sitk()

    def placed(values: np.ndarray) -> np.ndarray:
        src = pet.with_array(values.astype(np.float32)).to_sitk()
        out = sitk.Resample(src, ref, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.GetArrayViewFromImage(out) >= 0.5

    inside = placed(np.ones(pet_mask.shape, np.float32))
    a, b = ct_mask & inside, placed(pet_mask) & inside
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else 0.0


def _moved_extent_fraction(ct: Image, pet: Image, transform: sitk.Transform) -> float:
    """Fraction of the CT extent the PET covers once the PET is placed by ``transform``."""
    inverse = transform.GetInverse()
    corners = np.array([inverse.TransformPoint(tuple(float(v) for v in c)) for c in pet.corners_lps()])
    lo, hi = corners.min(0), corners.max(0)
    c = ct.corners_lps()
    clo, chi = c.min(0), c.max(0)
    inter = np.prod(np.clip(np.minimum(hi, chi) - np.maximum(lo, clo), 0, None))
    return float(inter / np.prod(chi - clo))


def gate_failures(found: PetOnCt) -> list[str]:
    """The gate's checks that ``found`` fails, each as a few words with its figure (empty: passed)."""
    failed = []
    if found.overlap_after < MIN_OVERLAP:
        failed.append(f"the PET covers {found.overlap_after:.0%} of the CT (needs {MIN_OVERLAP:.0%})")
    if (found.body_dice_after or 0.0) < MIN_BODY_DICE:
        failed.append(f"body overlap {found.body_dice_after or 0.0:.0%} (needs {MIN_BODY_DICE:.0%})")
    before = 0.0 if found.metric_before is None else found.metric_before
    if found.metric is None or not found.metric < before:
        failed.append(f"no similarity gain (metric {before:.3f} -> {found.metric if found.metric is not None else float('nan'):.3f})")
    if found.shift_mm > MAX_SHIFT_MM:
        failed.append(f"shift {found.shift_mm:.0f} mm (at most {MAX_SHIFT_MM:.0f})")
    rot = max(abs(math.degrees(r)) for r in found.rotation_rad)
    if rot > MAX_ROTATION_DEG:
        failed.append(f"rotation {rot:.1f} deg (at most {MAX_ROTATION_DEG:.0f})")
    return failed


def register_pet_to_ct(ct: Image, pet: Image, seed: int = SAMPLING_SEED) -> tuple[PetOnCt, sitk.Euler3DTransform]:
    """Register ``pet`` (moving) to ``ct`` (fixed) from several starts and measure the gate's figures.

    Returns the record (``pet`` still the input; :func:`pet_on_ct` resamples) and the transform, which
    maps CT physical points to PET points, as ITK's resampling needs.
    """
    with _one_thread():
        fixed = sitk.Cast(ct.to_sitk(), sitk.sitkFloat32)
        moving = sitk.Cast(pet.to_sitk(), sitk.sitkFloat32)
        ct_mask, pet_mask = ct_body(ct), pet_body(pet)
        centre = _centre(ct, ct_mask)
        by_centres = _centre(pet, pet_mask) - centre
        starts: list[tuple[str, np.ndarray]] = []
        before = physical_overlap_fraction(ct, pet)
        if before > 0:
            starts.append(("header", np.zeros(3)))
        starts.append(("centres of mass", by_centres))
        for i, (shift, _count) in enumerate(coarse_starts(ct, ct_mask, pet, pet_mask, by_centres)):
            starts.append((f"body search {i + 1}", shift))
        unique: list[tuple[str, np.ndarray]] = []
        for name, shift in starts:
            if all(np.linalg.norm(shift - s) > 4.0 for _n, s in unique):
                unique.append((name, shift))
        best: tuple[float, int, str, sitk.Euler3DTransform] | None = None
        for order, (name, shift) in enumerate(unique):
            try:
                fitted, metric = _refine(fixed, moving, _euler(centre, shift), seed)
            except RuntimeError:   # ITK stops when no sample falls inside both images
                continue
            key = (round(metric, 6), order)
            if best is None or key < (round(best[0], 6), best[1]):
                best = (metric, order, name, fitted)
        if best is None:
            raise InputError("the PET does not overlap the CT and could not be registered to it from any start",
                             None, FIX_HEADER)
        metric, _order, name, transform = best
        params = transform.GetParameters()
        found = PetOnCt(pet=pet, registered=True, overlap_before=before,
                        overlap_after=_moved_extent_fraction(ct, pet, transform),
                        rotation_rad=tuple(float(v) for v in params[:3]),      # type: ignore[arg-type]
                        translation_mm=tuple(float(v) for v in params[3:]),    # type: ignore[arg-type]
                        metric=similarity(fixed, moving, transform, seed), start=name,
                        metric_before=similarity(fixed, moving, sitk.Euler3DTransform(), seed) if before > 0 else None,
                        body_dice_before=body_dice(ct, ct_mask, pet, pet_mask, sitk.Euler3DTransform()) if before > 0
                        else 0.0,
                        body_dice_after=body_dice(ct, ct_mask, pet, pet_mask, transform),
                        centre_mm=tuple(float(v) for v in centre))             # type: ignore[arg-type]
        found.failed_checks = gate_failures(found)
        found.gate_passed = not found.failed_checks
        return found, transform


def _resample_with(pet: Image, ct: Image, transform: sitk.Transform) -> Image:
    out = sitk.Resample(sitk.Cast(pet.to_sitk(), sitk.sitkFloat32), ct.to_sitk(), transform,
                        sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return Image.from_sitk(out)


def alignment_line(alignment: dict | None) -> str:
    """A registered PET's :meth:`PetOnCt.to_dict` as one line (QA report, Slicer run panel); '' when none ran.

    >>> alignment_line({"registered": True, "mode": "auto", "gate_passed": True, "failed_checks": [],
    ...                 "summary": "shift (30.0, -20.0, 400.0) mm (402 mm), rotation 0.1 deg"})
    'PET registered to the CT (auto, gate passed): shift (30.0, -20.0, 400.0) mm (402 mm), rotation 0.1 deg'
    """
    if not alignment or not alignment.get("registered"):
        return ""
    verdict = "gate passed" if alignment.get("gate_passed") else (
        "gate FAILED: " + "; ".join(alignment.get("failed_checks") or []))
    return f"PET registered to the CT ({alignment.get('mode', '?')}, {verdict}): {alignment.get('summary', '')}"


def alignment_of_run(run: object) -> str:
    """:func:`alignment_line` of a finished worker run (its result event's ``info["alignment"]``); '' otherwise."""
    info = getattr(getattr(run, "final", None), "info", None)
    return alignment_line(info.get("alignment")) if isinstance(info, dict) else ""


def pet_on_ct(ct: Image, pet: Image, min_fraction: float = MIN_OVERLAP,
              warn: Callable[[str], None] | None = None, interpolator: str = "linear",
              mode: AlignPet | str = AlignPet.AUTO, path: str | None = None) -> PetOnCt:
    """The PET on the CT grid: resampled when they overlap, registered through the gate (module
    docstring) when not (``auto``), always (``force``) or never (``off``).

    ``warn`` receives one line when a registration is applied (the pipeline's progress/notes sink).
    Raises :class:`InputError` (naming ``path``) when ``off`` meets a PET off its CT, or when the
    gate fails in ``auto``.
    """
    mode = AlignPet.parse(mode, "--align-pet")
    before = physical_overlap_fraction(ct, pet)
    if mode != AlignPet.FORCE and before >= min_fraction:
        moved = pet if pet.same_grid(ct) else resample_to(pet, ct, interpolator=interpolator, default_value=0.0)
        return PetOnCt(pet=moved, registered=False, overlap_before=before, overlap_after=before, mode=mode.value)
    if mode == AlignPet.OFF:
        raise InputError(f"the PET covers only {before:.0%} of the CT in physical space and --align-pet off "
                         "does not register it", path, FIX_HEADER + ", or use --align-pet auto")
    found, transform = register_pet_to_ct(ct, pet)
    found.mode = mode.value
    if not found.gate_passed and mode != AlignPet.FORCE:
        raise InputError(f"the PET lies off its CT (covers {before:.0%} of it) and its registration failed the "
                         f"alignment gate: {'; '.join(found.failed_checks)}; found {found.figures()}", path,
                         FIX_HEADER + ", or give --align-pet force to apply this registration anyway")
    verdict = ("alignment gate passed" if found.gate_passed else
               f"alignment gate FAILED ({'; '.join(found.failed_checks)}), applied because of --align-pet force")
    why = "--align-pet force" if mode == AlignPet.FORCE else f"the PET covered only {before:.0%} of the CT"
    message = f"{why}: registered the PET rigidly to the CT ({found.figures()}); {verdict} - check the overlay"
    if warn is not None:
        warn(message)
    found.pet = _resample_with(pet, ct, transform)
    found.notes = [message]
    return found
