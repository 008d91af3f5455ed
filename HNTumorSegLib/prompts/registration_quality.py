"""How good a pre-RT -> mid-RT registration is: similarity before/after, Jacobian range, a picture.

What ``hntumorseg register`` writes to ``--json`` and prints (issue 23):

* **similarity** of the mid-RT T2 and the pre-RT T2, before (scanner coordinates, identity),
  after the rigid stage and after the last stage: Mattes mutual information (the metric the
  registration optimises, on the same seeded samples, sign flipped so higher is better) and the
  normalised cross-correlation (Pearson's r over the voxels both images cover; MI and NCC
  disagree when the contrast changed between the scans, which a reader should see);
* **Jacobian determinant** of the mapping (volume change: 1 none, 0.7 shrinks 30 %) on the
  working grid: its range, and the fraction of voxels where it is <= 0: a *fold*, where the
  mapping turns tissue inside out. A fold is reported (``folded: true``), never hidden;
* a **picture**: three axial slices of the mid-RT image as a checkerboard with the registered
  pre-RT image (edges that continue across the squares mean a good match), the registered
  contours drawn on top (GTVp red, GTVn cyan, as :mod:`HNTumorSegLib.overlay`).

Example:
    >>> from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
    >>> from HNTumorSegLib.prompts.registration import RegistrationSettings, register
    >>> pair = make_registration_pair(seed=0, shape=(12, 40, 40), spacing=(3.5, 3.5, 6.0))
    >>> reg = register(pair["fixed"], pair["moving"], RegistrationSettings(mode="rigid"))
    >>> q = similarity(reg, pair["fixed"], pair["moving"])
    >>> q["mutual_information"]["after"] > q["mutual_information"]["before"]
    True
    >>> jacobian_range(reg, pair["fixed"])["folded"]
    False
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..fileio import atomic_path
from ..image import Image
from ..overlay import PRED_COLOURS
from ..vocab import RegistrationMode
from .registration import REGISTRATION_THREADS, SAMPLING_SEED, WORK_UNITS, Registration, dense_transform, displacement_field, mattes_method


def _mattes(reg: Registration, transform: sitk.Transform) -> float:
    voxels = float(np.prod(reg.fixed_work.GetSize()))
    method = mattes_method(min(1.0, 50_000 / voxels), SAMPLING_SEED, 50, (1,), (0,), REGISTRATION_THREADS, WORK_UNITS)
    method.SetInitialTransform(transform)
    try:
        return round(-float(method.MetricEvaluate(reg.fixed_work, reg.moving_work)), 5)
    except RuntimeError:   # no sample inside both images (scanner coordinates far apart)
        return 0.0


def _ncc(reg: Registration, transform: sitk.Transform) -> float:
    moved = sitk.Resample(reg.moving_work, reg.fixed_work, transform, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    a = sitk.GetArrayViewFromImage(reg.fixed_work).astype(np.float64).ravel()
    b = sitk.GetArrayViewFromImage(moved).astype(np.float64).ravel()
    keep = np.isfinite(b)
    if keep.sum() < 10:
        return 0.0
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return round(float((a * b).sum() / denominator), 5) if denominator > 0 else 0.0


def similarity(reg: Registration, fixed: Image, moving: Image) -> dict:
    """``{"mutual_information": {...}, "ncc": {...}}``, each ``before`` / ``after_rigid`` / ``after``
    (on the working images; ``fixed`` and ``moving`` name the grids the dense transform is for)."""
    del moving   # the working copies in ``reg`` are used; kept in the signature for the call sites' clarity
    final = dense_transform(reg, fixed)
    steps = {"before": sitk.Transform(3, sitk.sitkIdentity), "after_rigid": _rigid_of(reg), "after": final}
    return {"mutual_information": {k: _mattes(reg, t) for k, t in steps.items()},
            "ncc": {k: _ncc(reg, t) for k, t in steps.items()}}


def _rigid_of(reg: Registration) -> sitk.Transform:
    euler = sitk.Euler3DTransform()
    euler.SetFixedParameters(reg.stages[0]["fixed_parameters"])
    euler.SetParameters(reg.stages[0]["parameters"])
    return euler


def jacobian_range(reg: Registration, fixed: Image) -> dict:
    """``{"min", "max", "folded_fraction", "folded"}`` of the mapping's Jacobian determinant."""
    if reg.mode is RegistrationMode.DEFORMABLE:
        det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(displacement_field(reg, fixed)))
        lo, hi, folded = float(det.min()), float(det.max()), float((det <= 0).mean())
    else:
        value = float(np.linalg.det(np.array(reg.linear.GetMatrix()).reshape(3, 3))) if hasattr(
            reg.linear, "GetMatrix") else 1.0
        lo = hi = value
        folded = 1.0 if value <= 0 else 0.0
    return {"min": round(lo, 4), "max": round(hi, 4), "folded_fraction": round(folded, 6), "folded": folded > 0}


def _slices(labels: Image | None, nz: int) -> list[int]:
    """Three axial slices: through the registered contours when there are any, else the middle."""
    if labels is not None and labels.array.any():
        z = np.flatnonzero(labels.array.reshape(nz, -1).any(1))
        return sorted({int(z[len(z) // 4]), int(z[len(z) // 2]), int(z[(3 * len(z)) // 4])})
    return [nz // 4, nz // 2, (3 * nz) // 4]


def _window(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, [1, 99])
    return np.clip((arr - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def render_checkerboard(fixed: Image, warped: Image, path: str | os.PathLike, labels: Image | None = None,
                        title: str = "", tiles: int = 8, dpi: int = 100) -> Path:
    """Write the picture (module docstring) and return its path (atomic, like every output)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nz, ny, nx = fixed.array.shape
    slices = _slices(labels, nz)
    fig = Figure(figsize=(3.4 * len(slices), 3.9), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    a, b = _window(fixed.array), _window(warped.array)
    yy, xx = np.mgrid[0:ny, 0:nx]
    board = ((yy * tiles // ny) + (xx * tiles // nx)) % 2 == 0
    sx, sy = fixed.spacing[0], fixed.spacing[1]
    for i, z in enumerate(slices):
        ax = fig.add_subplot(1, len(slices), i + 1)
        ax.imshow(np.where(board, a[z], b[z]), cmap="gray", vmin=0, vmax=1, extent=(0, nx * sx, ny * sy, 0),
                  interpolation="nearest")
        if labels is not None:
            for value, colour in PRED_COLOURS.items():
                if np.any(labels.array[z] == value):
                    ax.contour((np.arange(nx) + 0.5) * sx, (np.arange(ny) + 0.5) * sy,
                               (labels.array[z] == value).astype(float), levels=[0.5], colors=colour, linewidths=1.4)
        ax.set_title(f"slice {z}: mid-RT | registered pre-RT", color="white", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if title else 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return Path(path)


def format_quality(quality: dict) -> str:
    """The lines ``register`` prints: similarity before -> after, Jacobian range and fold, label volumes."""
    mi, ncc, jac = quality["similarity"]["mutual_information"], quality["similarity"]["ncc"], quality["jacobian"]
    lines = [f"mode {quality['mode']}: mutual information {mi['before']:.3f} -> {mi['after_rigid']:.3f} (rigid) "
             f"-> {mi['after']:.3f}; NCC {ncc['before']:.3f} -> {ncc['after_rigid']:.3f} -> {ncc['after']:.3f}",
             f"Jacobian determinant {jac['min']:.3f} .. {jac['max']:.3f}"
             + (f"; FOLDED in {100 * jac['folded_fraction']:.2f} % of voxels - check the picture" if jac["folded"]
                else " (no fold)")]
    rigid = quality.get("rigid") or {}
    if rigid:
        lines.append("rigid: rotation " + ", ".join(f"{v:.2f}" for v in rigid["rotation_deg"]) + " deg, shift "
                     + ", ".join(f"{v:.1f}" for v in rigid["translation_mm"]) + " mm")
    for name, vol in (quality.get("labels") or {}).items():
        lines.append(f"{name}: {vol['before_ml']:.2f} mL pre-RT -> {vol['after_ml']:.2f} mL registered")
    return "\n".join(lines)
