"""Synthetic pre-RT and mid-RT T2-weighted MRI of the neck, HNTS-MRG 2024 style.

The contrast is that of a *fat-suppressed* T2w sequence (as most HNTS-MRG scans): fat is
dark-grey, muscle grey, tumour and nodes bright, CSF very bright, air and cortical bone
dark. A smooth multiplicative bias field and Rician (magnitude) noise are added. The grid
is anisotropic (default 0.9 x 0.9 x 3.0 mm, 32 x 96 x 96 voxels), far smaller than a real
scan; the anatomy is zoomed so the whole neck cross-section fills the field of view.

Mid-RT: the patient is re-positioned (a small rotation and shift) and the soft tissue
deformed (a smooth random displacement, about 2 mm over 7 cm); each lesion shrinks to 35-70 % of its
volume (per-lesion factor, slightly anisotropic), its centre moves by up to 2 mm, the
treated region that is no longer tumour becomes intermediate-bright oedema/fibrosis, the
global intensity scale changes by 0.8-1.25 and tumour contrast drops. The *registered*
pre-RT image and mask are the pre-RT ones warped into the mid-RT frame with the true
transform plus a smooth registration error of about one voxel, so the registered mask is
the larger pre-treatment extent, slightly misplaced: never identical to the mid-RT mask.

Example:
    >>> case = make_midrt_case(seed=3, n_nodes=1)
    >>> bool((case["midRT_mask"].array > 0).sum() < (case["preRT_mask"].array > 0).sum())   # the tumour shrank
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..image import Image
from . import exact
from .anatomy import OROPHARYNX_S, TISSUE_NAMES, labels_from_levels, lesion_levels, place_lesions, tissue_map
from .shapes import Blob, FourierField, VectorField, bias_field, rician, soft_membership

# fat-suppressed T2w intensities (arbitrary units, muscle ~ 260)
T2_VALUES = {"outside": 0.0, "fat": 90.0, "muscle": 260.0, "air": 5.0, "bone": 110.0, "csf": 950.0,
             "gland": 420.0, "brain": 520.0, "lung": 10.0, "heart": 300.0, "liver": 200.0}
T2_LUT = np.array([T2_VALUES[n] for n in TISSUE_NAMES], np.float32)
T2_TUMOUR = {1: 560.0, 2: 640.0}
T2_RESIDUAL = 380.0  # treated tissue at mid-RT: oedema / fibrosis, between muscle and tumour
NOISE_SIGMA = 14.0


def grid_points(image: Image) -> np.ndarray:
    """Physical LPS point of every voxel centre, shape (z, y, x, 3), float32."""
    z, y, x = image.array.shape
    # origin + i * step_i + j * step_j + k * step_k, by broadcasting (no index arrays)
    steps = (np.asarray(image.direction, np.float64).T * np.asarray(image.spacing, np.float64)[:, None]
             ).astype(np.float32)  # rows: step per i, j, k (direction column times spacing)
    out = np.empty((z, y, x, 3), np.float32)
    out[...] = np.asarray(image.origin, np.float32)
    out += np.arange(x, dtype=np.float32)[None, None, :, None] * steps[0]
    out += np.arange(y, dtype=np.float32)[None, :, None, None] * steps[1]
    out += np.arange(z, dtype=np.float32)[:, None, None, None] * steps[2]
    return out


@dataclass
class _MRIScene:
    """Everything random about one patient: grid, zoom into the canonical frame, lesions."""

    grid: Image
    centre_phys: np.ndarray
    zoom: float
    texture: FourierField
    muscle_texture: FourierField
    blobs: list[Blob]

    def to_canonical(self, phys: np.ndarray) -> np.ndarray:
        """Physical LPS (mm) -> canonical (X, Y, S): zoomed, S grows downward (inferior)."""
        d = (phys - self.centre_phys.astype(np.float32)) / np.float32(self.zoom)
        return np.stack([d[..., 0], d[..., 1] + 7.0, OROPHARYNX_S + 5.0 - d[..., 2]], axis=-1).astype(np.float32)

    def unit(self, phys: np.ndarray) -> np.ndarray:
        """Physical -> roughly -1..1 over the field of view (for the bias field)."""
        half = 0.5 * np.asarray(self.grid.shape_xyz) * np.asarray(self.grid.spacing)
        return ((phys - self.centre_phys) / half).astype(np.float32)


def _scene(seed: int, shape, spacing, n_nodes: int) -> _MRIScene:
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be 3 sizes (z, y, x) of at least 4, got {shape}")
    rng = np.random.default_rng([seed, 11])
    spacing = tuple(float(s) for s in spacing)
    extent = np.array(shape[::-1], float) * np.array(spacing)  # x, y, z mm
    # a scanner-like origin: field of view centred near the isocentre, slightly off
    centre = rng.uniform(-10, 10, size=3)
    origin = centre - 0.5 * (extent - np.array(spacing))
    grid = Image(np.zeros(shape, np.uint8), spacing, tuple(origin))
    # zoom so the neck (about 130 x 150 mm canonical) fills ~95 % of the in-plane field
    zoom = float(min(extent[0] / 135.0, extent[1] / 155.0))
    texture = FourierField(rng, n_modes=10, freq=(0.8, 2.0))
    muscle_texture = FourierField(rng, n_modes=10, freq=(2.0, 5.0))
    # lesion centres inside the slab the field of view covers (short z: fewer slices)
    half_s = 0.5 * extent[2] / zoom
    s_mid = OROPHARYNX_S + 5.0
    blobs = place_lesions(np.random.default_rng([seed, 12]), n_nodes,
                          s_range=(s_mid - half_s + 8.0, s_mid + half_s - 8.0))
    return _MRIScene(grid, centre, zoom, texture, muscle_texture, blobs)


def _render_t2(scene: _MRIScene, canon: np.ndarray, blobs: list[Blob], pre_blobs: list[Blob] | None,
               tumour_gain: float) -> tuple[np.ndarray, np.ndarray]:
    """Clean T2 (before bias and noise) and label map at canonical points."""
    tissue = tissue_map(canon, scene.texture)
    img = T2_LUT[tissue]
    img *= 1.0 + 0.08 * scene.muscle_texture(canon / np.float32(10.0))
    levels = lesion_levels(canon, blobs)
    w_now = np.zeros(img.shape, np.float32)
    lesion_val = np.zeros(img.shape, np.float32)
    for lev, b in zip(levels, blobs):
        w = soft_membership(lev)
        take = w > w_now
        lesion_val[take] = T2_TUMOUR[b.label] * b.uptake * tumour_gain
        w_now = np.maximum(w_now, w)
    if pre_blobs is None:
        img = img * (1 - w_now) + lesion_val * w_now
    else:
        # where tumour has regressed the tissue is treated (oedema / fibrosis), not normal
        w_pre = np.zeros(img.shape, np.float32)
        for lev in lesion_levels(canon, pre_blobs):
            w_pre = np.maximum(w_pre, soft_membership(lev))
        w_out = np.maximum(w_pre, w_now)
        img = img * (1 - w_out) + T2_RESIDUAL * (w_out - w_now) + lesion_val * w_now
    return img.astype(np.float32), labels_from_levels(levels, blobs)


def _finish(rng: np.random.Generator, scene: _MRIScene, clean: np.ndarray, phys: np.ndarray,
            gain: float) -> np.ndarray:
    """Partial-volume blur (thick slices), bias field, global gain, Rician noise."""
    # the slice profile spans the whole 3 mm slice, in-plane resolution about a voxel
    clean = exact.gaussian_blur(clean, (0.35, 0.6, 0.6))
    bias = bias_field(rng)(scene.unit(phys))
    img = rician(rng, clean * bias * np.float32(gain), NOISE_SIGMA * gain)
    return img.astype(np.float32)


def make_prert_case(seed: int = 0, shape=(32, 96, 96), spacing=(0.9, 0.9, 3.0), n_nodes: int = 2) -> dict:
    """A pre-RT T2w neck MRI with its GTVp (1) / GTVn (2) mask: ``{"T2": Image, "mask": Image}``.

    ``shape`` is (z, y, x) voxels, ``spacing`` (x, y, z) mm, ``n_nodes`` the number of GTVn
    (0 gives a mask without label 2). The same ``seed`` always gives the same case, and the
    same pre-RT images as ``make_midrt_case(seed)``.
    """
    case, _ = _prert(seed, shape, spacing, n_nodes)
    return case


def _prert(seed: int, shape, spacing, n_nodes: int) -> tuple[dict, _MRIScene]:
    scene = _scene(seed, shape, spacing, n_nodes)
    for b in scene.blobs:
        b.uptake = float(np.random.default_rng([seed, 13, b.label]).uniform(0.9, 1.15))
    phys = grid_points(scene.grid)
    clean, labels = _render_t2(scene, scene.to_canonical(phys), scene.blobs, None, 1.0)
    t2 = _finish(np.random.default_rng([seed, 14]), scene, clean, phys, 1.0)
    return {"T2": scene.grid.with_array(t2), "mask": scene.grid.with_array(labels)}, scene


def _mid_transform(rng: np.random.Generator, scene: _MRIScene):
    """Mid-RT physical point -> pre-RT physical point: small rigid move + smooth deformation."""
    a, b = rng.uniform(-4, 4) * (np.pi / 180), rng.uniform(-2, 2) * (np.pi / 180)
    ca, sa, cb, sb = (float(f(v)) for f, v in ((exact.cos, a), (exact.sin, a), (exact.cos, b), (exact.sin, b)))
    rot = np.array([[ca, -sa * cb, sa * sb], [sa, ca * cb, -ca * sb], [0, sb, cb]], np.float32)  # rz @ rx
    shift = np.array([rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-3, 3)], np.float32)
    # ~2 mm over ~7 cm: soft-tissue change between scans; it also stretches or squeezes a
    # lesion locally, so its mid/pre volume ratio spreads beyond the nominal 35-70 %
    deform = VectorField(rng, amplitude=(2.0, 2.0, 1.5), wavelength=70.0)
    c = scene.centre_phys.astype(np.float32)

    def transform(p: np.ndarray) -> np.ndarray:
        return (exact.matvec3(p - c, rot) + c + shift + deform(p)).astype(np.float32)

    return transform


def make_midrt_case(seed: int = 0, shape=(32, 96, 96), spacing=(0.9, 0.9, 3.0), n_nodes: int = 2) -> dict:
    """Pre-RT and mid-RT T2w MRI of one patient, HNTS-MRG task 2 style.

    Keys: ``preRT_T2``, ``preRT_mask`` (pre-RT grid); ``midRT_T2``, ``midRT_mask``,
    ``preRT_T2_registered``, ``preRT_mask_registered`` (mid-RT grid). See the module
    docstring for what changes between the two time points.
    """
    pre, scene = _prert(seed, shape, spacing, n_nodes)
    rng = np.random.default_rng([seed, 21])
    # the mid-RT grid: same size and spacing, another table position
    mid_origin = np.asarray(scene.grid.origin) + rng.uniform(-4, 4, size=3) * np.array([1, 1, 0.5])
    mid_grid = Image(np.zeros(scene.grid.array.shape, np.uint8), scene.grid.spacing, tuple(mid_origin))
    transform = _mid_transform(rng, scene)
    mid_blobs = []
    for b in scene.blobs:
        volume_fraction = rng.uniform(0.35, 0.7)
        factors = exact.cube_root(float(volume_fraction)) * rng.uniform(0.93, 1.07, size=3)
        mid_blobs.append(b.scaled(factors, shift=rng.uniform(-2, 2, size=3)))
    gain, tumour_gain = rng.uniform(0.8, 1.25), rng.uniform(0.8, 0.95)
    phys_mid = grid_points(mid_grid)
    phys_in_pre = transform(phys_mid)
    clean, labels = _render_t2(scene, scene.to_canonical(phys_in_pre), mid_blobs, scene.blobs, tumour_gain)
    scene_mid = _MRIScene(mid_grid, scene.centre_phys, scene.zoom, scene.texture, scene.muscle_texture, mid_blobs)
    t2_mid = _finish(np.random.default_rng([seed, 22]), scene_mid, clean, phys_mid, gain)

    # registration: the true transform plus a smooth error of about one voxel
    err = VectorField(rng, amplitude=tuple(0.8 * s for s in spacing[:2]) + (0.5 * spacing[2],), wavelength=50.0)
    # physical -> index of the (axis-aligned) pre-RT grid, element-wise (no matrix product)
    ijk = (phys_in_pre + err(phys_mid) - np.asarray(scene.grid.origin)) / np.asarray(scene.grid.spacing)
    coords = np.moveaxis(ijk[..., ::-1], -1, 0)  # (k, j, i) = array axes
    reg_t2 = ndimage.map_coordinates(pre["T2"].array, coords, order=1, mode="constant", cval=0.0)
    reg_mask = ndimage.map_coordinates(pre["mask"].array, coords, order=0, mode="constant", cval=0)
    return {
        "preRT_T2": pre["T2"], "preRT_mask": pre["mask"],
        "midRT_T2": mid_grid.with_array(t2_mid), "midRT_mask": mid_grid.with_array(labels),
        "preRT_T2_registered": mid_grid.with_array(reg_t2.astype(np.float32)),
        "preRT_mask_registered": mid_grid.with_array(reg_mask.astype(np.uint8)),
    }


# Public names of the building blocks :mod:`.registration_pair` shares (no module imports
# another's private names: Testing/test_childproc_rules.py).
MRIScene = _MRIScene
prert_with_scene = _prert
render_t2 = _render_t2
finish_t2 = _finish
