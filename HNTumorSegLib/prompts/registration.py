"""The pre-RT T2 registered onto the mid-RT T2: rigid, then affine or deformable (issue 23).

Seed 003 (HNTS-MRG 2024 task 2) starts from pre-RT contours *registered* onto the mid-RT scan.
The challenge handed them out; a clinic has two scans in their own positions. :func:`register`
finds the mapping ``mid-RT (fixed) point -> pre-RT (moving) point`` that ITK's resampling needs;
:func:`warp_image` and :func:`warp_labels` carry the pre-RT image and contours through it.

| stage | transform | start | metric | optimiser | pyramid |
|---|---|---|---|---|---|
| rigid | ``Euler3DTransform`` | centres of mass aligned (``MOMENTS``) | Mattes MI, 50 bins, 30,000 random samples per level (seeded) | gradient descent, 1 mm steps, 150 its/level, scales from physical shift | shrink 4, 2, 1; smoothing 2, 1, 0 mm |
| affine | ``AffineTransform`` | the rigid result | same | same, 100 its/level | shrink 2, 1; smoothing 1, 0 mm |
| deformable | cubic ``BSplineTransform`` on top of the rigid one | identity | same, 8,000 then 20,000 samples | L-BFGS-B, every coefficient within 0.4 of the control spacing, 20 its (and evaluations)/level | control points every 30 mm; shrink 2, 1 |

*Library: SimpleITK's registration framework.* It is already a dependency (and ships inside
3D Slicer, so the module adds nothing to Slicer's Python), and its v4 framework runs the same
code in the CLI, a batch worker and Slicer. itk-elastix (what radiotherapy research uses most,
with a bending-energy penalty) would add a ~100 MB wheel pinned to its own ITK next to
Slicer's, and ANTsPy another large native package; neither is needed for the smooth pre-to-mid
changes of a head-and-neck scan. Without a bending-energy term the B-spline is kept smooth by
its coarse control grid (30 mm), which is also what keeps it from shrinking the regressed tumour
away: the mapping is meant to follow the anatomy, not the treatment response. The Jacobian
determinant is reported so a fold (det <= 0) is never silent (:mod:`.registration_quality`).

*Folds.* The first version folded 0.75 % of an 80 x 512 x 512 pair (det down to -2.2). Two
causes, two fixes. (1) ITK's B-spline passes points outside its domain unchanged; the domain was
the bin-averaged working image, which drops the last voxels when a size is not a multiple of the
bin (512 = 3 x 170 + 2), so the edge voxels of the full grid stayed put beside neighbours moved
by up to 15 mm. The domain now covers every voxel of the full grid and one working voxel more
(:func:`bspline_domain`). (2) Nothing bounded the coefficients. Choi and Lee (2000) show a cubic
B-spline deformation is locally injective when every control point moves less than 1/2.48 = 0.403
of the control spacing per axis (Rueckert et al. 2006 build diffeomorphic free-form deformations
on it); the optimiser is L-BFGS-B with every coefficient in +-0.4 x the smallest spacing
(``max_control_shift``; 11.4 mm at 28.5 mm spacing, more than the 8 mm the test pairs deform).
A multi-resolution grid (60 then 30 mm) is not used: L-BFGS-B in ITK cannot follow a grid refined
between levels (its scales keep the first level's size), and composing two bounded B-splines needs
the first one's spatial Jacobian, which ITK's B-spline lacks; the 30 mm grid from the half-
resolution level on reaches the same landmark error on the test pair (median 1.17 mm, 1.26 mm
before). The B-spline stage samples 8,000 then 20,000 points: at 30,000 per level the bounded
optimiser took 2.4 times the time of the old one on 80 x 512 x 512 (its evaluations cost the most).

*Determinism.* The metric samples a fixed random set (``seed``); the optimiser scales are written
out (ITK's scale and learning-rate estimators draw their own, unseeded samples); and the
registration runs on **one thread** (:data:`REGISTRATION_THREADS`, ITK's global default set for
its duration). Measured why: ITK's Mattes metric adds the threads' derivative terms in the order
the threads finish, and L-BFGS carries that last-bit noise into another path: 0.06-0.44 mm
between two runs with 4 threads, 0.26 mm between 1 and 2 threads; with one thread, two processes
with different ITK thread settings give the same bits. The cost is time (the metric is
evaluated on a fixed number of samples, so it stays bounded); warping and writing the outputs
use every thread (per-voxel work: the same bits whatever the split). The SimpleITK wheels have
no CPU-dependent code paths, so the same holds on any x86-64 CPU.
``Testing/test_registration_determinism.py`` runs the command in two processes with different
thread settings and compares the outputs byte for byte.

*Speed.* The registration works on a *working copy* of each image, bin-averaged (``BinShrink``)
along its finest axes until it has at most ``max_working_voxels`` voxels (2.5 M: an
80 x 512 x 512 mid-RT T2 at 0.5 mm is registered at 1.5 mm in plane). The outputs are on the
full mid-RT grid: the transform is sampled once as a displacement field on the working grid
(:func:`dense_transform`; smooth, so linear interpolation of it is exact to far below a voxel)
and every output is resampled through that field.

*Labels.* Each label is warped as its own 0/1 mask with linear interpolation and kept where it
reaches 0.5, the larger value winning (:func:`warp_labels`): nearest neighbour can drop or
break a node a few voxels across when the grids differ in spacing, and the 0.5 level is the
partial-volume surface of the original contour.

Example:
    >>> from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
    >>> pair = make_registration_pair(seed=0, shape=(12, 40, 40), spacing=(3.5, 3.5, 6.0))
    >>> result = register(pair["fixed"], pair["moving"], RegistrationSettings(mode="rigid"))
    >>> labels = warp_labels(pair["moving_mask"], result, pair["fixed"])
    >>> labels.same_grid(pair["fixed"]), sorted(set(labels.array.ravel().tolist())) == [0, 1, 2]
    (True, True)
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..fileio import atomic_path
from ..image import Image
from ..vocab import RegistrationMode

ProgressFn = Callable[[str, float, str], None]

#: Seed of the metric's random samples: the same pair always registers the same way.
SAMPLING_SEED = 23
#: Threads (and work units) of every registration, whatever the machine or
#: ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``: one, the only count with the same bits every run
#: (module docstring, *Determinism*).
REGISTRATION_THREADS = 1
WORK_UNITS = REGISTRATION_THREADS
#: Suffixes ``write_transform`` accepts: ITK text and HDF5 transform files (Slicer reads both).
TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5")


@dataclass
class RegistrationSettings:
    """What :func:`register` does (module docstring table); the defaults are the tested ones."""

    mode: RegistrationMode | str = RegistrationMode.DEFORMABLE
    seed: int = SAMPLING_SEED
    samples: int = 30_000           # metric samples per pyramid level (a count: the cost does not grow with the image)
    histogram_bins: int = 50
    rigid_iterations: int = 150
    affine_iterations: int = 100
    bspline_iterations: int = 20   # per pyramid level, also the cap on function evaluations (L-BFGS-B)
    # metric samples of the B-spline stage at half and at full resolution (its evaluations cost the most)
    bspline_samples: tuple[int, int] = (8_000, 20_000)
    mesh_mm: float = 30.0           # control-point spacing of the finest B-spline level
    max_working_voxels: int = 2_500_000
    affine_first: bool = False      # deformable: an affine stage between the rigid one and the B-spline
    max_control_shift: float = 0.4  # B-spline coefficients bounded by this fraction of the control spacing: no fold

    def __post_init__(self) -> None:
        self.mode = RegistrationMode.parse(self.mode, "--mode")


@dataclass
class Registration:
    """The result: ``transform`` maps fixed (mid-RT) points to moving (pre-RT) points (ITK's convention).

    ``linear`` is its rigid or affine part alone; ``stages`` one record per stage (name, final
    metric, iterations, seconds); ``work_factors`` the bin sizes of the working grid (x, y, z).
    """

    transform: sitk.Transform
    linear: sitk.Transform
    mode: RegistrationMode
    fixed_work: sitk.Image
    moving_work: sitk.Image
    stages: list[dict] = field(default_factory=list)
    work_factors: tuple[int, int, int] = (1, 1, 1)
    _field: sitk.Image | None = field(default=None, repr=False)
    _field_key: tuple | None = field(default=None, repr=False)

    @property
    def rigid_parameters(self) -> dict:
        """Rotation (degrees about x, y, z) and translation (mm, LPS) of the rigid stage."""
        p = self.stages[0]["parameters"]
        return {"rotation_deg": [round(math.degrees(v), 4) for v in p[:3]],
                "translation_mm": [round(v, 4) for v in p[3:6]]}


# ---- working images ------------------------------------------------------------------------

def work_factors(image: Image, max_voxels: int) -> tuple[int, int, int]:
    """Integer bin sizes (x, y, z): the axis with the finest binned spacing grows first, until the
    binned image has at most ``max_voxels`` voxels (thick slices are left alone)."""
    size = np.array(image.shape_xyz, float)
    spacing = np.array(image.spacing, float)
    f = np.ones(3, int)
    while np.prod(np.ceil(size / f)) > max_voxels and np.any(np.ceil(size / f) > 8):
        axis = int(np.argmin(np.where(np.ceil(size / f) > 8, spacing * f, np.inf)))
        f[axis] += 1
    return int(f[0]), int(f[1]), int(f[2])


def working_image(image: Image, factors: tuple[int, int, int]) -> sitk.Image:
    """``image`` as float32, bin-averaged by ``factors`` (the mean of each bin: no aliasing)."""
    img = sitk.Cast(image.to_sitk(), sitk.sitkFloat32)
    return sitk.BinShrink(img, list(factors)) if max(factors) > 1 else img


# ---- the registration method (shared with seed 004's PET->CT fallback) -----------------------

def mattes_method(sampling: float, seed: int, bins: int = 50, shrink=(4, 2, 1), sigmas_mm=(2, 1, 0),
                  threads: int | None = None, work_units: int | None = None) -> sitk.ImageRegistrationMethod:
    """An ``ImageRegistrationMethod`` with Mattes mutual information on seeded random samples,
    linear interpolation and a pyramid (``shrink`` factors, Gaussian ``sigmas_mm``).

    ``work_units`` fixes how the metric is split into partial sums (determinism, module docstring);
    ``None`` leaves ITK's default (one per thread), as seed 004's released PET->CT code runs.
    """
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(sampling), int(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(shrinkFactors=[int(s) for s in shrink])
    reg.SetSmoothingSigmasPerLevel(smoothingSigmas=[float(s) for s in sigmas_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if threads is not None:
        reg.SetNumberOfThreads(int(threads))
    if work_units is not None:   # after the threads: SimpleITK may tie one to the other
        reg.SetNumberOfWorkUnits(int(work_units))
    return reg


def last_transform(fitted: sitk.Transform, kind: type) -> sitk.Transform:
    """The optimised transform out of the composite ``Execute`` returns, as a plain ``kind``."""
    composite = sitk.CompositeTransform(fitted)
    inner = composite.GetNthTransform(composite.GetNumberOfTransforms() - 1)
    out = kind(3) if kind is sitk.AffineTransform else kind()
    out.SetFixedParameters(inner.GetFixedParameters())
    out.SetParameters(inner.GetParameters())
    return out


def _watch(reg: sitk.ImageRegistrationMethod, stage: str, iterations: int, levels: int,
           progress: ProgressFn | None) -> list[BaseException]:
    """Report each iteration; return the list that keeps what a callback raised. Installed even
    without ``progress``: Python runs a signal handler (Ctrl-C, SIGTERM) only between its own
    bytecodes, so the callback is where a cancel arrives during ``Execute``; ITK turns it into a
    RuntimeError, and :func:`_run` raises the original again (exit 130/143, not "failed")."""
    caught: list[BaseException] = []

    def tick() -> None:
        try:
            if progress is not None:
                level = reg.GetCurrentLevel()
                done = min(1.0, (level + min(reg.GetOptimizerIteration(), iterations) / iterations) / levels)
                progress(stage, done, f"level {level + 1}/{levels}, iteration {reg.GetOptimizerIteration()}")
        except BaseException as exc:   # KeyboardInterrupt, the CLI's Terminated, a progress sink's error
            caught.append(exc)
            raise

    reg.AddCommand(sitk.sitkIterationEvent, tick)
    return caught


def _run(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image, stage: str,
         caught: list[BaseException]) -> sitk.Transform:
    sys.last_value = None   # SimpleITK prints a callback's exception, which sets sys.last_value
    try:
        return reg.Execute(fixed, moving)
    except RuntimeError as exc:   # ITK stops when (nearly) no sample falls inside both images
        # a signal may land before the callback's ``try``: SimpleITK then printed it (sys.last_value)
        interrupt = caught[0] if caught else getattr(sys, "last_value", None)
        if isinstance(interrupt, BaseException) and not isinstance(interrupt, Exception):
            raise interrupt from None
        reason = str(exc).strip().splitlines()[-1][:100] if str(exc).strip() else "no reason given"
        raise InputError(f"the {stage} registration failed ({reason})", None,
                         "check both images are T2 scans of the same patient and region") from None


def _record(reg: sitk.ImageRegistrationMethod, name: str, t0: float, transform: sitk.Transform) -> dict:
    return {"stage": name, "metric": float(reg.GetMetricValue()), "iterations": int(reg.GetOptimizerIteration()),
            "stop": reg.GetOptimizerStopConditionDescription()[:200], "seconds": round(time.monotonic() - t0, 3),
            "parameters": [float(v) for v in transform.GetParameters()],
            "fixed_parameters": [float(v) for v in transform.GetFixedParameters()]}


def _sample_count(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, shrink, s: RegistrationSettings,
                  samples: tuple[int, ...] | None = None) -> None:
    """About ``samples[i]`` (default ``s.samples`` at every level) random samples at pyramid level
    ``i`` (seeded; all voxels of a small level)."""
    voxels = float(np.prod(fixed.GetSize()))
    counts = samples if samples is not None else (s.samples,) * len(shrink)
    reg.SetMetricSamplingPercentagePerLevel([min(1.0, n * f ** 3 / voxels) for n, f in zip(counts, shrink)], s.seed)


def optimizer_scales(fixed: sitk.Image, transform: sitk.Transform) -> list[float]:
    """Parameter scales: (mm moved per unit)^2 of each parameter at the image's half diagonal ``r``:
    a rotation (radians) moves points ``r`` mm, a matrix element ``r`` mm, a translation 1 mm."""
    r = 0.5 * math.sqrt(sum((n * sp) ** 2 for n, sp in zip(fixed.GetSize(), fixed.GetSpacing())))
    n = transform.GetNumberOfParameters()
    return [r * r] * (n - 3) + [1.0] * 3   # Euler3D: 3 angles, 3 shifts; affine: 9 matrix elements, 3 shifts


def _linear_stage(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, kind: type, name: str,
                  iterations: int, shrink, sigmas, s: RegistrationSettings, threads: int,
                  progress: ProgressFn | None) -> tuple[sitk.Transform, dict]:
    t0 = time.monotonic()
    reg = mattes_method(1.0, s.seed, s.histogram_bins, shrink, sigmas, threads, WORK_UNITS)
    _sample_count(reg, fixed, shrink, s)
    # steps of 2 mm halved at each turn; scales written out (ITK's estimators draw unseeded samples)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=int(iterations),
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScales(optimizer_scales(fixed, initial))
    reg.SetInitialTransform(initial, inPlace=False)
    caught = _watch(reg, name, iterations, len(shrink), progress)
    fitted = last_transform(_run(reg, fixed, moving, name, caught), kind)
    return fitted, _record(reg, name, t0, fitted)


def _affine_from(rigid: sitk.Euler3DTransform) -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


def control_shift_bound(bspline: sitk.BSplineTransform, fraction: float) -> float:
    """The largest shift (mm) a control point of ``bspline`` may take: ``fraction`` of its smallest
    control-point spacing (Choi & Lee's injectivity bound for cubic B-splines is 1/2.48 = 0.403 of
    the spacing, per axis; the smallest axis spacing bounds all three)."""
    return float(fraction) * min(float(v) for v in bspline.GetFixedParameters()[6:9])


def bspline_domain(fixed: Image, work: sitk.Image) -> sitk.Image:
    """An empty image at the working spacing whose extent covers every voxel of the full-resolution
    ``fixed`` grid and one working voxel more on each side: the B-spline's domain. ITK's B-spline
    passes points outside its domain unchanged, so a domain only as large as the binned working
    image (which drops the last voxels when the size is not a multiple of the bin) left the edge
    voxels at identity beside moved neighbours: a fold (module docstring, *Folds*)."""
    sp_w, sp = np.array(work.GetSpacing(), float), np.array(fixed.spacing, float)
    lo = -0.5 * sp - sp_w
    hi = (np.array(fixed.shape_xyz, float) - 0.5) * sp + sp_w
    size = [int(v) for v in np.ceil((hi - lo) / sp_w)]
    domain = sitk.Image(size, sitk.sitkUInt8)
    domain.SetSpacing([float(v) for v in sp_w])
    domain.SetDirection(tuple(float(v) for v in fixed.direction.flatten()))
    domain.SetOrigin([float(v) for v in np.asarray(fixed.origin, float) + fixed.direction @ (lo + 0.5 * sp_w)])
    return domain


def _bspline_stage(fixed: sitk.Image, moving: sitk.Image, linear: sitk.Transform, domain: sitk.Image,
                   s: RegistrationSettings, threads: int,
                   progress: ProgressFn | None) -> tuple[sitk.BSplineTransform, dict]:
    """One B-spline, control points every ``mesh_mm`` over ``domain``, on a two-level image pyramid,
    every coefficient bounded (module docstring, *Folds*)."""
    t0 = time.monotonic()
    extent = [n * sp for n, sp in zip(domain.GetSize(), domain.GetSpacing())]
    bspline = sitk.BSplineTransformInitializer(domain, [max(1, int(round(e / s.mesh_mm))) for e in extent], order=3)
    reg = mattes_method(1.0, s.seed + 1, s.histogram_bins, (2, 1), (1, 0), threads, WORK_UNITS)
    _sample_count(reg, fixed, (2, 1), s, tuple(s.bspline_samples))
    bound = control_shift_bound(bspline, s.max_control_shift)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=int(s.bspline_iterations),
                             maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=int(s.bspline_iterations),
                             costFunctionConvergenceFactor=1e9, lowerBound=-bound, upperBound=bound)
    reg.SetMovingInitialTransform(linear)
    reg.SetInitialTransform(bspline, inPlace=True)
    caught = _watch(reg, "deformable", s.bspline_iterations, 2, progress)
    _run(reg, fixed, moving, "deformable", caught)
    record = _record(reg, "deformable", t0, bspline)
    record["bound_mm"] = round(bound, 3)
    return bspline, record


def register(fixed: Image, moving: Image, settings: RegistrationSettings | None = None,
             progress: ProgressFn | None = None) -> Registration:
    """Register ``moving`` (pre-RT T2) onto ``fixed`` (mid-RT T2): module docstring.

    ``progress(stage, fraction, message)`` hears the stages ``rigid``, ``affine`` / ``deformable``.
    A registration ITK cannot run (no overlap even after the centres are aligned) raises
    :class:`InputError`.
    """
    s = settings or RegistrationSettings()
    mode = RegistrationMode.parse(s.mode, "--mode")
    # ITK's metric threaders read the global default, not only the method's setting: fix both
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        return _register(fixed, moving, s, mode, progress)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _register(fixed: Image, moving: Image, s: RegistrationSettings, mode: RegistrationMode,
              progress: ProgressFn | None) -> Registration:
    threads = REGISTRATION_THREADS
    factors = work_factors(fixed, s.max_working_voxels)
    fixed_work = working_image(fixed, factors)
    moving_work = working_image(moving, work_factors(moving, s.max_working_voxels))
    initial = sitk.CenteredTransformInitializer(fixed_work, moving_work, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid, record = _linear_stage(fixed_work, moving_work, initial, sitk.Euler3DTransform, "rigid",
                                  s.rigid_iterations, (4, 2, 1), (2, 1, 0), s, threads, progress)
    stages = [record]
    linear: sitk.Transform = rigid
    transform: sitk.Transform = rigid
    if mode is RegistrationMode.AFFINE or (mode is RegistrationMode.DEFORMABLE and s.affine_first):
        linear, record = _linear_stage(fixed_work, moving_work, _affine_from(rigid), sitk.AffineTransform,
                                       "affine", s.affine_iterations, (2, 1), (1, 0), s, threads, progress)
        stages.append(record)
        transform = linear
    if mode is RegistrationMode.DEFORMABLE:
        bspline, record = _bspline_stage(fixed_work, moving_work, linear, bspline_domain(fixed, fixed_work), s,
                                         threads, progress)
        stages.append(record)
        transform = sitk.CompositeTransform([linear, bspline])   # the B-spline first, then the linear move
    return Registration(transform, linear, mode, fixed_work, moving_work, stages, factors)


# ---- applying it -----------------------------------------------------------------------------

def displacement_field(reg: Registration, reference: Image) -> sitk.Image:
    """The transform sampled as displacements (mm, float64 vectors) on a grid ``reg.work_factors``
    coarser than ``reference`` that covers all of it (its last point at or past the last voxel).
    Cached on ``reg`` for the reference it was made for."""
    key = (reference.array.shape, tuple(reference.spacing), tuple(reference.origin),
           tuple(reference.direction.flatten()))
    if reg._field is None or reg._field_key != key:
        f = reg.work_factors
        size = [int(math.ceil((n - 1) / k)) + 1 for n, k in zip(reference.shape_xyz, f)]
        spacing = [float(sp * k) for sp, k in zip(reference.spacing, f)]
        reg._field = sitk.TransformToDisplacementField(reg.transform, sitk.sitkVectorFloat64, size, reference.origin,
                                                       spacing, tuple(reference.direction.flatten()))
        reg._field_key = key
    return reg._field


def dense_transform(reg: Registration, reference: Image) -> sitk.Transform:
    """The transform to resample onto ``reference`` with: itself when linear (ITK resamples those
    fast), else :func:`displacement_field` as a transform (a B-spline is then evaluated once per
    field point, not once per output voxel)."""
    if reg.mode is not RegistrationMode.DEFORMABLE:
        return reg.transform
    return sitk.DisplacementFieldTransform(sitk.Image(displacement_field(reg, reference)))


def warp_image(moving: Image, reg: Registration, fixed: Image, default_value: float = 0.0) -> Image:
    """``moving`` resampled onto ``fixed``'s grid through the registration (linear, float32)."""
    out = sitk.Resample(sitk.Cast(moving.to_sitk(), sitk.sitkFloat32), fixed.to_sitk(), dense_transform(reg, fixed),
                        sitk.sitkLinear, float(default_value), sitk.sitkFloat32)
    return Image.from_sitk(out)


def _label_region(labels: Image, value: int, reg: Registration, fixed: Image,
                  margin_mm: float = 6.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Index box (lo, hi inclusive, x y z) of the fixed voxels that can map into label ``value``:
    the fixed grid's points mapped through the transform (on the coarse field grid), kept where
    they land within ``margin_mm`` of the label's bounding box. ``None``: it lands outside."""
    idx = np.argwhere(labels.array == value)[:, ::-1]   # x, y, z
    corners = np.array([[a[0], b[1], c[2]] for a in (idx.min(0) - 1, idx.max(0) + 1)
                        for b in (idx.min(0) - 1, idx.max(0) + 1) for c in (idx.min(0) - 1, idx.max(0) + 1)], float)
    phys = labels.index_to_physical(corners)
    lo, hi = phys.min(0) - margin_mm, phys.max(0) + margin_mm
    f = np.array(reg.work_factors)
    field_img = displacement_field(reg, fixed)
    disp = sitk.GetArrayViewFromImage(field_img)              # (z, y, x, 3) on the coarse grid
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in disp.shape[:3]], indexing="ij")
    grid = np.stack([xx, yy, zz], -1) * f                     # fixed voxel index (x, y, z) of each field point
    mapped = fixed.index_to_physical(grid.reshape(-1, 3).astype(float)) + disp.reshape(-1, 3)
    hit = np.all((mapped >= lo) & (mapped <= hi), axis=1)
    if not hit.any():
        return None
    size = np.array(fixed.shape_xyz)
    inside = grid.reshape(-1, 3)[hit]
    return (np.clip(inside.min(0) - f, 0, size - 1).astype(int),
            np.clip(inside.max(0) + f, 0, size - 1).astype(int))


def warp_labels(labels: Image, reg: Registration, fixed: Image, values=(1, 2)) -> Image:
    """The label map (0 background, ``values``) on ``fixed``'s grid: each label's 0/1 mask
    interpolated linearly, kept where it reaches 0.5, the largest value winning (module docstring).
    Only the part of the fixed grid a label can reach is resampled."""
    best = np.zeros(fixed.array.shape, np.float32)
    out = np.zeros(fixed.array.shape, np.uint8)
    for value in values:
        if not np.any(labels.array == value):
            continue
        region = _label_region(labels, value, reg, fixed)
        if region is None:
            continue
        lo, hi = region
        sub_origin = fixed.index_to_physical(lo[None].astype(float))[0]
        sub = Image(np.zeros(tuple((hi - lo + 1)[::-1]), np.uint8), fixed.spacing, tuple(sub_origin), fixed.direction)
        mask = sitk.Cast(labels.to_sitk() == int(value), sitk.sitkFloat32)
        moved = sitk.GetArrayFromImage(sitk.Resample(mask, sub.to_sitk(), dense_transform(reg, fixed),
                                                     sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        window = (slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
        take = (moved >= 0.5) & (moved > best[window])
        best[window][take] = moved[take]
        out[window][take] = value
    return fixed.with_array(out)


def write_transform(transform: sitk.Transform, path: str | os.PathLike) -> Path:
    """Write ``transform`` (ITK text ``.tfm``/``.txt`` or HDF5 ``.h5``) atomically, verified by
    reading it back. Slicer loads either as a transform node (fixed -> moving, ITK's convention)."""
    p = Path(path)
    if not p.name.lower().endswith(TRANSFORM_SUFFIXES):
        raise InputError("the transform file needs a .tfm, .txt or .h5 name", p, "e.g. pre_to_mid.h5")

    def readable(tmp: Path) -> None:
        sitk.ReadTransform(str(tmp))

    with atomic_path(p, verify=readable) as tmp:
        sitk.WriteTransform(transform, str(tmp))
    return p
