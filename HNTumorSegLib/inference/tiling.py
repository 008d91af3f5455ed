"""Where the tiles of a sliding window go, and how much each voxel of a tile counts.

All of this follows nnU-Net v2 (``nnunetv2.inference.sliding_window_prediction``) to the
voxel, so a network gives the same aggregated logits here as in nnUNetPredictor:

* :func:`gaussian_importance_map`: a Gaussian with sigma = patch/8 centred on the tile,
  scaled so its maximum is 10, zeros replaced by the smallest non-zero value (no division by 0);
* :func:`compute_steps`: per axis ``ceil((size - patch) / (patch * step)) + 1`` tiles spread
  evenly from 0 to ``size - patch``;
* :func:`pad_to_patch`: images smaller than the patch are zero-padded, centred (odd padding
  goes to the high side), like ``acvl_utils.pad_nd_image``.

Box-restricted mode adds :func:`tiles_touching` (keep the tiles of the full grid that touch a
region: exact equality with a full run inside the region) and :func:`tiles_fitting_boxes`
(new tiles centred on each box: fewer tiles, the CPU fast path).

Example:
    >>> tiles = tile_slices((40, 100, 100), (16, 64, 64), step=0.5)
    >>> g = gaussian_importance_map((16, 64, 64))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil
from typing import Any, Iterable, Sequence, TypeGuard, cast

import numpy as np

Slices3 = tuple[slice, slice, slice]


def slices3(items: Iterable[slice]) -> Slices3:
    """Three slices (z, y, x) as a :data:`Slices3` (a generator's ``tuple()`` has no length a type checker knows)."""
    z, y, x = items
    return z, y, x


@lru_cache(maxsize=8)
def _gaussian_cached(patch: tuple[int, ...], sigma_scale: float, value_scaling_factor: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(patch)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(tmp, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling_factor
    g = g.astype(np.float32)
    # a zero weight would make voxels covered by one tile's border divide by 0
    positive = g > 0
    g[~positive] = g[positive].min()
    g.setflags(write=False)
    return g


def gaussian_importance_map(patch: Sequence[int], sigma_scale: float = 1.0 / 8,
                            value_scaling_factor: float = 10.0) -> np.ndarray:
    """nnU-Net's Gaussian tile weight (float32, read-only, cached), shape ``patch``."""
    return _gaussian_cached(tuple(int(p) for p in patch), float(sigma_scale), float(value_scaling_factor))


def compute_steps(image_size: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """Tile start positions per axis, as nnU-Net's ``compute_steps_for_sliding_window``.

    ``image_size`` must be >= ``patch`` on every axis (pad first); ``0 < step <= 1``.
    """
    if not 0 < step <= 1:
        raise ValueError(f"tile step must be in (0, 1], got {step}")
    if any(i < p for i, p in zip(image_size, patch)):
        raise ValueError(f"image {tuple(image_size)} is smaller than the patch {tuple(patch)}: pad it first")
    steps = []
    for size, p in zip(image_size, patch):
        n = int(ceil((size - p) / (p * step))) + 1
        max_start = size - p
        actual = max_start / (n - 1) if n > 1 else 0.0
        steps.append([int(np.round(actual * i)) for i in range(n)])
    return steps


def tile_slices(image_size: Sequence[int], patch: Sequence[int], step: float = 0.5) -> list[Slices3]:
    """All tiles of the sliding window over ``image_size`` (z, y, x), in nnU-Net's order."""
    sz, sy, sx = compute_steps(image_size, patch, step)
    pz, py, px = (int(p) for p in patch)
    return [(slice(z, z + pz), slice(y, y + py), slice(x, x + px)) for z in sz for y in sy for x in sx]


def padding_for(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    """(low, high) zero padding per axis that brings ``shape`` up to ``patch`` (centred, odd extra high)."""
    pads = []
    for s, p in zip(shape, patch):
        d = max(0, int(p) - int(s))
        pads.append((d // 2, d // 2 + d % 2))
    return pads


def pad_to_patch(x: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, Slices3]:
    """Zero-pad the last 3 axes of ``x`` up to ``patch``; return the padded array and the slices undoing it."""
    pads = padding_for(x.shape[-3:], patch)
    if not any(lo or hi for lo, hi in pads):
        return x, (slice(None), slice(None), slice(None))
    full = [(0, 0)] * (x.ndim - 3) + pads
    padded = np.pad(x, full, mode="constant", constant_values=0)
    revert = slices3(slice(lo, lo + s) for (lo, _), s in zip(pads, x.shape[-3:]))
    return padded, revert


# ---- box-restricted mode --------------------------------------------------------------
def region_to_mask(region, shape: Sequence[int]) -> np.ndarray:
    """A boolean mask of ``shape`` from a mask, one ``(slice, slice, slice)`` or a list of them."""
    if isinstance(region, np.ndarray):
        if region.shape != tuple(shape):
            raise ValueError(f"region mask shape {region.shape} differs from the image shape {tuple(shape)}")
        return region.astype(bool, copy=False)
    boxes = [region] if _is_slices(region) else list(region)
    mask = np.zeros(tuple(shape), dtype=bool)
    for box in boxes:
        if not _is_slices(box):
            raise ValueError("region must be a boolean mask, a (z, y, x) tuple of slices or a list of them")
        mask[tuple(box)] = True
    return mask


def _is_slices(obj: object) -> TypeGuard[Slices3]:
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(s, slice) for s in obj)


def region_boxes(mask: np.ndarray) -> list[Slices3]:
    """Bounding boxes (slices) of the connected components of a region mask (26-connectivity)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    return [slices3(b) for b in ndimage.find_objects(labels) if b is not None]


def dilate_box(box: Slices3, margin: Sequence[int], shape: Sequence[int]) -> Slices3:
    """Grow a box by ``margin`` voxels per axis, clamped to the image."""
    return slices3(slice(max(0, b.start - m), min(s, b.stop + m)) for b, m, s in zip(box, margin, shape))


@dataclass
class Region:
    """Where a box-restricted prediction runs and what it keeps, already grown by the margin.

    ``mask_zyx`` (bool, the image shape) is kept, everything else becomes background;
    ``boxes`` are its components' boxes, where the tiles go. The one type every predictor
    method takes for a restricted run (a raw mask or slices go through :func:`grow_region`).
    """

    mask_zyx: np.ndarray
    boxes: list[Slices3]

    @property
    def is_empty(self) -> bool:
        return not self.boxes


#: What a predictor's ``region=`` accepts: a boolean mask (z, y, x), one box of slices, a list of them, or a Region.
RegionLike = Region | np.ndarray | Slices3 | Sequence[Slices3]


def grow_region(region: RegionLike, shape: Sequence[int], margin_zyx: Sequence[int] = (0, 0, 0)) -> Region:
    """A :class:`Region` from a bool mask, one ``(z, y, x)`` tuple of slices or a list of them.

    Boxes given as slices are used as they are (no connected-component labelling of a
    whole-volume mask: that alone costs seconds on a 512 x 512 x 123 volume); each box is
    grown by ``margin_zyx`` voxels and the mask with it (the caller's mask is never changed).
    A :class:`Region` is returned unchanged.
    """
    if isinstance(region, Region):
        return region
    shape = tuple(int(s) for s in shape)
    mask = region_to_mask(region, shape)
    if isinstance(region, np.ndarray):
        boxes = region_boxes(mask) if mask.any() else []
    else:
        given: list[Slices3] = [region] if _is_slices(region) else list(cast(Sequence[Slices3], region))
        boxes = [slices3(slice(*sl.indices(n)[:2]) for sl, n in zip(b, shape)) for b in given]
        boxes = [b for b in boxes if all(sl.stop > sl.start for sl in b)]
    if any(margin_zyx):
        boxes = [dilate_box(b, margin_zyx, shape) for b in boxes]
        if isinstance(region, np.ndarray):
            mask = mask.copy()      # never grow the caller's own mask
        for b in boxes:
            mask[b] = True
    return Region(mask, boxes)


def tiles_touching(tiles: list[Slices3], mask: np.ndarray) -> list[Slices3]:
    """The tiles that contain at least one voxel of ``mask``.

    Every tile covering a region voxel is kept, so inside the region the aggregate equals the
    full sliding window exactly.
    """
    return [t for t in tiles if mask[t].any()]


def tiles_fitting_boxes(boxes: list[Slices3], image_size: Sequence[int], patch: Sequence[int],
                        step: float = 0.5, divisor: Sequence[int] | None = None) -> list[Slices3]:
    """Tiles laid over each box alone: the box is grown (centred) to at least one tile, then tiled.

    Far fewer tiles than :func:`tiles_touching` when boxes are small (one tile per box that
    fits in a patch), and each box sits at the centre of its tile where the Gaussian weight and
    the context are highest. With ``divisor`` (what the network needs the input shape to be a
    multiple of), a box smaller than the patch gets a *smaller* tile: its size rounded up to the
    divisor (the ``"shrink"`` mode: less compute, less context). Repeated tiles are kept once.
    """
    out: list[Slices3] = []
    seen: set[tuple[int, ...]] = set()
    for box in boxes:
        starts, sizes, tile = [], [], []
        for a, (b, p, s) in enumerate(zip(box, patch, image_size)):
            t = int(p)
            if divisor is not None:
                d = max(1, int(divisor[a]))
                t = min(t, d * int(ceil((b.stop - b.start) / d)))
            length = max(b.stop - b.start, t)
            lo = (b.start + b.stop) // 2 - length // 2
            lo = min(max(0, lo), s - length)
            starts.append(lo)
            sizes.append(length)
            tile.append(t)
        for grid_tile in tile_slices(sizes, tile, step):
            shifted = slices3(slice(sl.start + o, sl.stop + o) for sl, o in zip(grid_tile, starts))
            key = tuple(v for sl in shifted for v in (sl.start, sl.stop))
            if key not in seen:
                seen.add(key)
                out.append(shifted)
    return out


def tiles_bounding_box(tiles: list[Slices3]) -> Slices3:
    """The smallest box holding all ``tiles``."""
    return slices3(slice(min(t[a].start for t in tiles), max(t[a].stop for t in tiles)) for a in range(3))


def reduced_patch(patch: Sequence[int], divisor: Sequence[int] | None = None, factor: float = 0.5) -> tuple[int, ...]:
    """A smaller tile for a retry after running out of GPU memory.

    Each axis is scaled by ``factor`` and rounded to a multiple of the network's divisor
    (the product of its strides along that axis); without one, the largest power of two
    (at most 32) dividing the original size, which the original patch already satisfied.
    Never larger than ``patch`` and never below one divisor.

    Example:
        >>> reduced_patch((48, 192, 192), divisor=(8, 32, 32))
        (24, 96, 96)
    """
    out = []
    for i, p in enumerate(int(v) for v in patch):
        d = int(divisor[i]) if divisor is not None else min(p & -p, 32)
        out.append(min(p, max(d, int(round(p * factor / d)) * d)))
    return tuple(out)


#: Tiles per forward pass on a CPU (issue 27, measured on the 2-core machine with demo-midrt's
#: 16 x 48 x 48 patch, one thread: 400 ms per tile one at a time, 76-88 ms in twos, 72-99 ms in
#: fours, 84-101 ms in eights: torch's CPU convolution is far slower for a batch of one).
CPU_BATCH_TILES = 4
#: ... and at most this many voxels per pass (a 128^3 patch runs one at a time: memory, not speed)
CPU_BATCH_VOXELS = 2**20


def default_batch_size(device_type: str, patch: Sequence[int], low_memory: bool = False) -> int:
    """Tiles per forward pass when :class:`TilingOptions` does not say (the numbers above).

    Example:
        >>> default_batch_size("cpu", (16, 48, 48)), default_batch_size("cpu", (128, 128, 128)), default_batch_size("cuda", (16, 48, 48))
        (4, 1, 1)
    """
    if device_type != "cpu" or low_memory:
        return 1   # GPUs: nnU-Net's one tile per pass (not measured here); low_memory: the smallest footprint
    return max(1, min(CPU_BATCH_TILES, CPU_BATCH_VOXELS // int(np.prod(patch))))


_GAUSS_TORCH: dict[tuple, Any] = {}


def gaussian_tensor(shape: tuple, device, use_gaussian: bool = True):
    """The tile weight as a torch tensor on ``device``, made once per (shape, device) and reused across calls."""
    import torch

    key = (tuple(shape), str(device), bool(use_gaussian))
    g = _GAUSS_TORCH.get(key)
    if g is None:
        g = (torch.from_numpy(np.array(gaussian_importance_map(shape))) if use_gaussian
             else torch.ones(shape, dtype=torch.float32)).to(device)
        if len(_GAUSS_TORCH) > 64:
            _GAUSS_TORCH.clear()
        _GAUSS_TORCH[key] = g
    return g


def tile_batches(tiles: Sequence[Slices3], size: int) -> list[list[int]]:
    """Indices of ``tiles`` in runs of at most ``size`` consecutive tiles of one shape.

    Example:
        >>> t = [(slice(0, 4),) * 3, (slice(2, 6),) * 3, (slice(4, 8),) * 3, (slice(0, 2),) * 3]
        >>> tile_batches(t, 2)
        [[0, 1], [2], [3]]
    """
    out: list[list[int]] = []
    for i, t in enumerate(tiles):
        if out and len(out[-1]) < size and tile_shape(tiles[out[-1][-1]]) == tile_shape(t):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def tile_shape(tile: Slices3) -> tuple[int, ...]:
    """(z, y, x) size of a tile."""
    return tuple(s.stop - s.start for s in tile)
