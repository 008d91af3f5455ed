"""Planar contours of a 2D mask for RTSTRUCT: one outline per island, holes nested or keyholed.

Tracing: each island (4-connected component, so two voxels touching only at a corner are two
islands, as marching squares sees them) is traced with marching squares
(``skimage.measure.find_contours`` at level 0.5 on the zero-padded island), so the line runs
half-way between inside and outside voxel centres and a one-voxel lesion becomes a small
diamond around its centre (kept, never dropped). The longest-area line is the island's outer
boundary, the others are its holes.

Holes (``holes=``, a :class:`~HNTumorSegLib.vocab.HoleStyle`; its words are defined there only):

* ``"nested"`` (default): the outer boundary and each hole as separate contours; a reader
  fills them with the even-odd rule (a point inside an odd number of contours is inside).
  This is what SlicerRT and most planning systems do; DICOM itself leaves the reading of
  several contours on one plane to the receiver (PS3.3 C.8.8.6 shows keyholes only as an
  example), and even-odd is the common reading.
* ``"keyhole"``: each hole is joined to the outer boundary by a zero-width cut (there and
  back along the same segment, between the nearest vertices), so every island is ONE contour
  that any reader fills right, including those that fill every contour (plastimatch) or that
  read only keyhole contours (some planning systems).

Outer boundaries run counter-clockwise and holes clockwise in (column, row) coordinates, so a
non-zero winding reader fills keyhole contours right too.

Example:
    >>> ring = np.pad(np.ones((5, 5)), 2); ring[4, 4] = 0
    >>> [len(c) for c in island_contours(ring, holes="keyhole")]   # one contour: the ring
    [26]
"""

from __future__ import annotations

import numpy as np

from ..vocab import HoleStyle


def _area(c: np.ndarray) -> float:
    """Signed area in (row, col) coordinates (shoelace on x = col, y = row)."""
    x, y = c[:, 1], c[:, 0]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _trace(island: np.ndarray) -> list[np.ndarray]:
    from skimage.measure import find_contours

    out = []
    for c in find_contours(np.pad(island.astype(float), 1), 0.5):
        c = c - 1.0
        if np.allclose(c[0], c[-1]):
            c = c[:-1]  # DICOM closes the polygon itself
        if len(c) >= 3:
            out.append(c)
    return out


def _oriented(c: np.ndarray, positive: bool) -> np.ndarray:
    return c if (_area(c) > 0) == positive else c[::-1].copy()


def _keyhole(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """Join each hole to the polygon by a there-and-back cut between the nearest vertices."""
    poly = outer
    remaining = list(holes)
    while remaining:
        best: tuple[float, int, int, int] | None = None
        for h_index, hole in enumerate(remaining):
            d = np.linalg.norm(poly[:, None, :] - hole[None, :, :], axis=2)
            near_i, near_j = np.unravel_index(int(np.argmin(d)), d.shape)
            if best is None or d[near_i, near_j] < best[0]:
                best = (float(d[near_i, near_j]), h_index, int(near_i), int(near_j))
        assert best is not None   # remaining is not empty
        _, h_index, i, j = best
        hole = remaining.pop(h_index)
        turned = np.concatenate([hole[j:], hole[: j + 1]])  # around the hole, back to its start vertex
        poly = np.concatenate([poly[: i + 1], turned, poly[i:]])
    return poly


def island_contours(mask2d: np.ndarray, holes: str = HoleStyle.NESTED) -> list[np.ndarray]:
    """Closed contours (N, 2) in (row, col) voxel coordinates: per island, as ``holes`` says
    (an unknown style is an :class:`~HNTumorSegLib.errors.InputError` with a "did you mean")."""
    from scipy import ndimage

    style = HoleStyle.parse(holes, "hole style")
    islands, n = ndimage.label(np.asarray(mask2d, dtype=bool))  # 4-connected in 2D
    out: list[np.ndarray] = []
    for index, box in enumerate(ndimage.find_objects(islands), start=1):
        sub = islands[box] == index
        lines = _trace(sub)
        if not lines:
            continue
        offset = np.array([box[0].start, box[1].start], dtype=float)
        lines = [c + offset for c in lines]
        outer_index = int(np.argmax([abs(_area(c)) for c in lines]))
        outer = _oriented(lines[outer_index], True)
        inner = [_oriented(c, False) for i, c in enumerate(lines) if i != outer_index]
        if style is HoleStyle.KEYHOLE and inner:
            out.append(_keyhole(outer, inner))
        else:
            out.append(outer)
            out.extend(inner)
    return out
