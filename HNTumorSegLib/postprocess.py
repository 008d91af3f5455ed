"""Clean-up of a predicted label map, and seed 002's fusion of two binary probability maps.

* :func:`remove_small_components` - per label, drop 26-connected components whose volume
  (voxel count x voxel volume, from the spacing) is **below** ``min_volume_ml[label]`` mL.
* :func:`keep_largest_component` - keep only the largest 26-connected component of one label
  (a patient has one primary tumour: optional for GTVp). Ties keep the component met first
  in array (z, y, x) order.
* :func:`fuse_binary_probabilities` - seed 002's networks output two independent sigmoid maps
  (tumour foreground, node foreground), each thresholded. Where only one exceeds the threshold
  it gives its label; where **both** do, the larger probability wins and an exact tie goes to
  GTVp (label 1). Seed 002 does not say; nnU-Net's region decoding would let the later region
  overwrite, which always favours one class whatever the network's confidence.
  "Exceeds" is strict (``p > threshold``), as in nnU-Net's region decoding.
* :func:`clean_up` applies a model card's ``"postprocess"`` block.

Example:
    >>> p = np.zeros((2, 4, 6, 6)); p[0, 1:3, 1:4, 1:4] = 0.9       # GTVp map: 18 voxels
    >>> p[1, 1:3, 3:5, 3:5] = 0.8; p[1, 0, 0, 0] = 0.7               # GTVn map: 8 voxels and a stray one
    >>> labels = fuse_binary_probabilities(p[0], p[1], threshold=0.5)
    >>> np.bincount(labels.ravel()).tolist()                          # 2 contested voxels go to GTVp (0.9)
    [119, 18, 7]
    >>> labels = remove_small_components(labels, (1.0, 1.0, 1.0), {1: 0.001, 2: 0.005})
    >>> np.bincount(labels.ravel()).tolist()                          # the stray 1-voxel GTVn is gone
    [120, 18, 6]
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _labels_array(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"labels must be a 3D array [z, y, x], got shape {arr.shape}")
    return arr


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels, clipped to the array.

    An all-zero mask gives empty slices. Why here, on the ground: the clean-up, the boxes of a
    prior and the metrics all label components inside it rather than over a 512 x 512 x 80 grid
    (a lesion is a few thousand voxels of 21 million; issue 27).

    Example:
        >>> m = np.zeros((4, 5, 6), bool); m[1, 2:4, 3] = True
        >>> bounding_box(m), bounding_box(m, margin=1)[0]
        ((slice(1, 2, None), slice(2, 4, None), slice(3, 4, None)), slice(0, 3, None))
    """
    if not mask.any():
        return tuple(slice(0, 0) for _ in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def label_components(arr: np.ndarray, label: int, structure=STRUCTURE_26
                     ) -> tuple[np.ndarray, int, tuple[slice, ...]]:
    """``ndimage.label(arr == label)`` inside the label's bounding box: (components, count, box).

    The numbering is the whole array's (raster order of first voxels is kept by a crop), so
    results equal labelling the whole array; only the box's voxels are visited twice.
    """
    binary = arr == label
    box = bounding_box(binary)
    comps, n = ndimage.label(binary[box], structure=structure)
    return comps, int(n), box


def remove_small_components(labels: np.ndarray, spacing_xyz, min_volume_ml: Mapping[int | str, float]) -> np.ndarray:
    """A copy of ``labels`` without components smaller than ``min_volume_ml[label]`` millilitres.

    Keys may be ints or strings (``{"1": 0.1}`` as read from JSON); labels not named are kept.
    A component exactly at the limit is kept.
    """
    arr = _labels_array(labels)
    out = arr.copy()
    voxel_ml = float(np.prod([float(s) for s in spacing_xyz])) / 1000.0
    for key, limit in (min_volume_ml or {}).items():
        label, limit = int(key), float(limit)
        if limit <= 0:
            continue
        comps, n, box = label_components(arr, label)
        if n == 0:
            continue
        volumes = np.bincount(comps.ravel(), minlength=n + 1) * voxel_ml
        # a little slack so a component of exactly `limit` mL survives float round-off
        small = np.flatnonzero(volumes < limit * (1 - 1e-9))
        small = small[small > 0]
        if small.size:
            out[box][np.isin(comps, small)] = 0
    return out


def keep_largest_component(labels: np.ndarray, label: int = 1) -> np.ndarray:
    """A copy of ``labels`` where ``label`` keeps only its largest 26-connected component."""
    arr = _labels_array(labels)
    comps, n, box = label_components(arr, label)
    if n <= 1:
        return arr.copy()
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    sizes[0] = 0
    largest = int(np.argmax(sizes))  # argmax takes the first maximum: the component met first
    out = arr.copy()
    out[box][(comps > 0) & (comps != largest)] = 0
    return out


def fuse_binary_probabilities(p_tumour: np.ndarray, p_node: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Labels 0/1/2 (uint8) from a GTVp probability map and a GTVn probability map (seed 002).

    Where both exceed ``threshold`` the larger probability wins, a tie goes to GTVp.
    """
    pt, pn = np.asarray(p_tumour), np.asarray(p_node)
    if pt.shape != pn.shape:
        raise ValueError(f"probability maps differ in shape: {pt.shape} vs {pn.shape}")
    t, n = pt > threshold, pn > threshold
    out = np.zeros(pt.shape, dtype=np.uint8)
    out[t] = 1
    out[n & ~t] = 2
    out[t & n & (pn > pt)] = 2
    return out


def clean_up(labels: np.ndarray, spacing_xyz, min_volume_ml: Mapping[int | str, float] | None = None,
             keep_largest_gtvp: bool = False) -> np.ndarray:
    """Apply a model card's ``postprocess`` block: small-component removal, then keep-largest GTVp."""
    out = remove_small_components(labels, spacing_xyz, min_volume_ml or {})
    if keep_largest_gtvp:
        out = keep_largest_component(out, label=1)
    return out
