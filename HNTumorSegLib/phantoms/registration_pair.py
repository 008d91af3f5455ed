"""An unregistered pre-RT / mid-RT T2w pair with a known transform, for testing registration (issue 23).

:func:`HNTumorSegLib.phantoms.make_midrt_case` hands out the pre-RT mask already registered (as
HNTS-MRG does); a clinic holds two scans in their own positions. This pair is made for the
registration to find its way back: the mid-RT scan is the pre-RT anatomy seen through a known
mapping ``mid-RT point -> pre-RT point`` (LPS mm):

    T(p) = R (p - c) + c + t + d(p)

* ``R``: a rotation of ``rotation_deg`` (default 5 degrees) about an oblique axis through the
  field-of-view centre ``c``; ``t``: a shift of ``shift_mm`` (default 10 mm);
* ``d``: a smooth random displacement (:class:`~HNTumorSegLib.phantoms.shapes.VectorField`,
  wavelength 90 mm) scaled so its largest length over the mid-RT grid is ``deform_mm`` (8 mm);
* the GTVp shrinks to ``1 - gtvp_shrink`` of its volume (default 30 % less), nodes to 90 %;
  regressed tumour becomes intermediate-bright treated tissue, intensities rescale (as
  :mod:`HNTumorSegLib.phantoms.mri`).

``truth_mask`` is the pre-RT mask carried through ``T`` *analytically* (each mid-RT voxel centre
mapped to the pre-RT anatomy and the lesion surfaces evaluated there), so a perfect
registration reproduces it up to the pre-RT grid's own voxelisation. ``landmarks_mm`` are mid-RT
points inside the body (lattice of 12 mm) and ``true_map`` gives their pre-RT positions.

Everything is built from :mod:`HNTumorSegLib.phantoms.exact` arithmetic, so the pair has the
same bits on every CPU.

Example:
    >>> pair = make_registration_pair(seed=0, shape=(8, 32, 32), spacing=(4.0, 4.0, 8.0))
    >>> sorted(pair)
    ['fixed', 'fixed_mask', 'landmarks_mm', 'moving', 'moving_mask', 'true_map', 'truth_mask']
    >>> pair["fixed"].array.shape, pair["moving"].same_grid(pair["moving_mask"])
    ((8, 32, 32), True)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..image import Image
from . import exact
from .anatomy import TISSUES, labels_from_levels, lesion_levels, tissue_map
from .mri import MRIScene, finish_t2, grid_points, prert_with_scene, render_t2
from .shapes import VectorField

#: Axis of the rigid rotation (normalised in :func:`_rotation`): mostly about the feet-head axis.
ROTATION_AXIS = (0.25, 0.35, 1.0)
#: Direction of the rigid shift (scaled to ``shift_mm``).
SHIFT_DIRECTION = (0.6, -0.7, 0.4)
LANDMARK_STEP_MM = 12.0


def _rotation(angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation matrix about :data:`ROTATION_AXIS`, written term by term."""
    n = exact.norm3(ROTATION_AXIS)
    ux, uy, uz = (v / n for v in ROTATION_AXIS)
    a = angle_deg * (math.pi / 180.0)
    c, s = float(exact.cos(np.array(a))), float(exact.sin(np.array(a)))
    k = 1.0 - c
    return np.array([[c + ux * ux * k, ux * uy * k - uz * s, ux * uz * k + uy * s],
                     [uy * ux * k + uz * s, c + uy * uy * k, uy * uz * k - ux * s],
                     [uz * ux * k - uy * s, uz * uy * k + ux * s, c + uz * uz * k]])


def _true_map(seed: int, scene: MRIScene, mid_grid: Image, shift_mm: float, rotation_deg: float,
              deform_mm: float) -> Callable[[np.ndarray], np.ndarray]:
    rot = _rotation(rotation_deg)
    n = exact.norm3(SHIFT_DIRECTION)
    shift = np.array([v / n * shift_mm for v in SHIFT_DIRECTION])
    field = VectorField(np.random.default_rng([seed, 31]), amplitude=(1.0, 1.0, 0.7), wavelength=90.0)
    d = field(grid_points(mid_grid)).astype(np.float64)
    longest = math.sqrt(float((d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]).max()))
    scale = deform_mm / longest if longest > 0 else 0.0
    c = scene.centre_phys.astype(np.float64)

    def true_map(points: np.ndarray) -> np.ndarray:
        """Mid-RT physical points (..., 3) -> their pre-RT physical points (float64)."""
        p = np.asarray(points, np.float64)
        return exact.matvec3(p - c, rot) + c + shift + scale * field(p).astype(np.float64)

    return true_map


def make_registration_pair(seed: int = 0, shape=(32, 112, 112), spacing=(1.3, 1.3, 2.5), n_nodes: int = 2,
                           shift_mm: float = 10.0, rotation_deg: float = 5.0, deform_mm: float = 8.0,
                           gtvp_shrink: float = 0.3, node_shrink: float = 0.0) -> dict:
    """The pair (module docstring). Keys: ``moving`` / ``moving_mask`` (pre-RT T2 and mask, pre-RT
    grid), ``fixed`` / ``fixed_mask`` (mid-RT T2 and its own, shrunken mask), ``truth_mask`` (the
    pre-RT mask through the true mapping, mid-RT grid), ``landmarks_mm`` (N x 3 mid-RT LPS points)
    and ``true_map`` (mid-RT points -> pre-RT points). ``shape`` (z, y, x), ``spacing`` (x, y, z) mm.
    """
    pre, scene = prert_with_scene(seed, shape, spacing, n_nodes)
    rng = np.random.default_rng([seed, 32])
    # the mid-RT grid: same size and spacing, the table a little elsewhere
    mid_origin = np.asarray(scene.grid.origin) + rng.uniform(-3, 3, size=3)
    mid_grid = Image(np.zeros(scene.grid.array.shape, np.uint8), scene.grid.spacing, tuple(mid_origin))
    true_map = _true_map(seed, scene, mid_grid, shift_mm, rotation_deg, deform_mm)
    mid_blobs = []
    for b in scene.blobs:
        keep = 1.0 - (gtvp_shrink if b.label == 1 else node_shrink)
        mid_blobs.append(b.scaled(exact.cube_root(keep)))
    phys_mid = grid_points(mid_grid)
    canon = scene.to_canonical(true_map(phys_mid).astype(np.float32))
    gain, tumour_gain = rng.uniform(0.85, 1.2), rng.uniform(0.8, 0.95)
    clean, labels_mid = render_t2(scene, canon, mid_blobs, scene.blobs, tumour_gain)
    scene_mid = MRIScene(mid_grid, scene.centre_phys, scene.zoom, scene.texture, scene.muscle_texture, mid_blobs)
    t2_mid = finish_t2(np.random.default_rng([seed, 33]), scene_mid, clean, phys_mid, gain)
    truth = labels_from_levels(lesion_levels(canon, scene.blobs), scene.blobs)
    # landmarks: a lattice inside the body, 10 mm in from the mid-RT edges, whose pre-RT point is
    # inside the pre-RT field of view too (a registration cannot be asked about anatomy it never saw)
    lo, hi = mid_grid.corners_lps().min(0) + 10.0, mid_grid.corners_lps().max(0) - 10.0
    axes = [np.arange(a, b + 1e-9, LANDMARK_STEP_MM) for a, b in zip(lo, hi)]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    pre_points = true_map(lattice)
    in_body = tissue_map(scene.to_canonical(pre_points.astype(np.float32)), scene.texture) != TISSUES["outside"]
    pre_lo, pre_hi = scene.grid.corners_lps().min(0) + 5.0, scene.grid.corners_lps().max(0) - 5.0
    in_view = np.all((pre_points >= pre_lo) & (pre_points <= pre_hi), axis=1)
    return {
        "moving": pre["T2"], "moving_mask": pre["mask"],
        "fixed": mid_grid.with_array(t2_mid), "fixed_mask": mid_grid.with_array(labels_mid),
        "truth_mask": mid_grid.with_array(truth),
        "landmarks_mm": lattice[in_body & in_view], "true_map": true_map,
    }
