"""Per-lesion boxes: from a label map, to and from ``boxes.json`` (RAS mm), to voxel index ranges.

A :class:`LesionBox` is axis-aligned in **RAS** millimetres, like a Slicer ROI markup. Boxes
made from voxels cover the voxels' *edges* (index - 0.5 .. index + 0.5), so a one-voxel lesion
gives a box one voxel wide. Converting a box back to voxels (:func:`box_to_index_slices`)
transforms its 8 corners to continuous indices, takes their min and max and keeps the voxels
whose *centres* lie inside, clamped to the image. For an image whose axes are aligned with RAS
(any flips and spacings) voxels -> RAS -> voxels gives back exactly the same index box; for an
oblique image the RAS box is the axis-aligned hull of the rotated voxel box, so the way back
gives a superset of the original voxels (never loses one).

Choices (seed 003 is vague or its code differs from its paper):

* lesions are **face-connected (6-connected)** components of each label, as seed 003's
  released code (``sitk.ConnectedComponent``, default ``fullyConnected=False``): two voxels
  touching only at an edge or a corner are two lesions and get two boxes. Boxes come out ordered by label (GTVp first), then by size (voxel count,
  largest first), ties by position (first voxel in z, y, x order). Names count from 1 within
  a label: ``GTVp-1``, ``GTVn-1``, ``GTVn-2``...
* the training-time random margin of seed 003 is ``random_margin_vox=``: a
  :class:`~HNTumorSegLib.prompts.margins.MarginDraw`, a preset name or a symmetric ``(lo, hi)``.
  ``SEED003_RELEASED`` (the released code's ``randint(4, 8)`` with an exclusive slice end: 4-7
  voxels below, 3-6 above) is the training default; ``SEED003_PAPER`` = ``(2, 6)`` is the
  paper's. Per box one draw of shape (2, 3): row 0 the low sides i, j, k, row 1 the high sides
  (:mod:`HNTumorSegLib.prompts.margins`).
* ``margin_vox`` (fixed, voxels) and ``margin_mm`` (fixed, RAS mm on every side) add up.
  Boxes are not clamped to the image here; :func:`box_to_index_slices` clamps.

Example:
    >>> mask = Image(np.zeros((10, 20, 20), np.uint8)); mask.array[3:6, 5:9, 5:9] = 1   # one GTVp, 1 mm voxels
    >>> boxes = boxes_from_mask(mask, margin_vox=2)
    >>> write_boxes(boxes, "case1/boxes.json")
    PosixPath('case1/boxes.json')
    >>> zs, ys, xs = box_to_index_slices(read_boxes("case1/boxes.json")[0], mask)
    >>> zs, ys, xs                                       # the lesion and 2 voxels on every side
    (slice(1, 8, None), slice(3, 11, None), slice(3, 11, None))
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .. import LABEL_NAMES
from ..errors import InputError
from ..fileio import read_json, write_json_atomic
from ..protect import check_path_kind
from ..image import Image, box_corners, index_box_to_ras, ras_to_lps  # noqa: F401 (index_box_to_ras re-exported)
from ..postprocess import STRUCTURE_26, label_components
from .extents import BOX_CROP_SURROUND_MM
from .margins import MarginDraw

NAME_LABELS = {v.lower(): k for k, v in LABEL_NAMES.items()}
STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)  # face neighbours: seed 003's lesions
# Slack when deciding whether a voxel centre lies on a box face: absorbs float round-off of the
# corner transforms (1e-4 voxel is far below any clinical meaning).
_EPS = 1e-4


@dataclass(frozen=True)
class LesionBox:
    """An axis-aligned box in RAS millimetres around one lesion (Slicer ROI convention)."""

    label: int
    name: str
    min_ras: tuple[float, float, float]
    max_ras: tuple[float, float, float]
    #: the lesion's first voxel (z, y, x) in raster order when the box was made from a mask
    #: (:func:`boxes_from_mask`): seed 003's released drawing order (:func:`released_draw_order`).
    #: Not part of the box's identity (not compared, not written to boxes.json).
    raster_first_zyx: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_ras", tuple(float(v) for v in self.min_ras))
        object.__setattr__(self, "max_ras", tuple(float(v) for v in self.max_ras))

    @property
    def size_mm(self) -> tuple[float, float, float]:
        return tuple(b - a for a, b in zip(self.min_ras, self.max_ras))

    @property
    def centre_ras(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2 for a, b in zip(self.min_ras, self.max_ras))

    def expanded(self, margin_mm: float | Sequence[float]) -> "LesionBox":
        """The box grown by ``margin_mm`` on every side (a scalar or one value per R, A, S axis)."""
        m = np.broadcast_to(np.asarray(margin_mm, dtype=float), (3,))
        return LesionBox(self.label, self.name, tuple(np.asarray(self.min_ras) - m),
                         tuple(np.asarray(self.max_ras) + m), self.raster_first_zyx)

    def to_dict(self) -> dict:
        return {"label": int(self.label), "name": self.name,
                "min_ras": [round(v, 6) for v in self.min_ras],
                "max_ras": [round(v, 6) for v in self.max_ras]}


# ---- voxels <-> RAS -------------------------------------------------------------------------

# index_box_to_ras (voxels -> RAS) lives in image.py, beside lps_to_ras: export needs it too.


def box_to_index_range(box: LesionBox, image: Image, what: str | None = None,
                       path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive voxel index range ``(lo_ijk, hi_ijk)`` (i, j, k order) of the voxels a box covers.

    All 8 RAS corners go to continuous indices; the voxels whose centres lie inside the
    min..max of those indices are kept, clamped to the image. Along an axis where the box is
    thinner than a voxel and holds no centre, the voxel holding the box's middle is kept (a thin
    ROI drawn inside one thick slice still selects that slice). Raises :class:`InputError` for a
    box of zero size or one wholly outside the image.
    """
    label = what or f"box {box.name!r}"
    lo_ras, hi_ras = np.asarray(box.min_ras), np.asarray(box.max_ras)
    if not (np.all(np.isfinite(lo_ras)) and np.all(np.isfinite(hi_ras))):
        raise InputError(f"{label} has non-finite corners", path, "give finite RAS coordinates in mm")
    if np.any(hi_ras - lo_ras <= 0):
        raise InputError(f"{label} is empty (zero or negative size {np.round(hi_ras - lo_ras, 3).tolist()} mm)",
                         path, "give min_ras strictly below max_ras on every axis")
    cont = image.physical_to_index(ras_to_lps(box_corners(lo_ras, hi_ras)))
    cmin, cmax = cont.min(axis=0), cont.max(axis=0)
    n = np.asarray(image.shape_xyz)
    if np.any(cmax < -0.5) or np.any(cmin > n - 0.5):
        raise InputError(f"{label} lies wholly outside the image", path,
                         "check the box coordinates are RAS millimetres in the same space as the image")
    lo = np.ceil(cmin - _EPS).astype(int)
    hi = np.floor(cmax + _EPS).astype(int)
    thin = lo > hi  # no voxel centre inside along that axis: keep the voxel holding the middle
    mid = np.floor((cmin + cmax) / 2 + 0.5).astype(int)
    lo = np.where(thin, mid, lo)
    hi = np.where(thin, mid, hi)
    lo = np.clip(lo, 0, n - 1)
    hi = np.clip(hi, 0, n - 1)
    return lo, hi


def box_to_index_slices(box: LesionBox, image: Image,
                        path: str | os.PathLike | None = None) -> tuple[slice, slice, slice]:
    """Array slices ``(z, y, x)`` of the voxels ``box`` covers (see :func:`box_to_index_range`).

    ``path`` (the boxes file) only goes into error messages.
    """
    lo, hi = box_to_index_range(box, image, path=path)
    return (slice(int(lo[2]), int(hi[2]) + 1), slice(int(lo[1]), int(hi[1]) + 1),
            slice(int(lo[0]), int(hi[0]) + 1))


# ---- boxes from a mask ----------------------------------------------------------------------

def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    # None -> seed 0: the same call gives the same boxes; pass a Generator to vary them.
    return np.random.default_rng(0 if rng is None else rng)


def lesion_components(mask: np.ndarray, label: int, connectivity: int = 6
                      ) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Connected components of ``mask == label`` as ``(lo_zyx, hi_zyx, n_voxels)``, ordered.

    ``connectivity`` 6 (faces, seed 003's released code, the default) or 26. Order: size
    descending, ties by the first voxel's (z, y, x) position.
    """
    return [(lo, hi, size) for lo, hi, size, _ in _components_with_first(mask, label, connectivity)]


def _components_with_first(mask: np.ndarray, label: int, connectivity: int = 6
                           ) -> list[tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]]:
    """:func:`lesion_components` plus each component's first voxel (z, y, x) in raster order."""
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")
    comps, n, box = label_components(np.asarray(mask), label, STRUCTURE_6 if connectivity == 6 else STRUCTURE_26)
    if n == 0:
        return []
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    offset = np.array([s.start for s in box])
    out = []
    for idx, sl in enumerate(ndimage.find_objects(comps), start=1):
        sub = comps[sl] == idx
        lo = np.array([s.start for s in sl]) + offset
        first = np.argwhere(sub)[0] + lo
        hi = np.array([s.stop - 1 for s in sl]) + offset
        out.append((lo, hi, int(sizes[idx - 1]), tuple(first)))
    out.sort(key=lambda t: (-t[2], t[3]))
    return out


def boxes_from_mask(mask: Image, margin_mm: float = 0.0, margin_vox: int = 0,
                    random_margin_vox: "MarginDraw | tuple[int, int] | str | None" = None,
                    rng: np.random.Generator | int | None = None,
                    labels: Iterable[int] = (1, 2)) -> list[LesionBox]:
    """One box per face-connected lesion of each label in ``mask`` (labels 1 GTVp, 2 GTVn).

    ``margin_vox`` adds whole voxels on every side; ``random_margin_vox`` adds, per side and
    axis, a random number of voxels (seed 003's training perturbation: ``SEED003_RELEASED``,
    ``"paper"`` or a symmetric inclusive ``(lo, hi)``; :mod:`.margins`) using ``rng`` (a
    Generator or a seed; ``None`` means seed 0);
    ``margin_mm`` then grows the RAS box by that many mm on every side.

    Example:
        >>> prior = Image(np.zeros((10, 20, 20), np.uint8)); prior.array[3:6, 5:9, 5:9] = 1
        >>> prior.array[3:5, 12:15, 12:15] = 2; prior.array[6:8, 2:4, 14:17] = 2      # two GTVn
        >>> boxes = boxes_from_mask(prior, random_margin_vox=(2, 6), rng=np.random.default_rng(7))
        >>> [b.name for b in boxes]
        ['GTVp-1', 'GTVn-1', 'GTVn-2']
    """
    arr = np.asarray(mask.array)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.mod(arr, 1) == 0):
        raise InputError("mask is not a label map (non-integer values)", None,
                         "give a label map with values 0, 1 (GTVp), 2 (GTVn)")
    generator = _as_rng(rng) if random_margin_vox is not None else None
    draw = MarginDraw.coerce(random_margin_vox) if random_margin_vox is not None else None
    boxes: list[LesionBox] = []
    for label in labels:
        prefix = LABEL_NAMES.get(int(label), f"label{int(label)}")
        for number, (lo_zyx, hi_zyx, _, first) in enumerate(_components_with_first(arr, int(label)), start=1):
            lo = lo_zyx[::-1].astype(int) - int(margin_vox)  # to i, j, k
            hi = hi_zyx[::-1].astype(int) + int(margin_vox)
            if draw is not None:
                extra = draw.draw(generator)
                lo = lo - extra[0]
                hi = hi + extra[1]
            mn, mx = index_box_to_ras(mask, lo, hi)
            box = LesionBox(int(label), f"{prefix}-{number}", tuple(mn), tuple(mx),
                            tuple(int(v) for v in first))
            boxes.append(box.expanded(margin_mm) if margin_mm else box)
    return boxes


def released_draw_order(boxes: Iterable[LesionBox]) -> list[LesionBox]:
    """The boxes in the order seed 003's released code draws them (its later boxes overwrite).

    The released ``calculate_gradient_map_within_bbox`` loops over label 1, then label 2, and
    within a label over ``sitk.ConnectedComponent``'s components, numbered in raster order of
    their first voxel. Boxes from :func:`boxes_from_mask` carry that voxel
    (``raster_first_zyx``) and are sorted by (label, first voxel); when any box lacks it (boxes
    drawn by a user, read from ``boxes.json``) the given order is kept within each label.

    Example:
        >>> prior = Image(np.zeros((10, 20, 20), np.uint8)); prior.array[2:4, 2:4, 2:4] = 2
        >>> prior.array[5:9, 10:18, 10:18] = 2; prior.array[1, 15, 15] = 1
        >>> [b.name for b in boxes_from_mask(prior)]            # ours: by size within a label
        ['GTVp-1', 'GTVn-1', 'GTVn-2']
        >>> [b.name for b in released_draw_order(boxes_from_mask(prior))]   # released: raster order
        ['GTVp-1', 'GTVn-2', 'GTVn-1']
    """
    boxes = list(boxes)
    if all(b.raster_first_zyx is not None for b in boxes):
        return sorted(boxes, key=lambda b: (int(b.label), tuple(b.raster_first_zyx or ())))
    return sorted(boxes, key=lambda b: int(b.label))


# ---- masks and regions ----------------------------------------------------------------------

def boxes_to_mask(boxes: Iterable[LesionBox], image: Image, margin_mm: float = 0.0,
                  path: str | os.PathLike | None = None) -> np.ndarray:
    """Boolean array ``[z, y, x]`` on ``image``'s grid: True inside any box (grown by ``margin_mm``)."""
    out = np.zeros(image.array.shape, dtype=bool)
    for box in boxes:
        b = box.expanded(margin_mm) if margin_mm else box
        out[box_to_index_slices(b, image, path=path)] = True
    return out


def union_region(boxes: Sequence[LesionBox], image: Image,
                 surround_mm: float = BOX_CROP_SURROUND_MM) -> tuple[slice, slice, slice]:
    """Slices ``(z, y, x)`` of the smallest index block holding every box grown by ``surround_mm``.

    This is the region a box-made crop covers: the union of the boxes plus surroundings so the
    network sees tissue around each lesion (:mod:`.extents`). Raises :class:`InputError` when there are no boxes.
    """
    if not boxes:
        raise InputError("no lesion boxes given", None, "draw at least one box or run without boxes")
    los, his = zip(*(box_to_index_range(b.expanded(surround_mm), image) for b in boxes))
    lo, hi = np.min(los, axis=0), np.max(his, axis=0)
    return (slice(int(lo[2]), int(hi[2]) + 1), slice(int(lo[1]), int(hi[1]) + 1),
            slice(int(lo[0]), int(hi[0]) + 1))


# ---- boxes.json -----------------------------------------------------------------------------

def _parse_label(value, where: str, path) -> int:
    if isinstance(value, str) and value.strip().lower() in NAME_LABELS:
        return NAME_LABELS[value.strip().lower()]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in LABEL_NAMES:
        raise InputError(f"{where} has unknown label {value!r}", path, "use label 1 (GTVp) or 2 (GTVn)")
    return int(value)


def _parse_point(value, key: str, where: str, path) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise InputError(f"{where}: {key} must be 3 finite numbers [R, A, S] in mm, got {value!r}", path,
                         "write e.g. \"min_ras\": [-12.5, 30.0, 4.0]")
    return tuple(float(v) for v in value)


def parse_boxes(data, path: str | os.PathLike | None = None) -> list[LesionBox]:
    """Validate decoded ``boxes.json`` content (a list of box objects) into :class:`LesionBox` es."""
    if isinstance(data, dict) and "boxes" in data:  # tolerate {"boxes": [...]}
        data = data["boxes"]
    if not isinstance(data, list):
        raise InputError("boxes file must hold a JSON list of boxes", path,
                         'write [{"label": 1, "name": "GTVp-1", "min_ras": [..], "max_ras": [..]}, ...]')
    boxes, counters = [], {}
    for n, item in enumerate(data, start=1):
        where = f"box {n}"
        if not isinstance(item, dict):
            raise InputError(f"{where} is not an object", path, "each box is {\"label\", \"name\", \"min_ras\", \"max_ras\"}")
        missing = [k for k in ("label", "min_ras", "max_ras") if k not in item]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)}", path,
                             "each box needs label, min_ras and max_ras (name is optional)")
        label = _parse_label(item["label"], where, path)
        counters[label] = counters.get(label, 0) + 1
        name = item.get("name")
        if name is None:  # a missing name is cosmetic: number it like boxes_from_mask would
            name = f"{LABEL_NAMES[label]}-{counters[label]}"
        elif not isinstance(name, str) or not name.strip():
            raise InputError(f"{where} has a name that is not a non-empty string: {name!r}", path,
                             "give a name such as \"GTVn-2\"")
        where = f"box {n} ({name})"
        lo = _parse_point(item["min_ras"], "min_ras", where, path)
        hi = _parse_point(item["max_ras"], "max_ras", where, path)
        if any(a > b for a, b in zip(lo, hi)):
            raise InputError(f"{where} has min_ras {list(lo)} above max_ras {list(hi)}", path,
                             "swap the corners so that min_ras <= max_ras on every axis")
        boxes.append(LesionBox(label, name.strip(), lo, hi))
    return boxes


def read_boxes(path: str | os.PathLike) -> list[LesionBox]:
    """Read and validate ``boxes.json``; every problem raises :class:`InputError` naming the file."""
    p = Path(path)
    check_path_kind(p, "boxes file", "file", "check the path to boxes.json")   # a FIFO is named so (issue 22)
    # depth-limited and strict (issues 11, 22): "[[[[...]]]]" thousands deep is bad input, not a bug
    data = read_json(p, "boxes file", "fix the JSON syntax or re-export the boxes (docs/design.md 'Boxes')")
    try:
        return parse_boxes(data, p)
    except RecursionError:
        raise InputError("boxes file is nested too deeply to be boxes.json", p,
                         "give a list of boxes (docs/design.md 'Boxes')") from None


def write_boxes(boxes: Iterable[LesionBox], path: str | os.PathLike) -> Path:
    """Write ``boxes.json`` atomically (temporary file then rename)."""
    return write_json_atomic(path, [b.to_dict() for b in boxes])
