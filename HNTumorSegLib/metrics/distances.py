"""Surface distances in millimetres, with MedPy's definitions (``medpy.metric.binary``).

MedPy (loli/medpy, ``medpy/metric/binary.py``) defines, for binary masks A (prediction)
and B (reference) and voxel spacing s:

* surface(X) = X minus its binary erosion by the 1-connectivity (6-neighbour) structure,
  with scipy's default ``border_value=0`` (a voxel on the array edge is surface);
* d(A→B) = for every surface voxel of A, the Euclidean distance (mm, ``sampling=s``) to the
  nearest surface voxel of B: ``distance_transform_edt(~surface(B), sampling=s)[surface(A)]``;
* ``hd95``  = ``numpy.percentile(hstack(d(A→B), d(B→A)), 95)`` (linear interpolation,
  both directed sets pooled); ``HD99.9`` and ``HD100`` (seed 001's other two) are the same
  with the 99.9th and 100th percentile (HD100 = the classical Hausdorff distance,
  ``max(max d(A→B), max d(B→A))``, MedPy's ``hd``);
* ``assd``  = ``concatenate(d(A→B), d(B→A)).mean()``: the mean of the pooled set (MedPy
  0.5.x, checked against MedPy 0.5.2). We call it MSD (mean surface distance), as HNTS-MRG
  does. MedPy <= 0.4 and the later HNTS-MRG SimpleITK script average the two directed means
  instead, ``(mean(d(A→B)) + mean(d(B→A))) / 2``; ``msd(..., pooled=False)`` gives that.

Both are undefined when either mask is empty: MedPy raises, we return ``None`` (the
HNTS-MRG scoring reports NaN and leaves such cases out of its means).

Speed: the distance transform runs only on the bounding box of A∪B grown by one voxel
(clipped to the array). That gives exactly MedPy's numbers: the erosion sees the same
neighbourhood (the one-voxel margin is background, or the array edge where MedPy's
erosion sees the edge too), and every surface voxel of B lies inside the box, so the
exact Euclidean distance transform finds the same nearest voxel.

Spacing: :class:`~HNTumorSegLib.image.Image` keeps ``spacing`` as (x, y, z) and arrays
as [z, y, x]; pass ``spacing_zyx`` (``image.spacing[::-1]``).

Example:
    >>> import numpy as np
    >>> a = np.zeros((10, 10, 10), bool); a[2:5, 2:5, 2:5] = True
    >>> b = np.roll(a, 2, axis=0)                  # 2 slices further along z
    >>> hd95(a, b, spacing_zyx=(3.0, 1.0, 1.0))    # 2 slices x 3 mm
    6.0
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..postprocess import bounding_box  # noqa: F401 (also this module's name for it: metrics.aggregate)

# MedPy's default connectivity=1: the 6-neighbour cross in 3D
_SURFACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def _surface(mask: np.ndarray) -> np.ndarray:
    """MedPy's object border: mask XOR its 1-connectivity erosion (border_value 0)."""
    return mask ^ ndimage.binary_erosion(mask, structure=_SURFACE_STRUCTURE, iterations=1)


def directed_surface_distances(pred: np.ndarray, ref: np.ndarray,
                               spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)
                               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The two directed surface-distance sets (d(pred→ref), d(ref→pred)) in mm.

    Returns ``None`` when either mask is empty. Arrays are [z, y, x]; ``spacing_zyx`` in
    the same order.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
    if not pred.any() or not ref.any():
        return None
    box = bounding_box(pred | ref, margin=1)
    pred, ref = pred[box], ref[box]
    sampling = np.asarray(spacing_zyx, dtype=np.float64)
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    # the EDT measures the distance to the nearest zero, so the surface is inverted
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)[ref_surface]
    return to_ref, to_pred


HD_PERCENTILES = {"HD95": 95.0, "HD99_9": 99.9, "HD100": 100.0}  # JSON key -> percentile


def hausdorff_percentiles(sets: tuple[np.ndarray, np.ndarray] | None,
                          percentiles: dict[str, float] = HD_PERCENTILES) -> dict[str, float | None]:
    """``{key: percentile of both directed sets pooled}`` (mm); every value ``None`` when ``sets`` is.

    Example:
        >>> a = np.zeros((3, 5, 5), bool); a[1, 1:4, 1:4] = True
        >>> b = a.copy(); b[1, 1:4, 3] = False                 # one column less
        >>> hausdorff_percentiles(directed_surface_distances(a, b, (3.0, 1.0, 1.0)))
        {'HD95': 1.0, 'HD99_9': 1.0, 'HD100': 1.0}
    """
    if sets is None:
        return {key: None for key in percentiles}
    pooled = np.hstack(sets)
    return {key: float(np.percentile(pooled, q)) for key, q in percentiles.items()}


def hd_percentile(pred: np.ndarray, ref: np.ndarray, percentile: float,
                  spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> float | None:
    """Any percentile of both directed surface-distance sets pooled (mm): 95, 99.9, 100 (= Hausdorff)."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    return hausdorff_percentiles(directed_surface_distances(pred, ref, spacing_zyx), {"hd": percentile})["hd"]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> float | None:
    """95th percentile of both directed surface-distance sets pooled (mm); ``None`` if a mask is empty."""
    sets = directed_surface_distances(pred, ref, spacing_zyx)
    if sets is None:
        return None
    return float(np.percentile(np.hstack(sets), 95))


def _mean_surface_distance(sets: tuple[np.ndarray, np.ndarray], pooled: bool) -> float:
    if pooled:
        return float(np.concatenate(sets).mean())
    return float((sets[0].mean() + sets[1].mean()) / 2.0)


def msd(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
        pooled: bool = True) -> float | None:
    """Mean surface distance = MedPy 0.5's ``assd`` (mean of both directed sets pooled), mm.

    ``pooled=False``: the mean of the two directed means (MedPy <= 0.4). ``None`` if a mask is empty.
    """
    sets = directed_surface_distances(pred, ref, spacing_zyx)
    return None if sets is None else _mean_surface_distance(sets, pooled)


def hd95_and_msd(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
                 pooled: bool = True) -> tuple[float | None, float | None]:
    """Both distances from one pair of distance transforms."""
    sets = directed_surface_distances(pred, ref, spacing_zyx)
    if sets is None:
        return None, None
    return float(np.percentile(np.hstack(sets), 95)), _mean_surface_distance(sets, pooled)


def surface_scores(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
                   pooled: bool = True) -> dict[str, float | None]:
    """``HD95``, ``HD99_9``, ``HD100`` and ``MSD`` from one pair of distance transforms (per-case scoring)."""
    sets = directed_surface_distances(pred, ref, spacing_zyx)
    scores = hausdorff_percentiles(sets)
    scores["MSD"] = None if sets is None else _mean_surface_distance(sets, pooled)
    return scores
