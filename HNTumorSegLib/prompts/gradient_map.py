"""Seed 003's gradient-map channel: Gaussian gradient magnitude of the T2 image inside lesion boxes.

For every box, on the voxels it covers (:func:`~.boxes.box_to_index_slices`):

1. the image is min-max normalised over its **full** intensity range (paper: "normalizing the
   T2w MRI based on its full intensity range");
2. the Gaussian gradient magnitude with ``sigma = 1`` **voxel** is computed on the box's crop
   (``scipy.ndimage.gaussian_gradient_magnitude``, mode ``reflect`` at the crop's faces);
3. the result is min-max normalised inside the box, multiplied by ``scale = 2`` and clipped
   at 1 (paper: "normalized to the range 0-1, with any values greater than 1 clipped").

Outside every box the map is 0. Where boxes overlap (issue 28 item 6) the default
(:data:`DEFAULT_BOX_OVERLAP` = ``overwrite``) is the released code's: boxes are drawn in its
order (label 1 then 2, each label's lesions in raster order of their first voxel:
:func:`~.boxes.released_draw_order`) and each box's values replace what lies under it;
``overlap="max"`` keeps the larger value whatever the order (HNTumorSeg before issue 28; on case
78 of HNTS-MRG 823 voxels differ by up to 0.74). ``max`` stays as an option because it does
not depend on box order - user-drawn boxes have no released order.

Choices, where the paper is vague (we follow the published code, GradientSegHNTS
``data_conversion.py``, ``compute_gradient_magnitude``, where it is clear):

* sigma is in voxels, because the code calls ``scipy.ndimage.gaussian_gradient_magnitude(...,
  sigma=1)`` on the voxel array (nnU-Net then resamples the channel with the image).
  ``sigma_unit="mm"`` gives an isotropic physical sigma instead.
* the gradient is filtered on the box's crop, not on the whole image (as in the code): what lies
  outside a box never leaks in, and each box's map depends only on its content.
* the code normalises intensities min-max *inside the box* while the paper says the full range;
  after step 3's min-max both give the same map (the gradient magnitude scales linearly with an
  affine intensity change and min-max removes the scale), so step 1 only guards float range.
* the "clip" of the paper is the code's ``x * 2, values > 1 set to 1`` after min-max: half the
  box's strongest edge already saturates; ``scale`` exposes the factor.
* a flat box (no intensity change) gets 1 everywhere, as the code does: it still marks the
  lesion's place.
* overlapping boxes: the code lets the later box overwrite, and so do we by default (above).
* an integer-typed T2 (e.g. int16 NIfTI): the released code fills ``np.zeros_like(image)``, so
  with an integer image every value in [0, 1) is truncated to 0 and the map becomes binary (1
  only where the clip saturated). We **compute in float** whatever the file's type: the paper
  describes and shows a continuous map ("normalized to the range 0-1"), and a map that changes
  with the storage type of the same intensities is an accident, not a method. (A float T2 gives
  the released map exactly; Testing/test_released_gradient.py runs both.)

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask
    >>> case = make_midrt_case(seed=0, shape=(16, 48, 48))
    >>> midrt_t2, registered_prior = case["midRT_T2"], case["preRT_mask_registered"]
    >>> boxes = boxes_from_mask(registered_prior, margin_vox=4)
    >>> grad = gradient_map(midrt_t2, boxes)   # Image, float32 in [0, 1] on midrt_t2's grid
    >>> grad.array.dtype, grad.same_grid(midrt_t2)
    (dtype('float32'), True)
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
from scipy import ndimage

from ..image import Image
from ..vocab import BoxOverlap
from .boxes import LesionBox, box_to_index_slices, released_draw_order

#: what happens where boxes overlap (module docstring): the released code's overwrite
DEFAULT_BOX_OVERLAP = BoxOverlap.OVERWRITE


def _normalised_gradient(crop: np.ndarray, sigma: float | tuple[float, ...], scale: float) -> np.ndarray:
    grad = ndimage.gaussian_gradient_magnitude(crop, sigma=sigma, mode="reflect")
    lo, hi = float(grad.min()), float(grad.max())
    if hi - lo <= 0:
        return np.ones_like(grad)
    return np.minimum((grad - lo) / (hi - lo) * scale, 1.0)


def gradient_map(image: Image, boxes: Iterable[LesionBox], sigma: float = 1.0, scale: float = 2.0,
                 sigma_unit: str = "voxel", path: str | os.PathLike | None = None,
                 overlap: BoxOverlap | str = DEFAULT_BOX_OVERLAP) -> Image:
    """Seed 003's second input channel: an Image on ``image``'s grid, float32 in [0, 1].

    ``boxes`` are RAS boxes (from :func:`~.boxes.boxes_from_mask` or ``boxes.json``); an empty
    list gives an all-zero map. A box wholly outside the image raises ``InputError`` (naming
    ``path``, the boxes file, when given). ``overlap``: ``overwrite`` (released, in its drawing
    order) or ``max``. The map is float32 for any image type (module docstring).
    """
    overlap = BoxOverlap.parse(overlap, "box overlap")
    if sigma_unit not in ("voxel", "mm"):
        raise ValueError(f"sigma_unit must be 'voxel' or 'mm', got {sigma_unit!r}")
    # per-axis sigma in array order (z, y, x)
    sig = sigma if sigma_unit == "voxel" else tuple(sigma / s for s in image.spacing[::-1])
    data = image.array.astype(np.float64, copy=False)
    lo, hi = float(data.min()), float(data.max())
    out = np.zeros(data.shape, dtype=np.float32)
    boxes = list(boxes)
    for box in released_draw_order(boxes) if overlap == BoxOverlap.OVERWRITE else boxes:
        sl = box_to_index_slices(box, image, path=path)
        crop = data[sl]
        crop = (crop - lo) / (hi - lo) if hi > lo else np.zeros_like(crop)
        g = _normalised_gradient(crop, sig, scale).astype(np.float32)
        if overlap == BoxOverlap.OVERWRITE:
            out[sl] = g
        else:
            np.maximum(out[sl], g, out=out[sl])
    return image.with_array(out)
