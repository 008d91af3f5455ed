"""A simple head, neck and upper-body model shared by the MRI and PET/CT phantoms.

The body lives in a *canonical frame* in millimetres: ``X`` towards the patient's left,
``Y`` towards posterior (both as in LPS), and ``S`` = distance *below* the vertex (top of
the head), so ``S = 0`` is the top of the skull, the oropharynx is near ``S = 175`` and the
thorax starts near ``S = 290``. A phantom maps its voxel grid into this frame (MRI with a
zoom, so that a small field of view still shows a whole neck cross-section).

:func:`tissue_map` labels each point with a tissue class (:data:`TISSUES`); each modality
turns classes into intensities (T2 of a fat-suppressed sequence, CT HU, PET SUV).
:func:`place_lesions` draws a GTVp in the oropharynx near the midline and GTVn nodes at
levels II-III lateral to it.

Example:
    >>> pts = np.array([[0.0, -17.0, 175.0]], np.float32)  # the oropharyngeal airway
    >>> TISSUE_NAMES[int(tissue_map(pts, texture=FourierField(np.random.default_rng(0)))[0])]
    'air'
"""

from __future__ import annotations

import numpy as np

from . import exact
from .shapes import Blob, FourierField

TISSUE_NAMES = ["outside", "fat", "muscle", "air", "bone", "csf", "gland", "brain", "lung", "heart", "liver"]
TISSUES = {name: i for i, name in enumerate(TISSUE_NAMES)}

OROPHARYNX_S = 175.0  # canonical depth of the oropharynx below the vertex (mm)


def _lerp(s: np.ndarray, s0: float, s1: float, v0: float, v1: float) -> np.ndarray:
    t = np.clip((s - s0) / (s1 - s0), 0.0, 1.0)
    return v0 + t * (v1 - v0)


def body_outline(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semi-axes (x, y) and centre y of the body's elliptical cross-section at depth ``S``."""
    # skull cap: a half ellipsoid down to S = 95, then the face, then the narrower neck,
    # then shoulders/thorax (wide, clipped by the field of view in practice)
    cap = np.sqrt(np.clip(1.0 - ((95.0 - S) / 100.0) ** 2, 0.0, 1.0))
    cap = np.where(S < 95.0, cap, 1.0)
    ax = 72.0 * cap
    ay = 90.0 * cap
    ax = np.where(S >= 140, _lerp(S, 140, 200, 72.0, 58.0), ax)
    ay = np.where(S >= 140, _lerp(S, 140, 200, 90.0, 62.0), ay)
    ax = np.where(S >= 280, _lerp(S, 280, 330, 58.0, 118.0), ax)
    ay = np.where(S >= 280, _lerp(S, 280, 330, 62.0, 95.0), ay)
    cy = _lerp(S, 140.0, 200.0, 0.0, 12.0)
    ax = np.where(S < 0, 0.0, ax)
    ay = np.where(S < 0, 0.0, ay)
    return ax, ay, cy


class _Ellipsoids:
    """Fast inside-tests of axis-aligned ellipsoids on many points.

    Only points within the ellipsoid's S-range are tested (one cheap comparison first), so
    the thorax organs cost nearly nothing on a neck-only grid.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, S: np.ndarray):
        self.X, self.Y, self.S = X, Y, S

    def __call__(self, centre, radii) -> np.ndarray:
        (cx, cy, cs), (rx, ry, rs) = centre, radii
        out = np.zeros(self.S.shape, bool)
        near = np.abs(self.S - np.float32(cs)) <= rs
        if near.any():
            x = (self.X[near] - np.float32(cx)) / np.float32(rx)
            y = (self.Y[near] - np.float32(cy)) / np.float32(ry)
            z = (self.S[near] - np.float32(cs)) / np.float32(rs)
            out[near] = x * x + y * y + z * z <= 1.0
        return out


def tissue_map(points: np.ndarray, texture: FourierField) -> np.ndarray:
    """Tissue class (uint8, see :data:`TISSUES`) at canonical points (..., 3) = (X, Y, S)."""
    X, Y, S = (np.ascontiguousarray(points[..., i], dtype=np.float32) for i in range(3))
    ellipsoid = _Ellipsoids(X, Y, S)
    ax, ay, cy = body_outline(S)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.sqrt((X / ax) ** 2 + ((Y - cy) / ay) ** 2)
    rho = np.where(ax > 0, rho, np.inf)
    out = np.zeros(X.shape, np.uint8)
    body = rho <= 1.0
    out[body] = TISSUES["muscle"]
    # subcutaneous fat ring, and intermuscular fat where a smooth texture field is high
    out[body & (rho > 0.9)] = TISSUES["fat"]
    # (the texture's waves are a few cm long: thin fat planes, not half the neck)
    tex = texture(points / np.float32(9.0))
    out[body & (rho <= 0.9) & (tex > 1.25) & (S > 130)] = TISSUES["fat"]
    # parapharyngeal fat pads beside the oropharynx (a tumour infiltrates them)
    for side in (-1.0, 1.0):
        out[ellipsoid((side * 22.0, -8.0, 160.0), (6.0, 9.0, 28.0)) & body] = TISSUES["fat"]

    # brain inside a skull shell
    brain = ellipsoid((0.0, 2.0, 75.0), (62.0, 78.0, 62.0))
    skull = ellipsoid((0.0, 2.0, 75.0), (69.0, 85.0, 70.0)) & ~brain
    out[skull & body] = TISSUES["bone"]
    out[brain] = TISSUES["brain"]

    # glands: parotids (upper) and submandibular (lower), both sides
    for side in (-1.0, 1.0):
        out[ellipsoid((side * 50.0, 8.0, 150.0), (11.0, 17.0, 24.0)) & body] = TISSUES["gland"]
        out[ellipsoid((side * 32.0, -28.0, 200.0), (10.0, 9.0, 9.0)) & body] = TISSUES["gland"]

    # mandible: a U-shaped bony arc in front of the oropharynx
    arc = np.sqrt(X ** 2 + ((Y + 5.0) / 1.2) ** 2)
    out[(arc > 50.0) & (arc < 57.0) & (Y < 15.0) & (S > 150) & (S < 195) & body] = TISSUES["bone"]

    # spine: vertebral bodies, with the spinal canal (cord + CSF) behind them
    spine_y = np.where(S < 290, 28.0, _lerp(S, 290, 340, 28.0, 60.0))
    vert = ((X / 14.0) ** 2 + ((Y - spine_y) / 12.0) ** 2 <= 1.0) & (S > 125)
    canal = ((X / 7.0) ** 2 + ((Y - spine_y - 19.0) / 6.0) ** 2 <= 1.0) & (S > 120)
    out[vert & body] = TISSUES["bone"]
    out[canal & body] = TISSUES["csf"]

    # airway: naso/oropharynx, larynx, trachea (air, dark on every modality)
    air_y = _lerp(S, 130, 300, -12.0, -30.0)
    air_rx = np.where(S < 200, 11.0, 8.0)
    air_ry = np.where(S < 200, 8.0, 8.0)
    airway = ((X / air_rx) ** 2 + ((Y - air_y) / air_ry) ** 2 <= 1.0) & (S > 125) & (S < 340)
    out[airway & body] = TISSUES["air"]

    # thorax: lungs, heart (to the patient's left = +X), liver at the bottom
    for side in (-1.0, 1.0):
        out[ellipsoid((side * 62.0, 15.0, 420.0), (45.0, 60.0, 110.0)) & body] = TISSUES["lung"]
    out[ellipsoid((22.0, -20.0, 410.0), (42.0, 38.0, 40.0)) & body] = TISSUES["heart"]
    out[ellipsoid((-35.0, 0.0, 500.0), (70.0, 70.0, 45.0)) & body] = TISSUES["liver"]
    out[vert & body & (S > 290)] = TISSUES["bone"]
    return out


def place_lesions(rng: np.random.Generator, n_nodes: int, roughness: float = 0.18,
                  s_range: tuple[float, float] | None = None) -> list[Blob]:
    """One GTVp (label 1) near the midline of the oropharynx and ``n_nodes`` GTVn (label 2).

    The primary sits at the lateral wall/base of tongue (|X| 4..14 mm, at the airway,
    ``S`` 165..190), radii 9..16 mm; nodes at levels II-III (|X| 32..44 mm, ``S`` 175..235),
    radii 5..9 mm, mostly on the primary's side, never touching the primary or each other.
    Up to 5 nodes fit in that region; asking for more raises ``ValueError``.
    ``s_range`` (lo, hi) keeps the lesion centres inside a short field of view.
    """
    lo, hi = s_range if s_range is not None else (-np.inf, np.inf)

    def depth(a: float, b: float) -> float:
        """Uniform in a..b within lo..hi; the nearest allowed depth when they do not meet."""
        a2, b2 = max(a, lo), min(b, hi)
        if a2 < b2:
            return float(rng.uniform(a2, b2))
        return float(np.clip((a + b) / 2, lo, hi)) if lo <= hi else (lo + hi) / 2

    if not 0 <= int(n_nodes) <= 5:
        raise ValueError(f"n_nodes must be 0..5, got {n_nodes}")
    side = rng.choice([-1.0, 1.0])
    p_centre = (side * rng.uniform(4, 14), rng.uniform(-14, -4), depth(OROPHARYNX_S - 10, OROPHARYNX_S + 15))
    p_radii = (rng.uniform(9, 15), rng.uniform(9, 14), rng.uniform(11, 16))
    blobs = [Blob(p_centre, p_radii, FourierField(rng), roughness, label=1)]
    tries = 0
    while len(blobs) < 1 + n_nodes and tries < 5000:
        tries += 1
        n_side = side if rng.uniform() < 0.75 else -side
        c = (n_side * rng.uniform(32, 44), rng.uniform(-6, 12), depth(175, 235))
        r = (rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(6, 10))
        # keep nodes apart from each other and from the primary: separate lesions
        if all(exact.norm3(np.subtract(c, b.centre)) > 1.3 * (max(r) + max(b.radii)) for b in blobs):
            blobs.append(Blob(c, r, FourierField(rng), roughness * 0.7, label=2))
    if len(blobs) < 1 + n_nodes:
        raise ValueError(f"could not place {n_nodes} separate nodes; ask for fewer")
    return blobs


def lesion_levels(points: np.ndarray, blobs: list[Blob]) -> list[np.ndarray]:
    """Level field of each blob at ``points`` (inside < 1); far-away points are skipped."""
    out = []
    for b in blobs:
        lo, hi = b.bounds()
        near = np.all((points >= lo) & (points <= hi), axis=-1)
        lev = np.full(points.shape[:-1], np.float32(9.0))
        if near.any():
            lev[near] = b.level(points[near])
        out.append(lev)
    return out


def labels_from_levels(levels: list[np.ndarray], blobs: list[Blob]) -> np.ndarray:
    """uint8 label map 0/1/2; GTVp wins where a node and the primary would overlap."""
    lab = np.zeros(levels[0].shape if levels else (), np.uint8)
    for lev, b in sorted(zip(levels, blobs), key=lambda t: -t[1].label):
        lab[lev < 1.0] = b.label
    return lab
