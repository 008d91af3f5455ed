"""Synthetic FDG PET/CT of the head and neck, HECKTOR 2025 style.

CT in Hounsfield units (air -1000, fat -100, muscle 45, bone 700, brain 35, lung -820)
on a 2 x 2 x 3 mm grid of 128 x 128 voxels in-plane; PET in SUV (background ~1, brain
8-10, primary 6-15, nodes 5-10, heart 3, liver 2.3) with a 6 mm FWHM blur, on its own
coarser 4 mm grid that covers the same body but with another origin, as real PET. The
label map lies on the CT grid (HECKTOR provides it there).

``tall=False`` covers the top of the head to the lower neck (88 slices, 264 mm);
``tall=True`` goes down to the upper abdomen (160 slices, 480 mm) with lungs, a mildly
hot heart and liver, so that a head crop has something to exclude. Lesions are always in
the neck. The top of the head is at the *highest* z (LPS: +z is superior).

Example:
    >>> case = make_petct_case(seed=0, tall=True)
    >>> case["CT"].array.shape, case["PET"].spacing
    ((160, 128, 128), (4.0, 4.0, 4.0))
"""

from __future__ import annotations

import numpy as np

from ..image import Image
from . import exact
from .anatomy import TISSUE_NAMES, labels_from_levels, lesion_levels, place_lesions, tissue_map
from .mri import grid_points
from .shapes import FourierField, soft_membership

CT_VALUES = {"outside": -1000.0, "fat": -100.0, "muscle": 45.0, "air": -990.0, "bone": 700.0, "csf": 10.0,
             "gland": 30.0, "brain": 35.0, "lung": -820.0, "heart": 40.0, "liver": 60.0}
PET_VALUES = {"outside": 0.0, "fat": 0.4, "muscle": 0.9, "air": 0.05, "bone": 1.2, "csf": 0.6,
              "gland": 1.6, "brain": 9.0, "lung": 0.4, "heart": 3.0, "liver": 2.3}
CT_LUT = np.array([CT_VALUES[n] for n in TISSUE_NAMES], np.float32)
CT_TUMOUR = {1: 55.0, 2: 40.0}
PET_FWHM_MM = 6.0
TOP_MARGIN_MM = 12.0  # air above the vertex in the first (top) slices


def make_petct_case(seed: int = 0, tall: bool = False, n_nodes: int = 2, in_plane: int = 128,
                    ct_spacing=(2.0, 2.0, 3.0), pet_spacing=(4.0, 4.0, 4.0)) -> dict:
    """CT, PET and label map of one patient: ``{"CT": Image, "PET": Image, "mask": Image}``.

    CT is int16 HU, PET float32 SUV (another grid), mask uint8 0/1/2 on the CT grid.
    ``in_plane`` is the CT matrix size (x and y); the body is about 145 mm wide at the neck.
    """
    rng = np.random.default_rng([seed, 31])
    ct_spacing = tuple(float(s) for s in ct_spacing)
    pet_spacing = tuple(float(s) for s in pet_spacing)
    length_mm = 480.0 if tall else 264.0
    nz = int(round(length_mm / ct_spacing[2]))
    shape = (nz, in_plane, in_plane)
    # scanner coordinates: table position far from 0 in z, isocentre near the body centre
    z_top = rng.uniform(-100, 100)
    half = 0.5 * (in_plane - 1) * np.array(ct_spacing[:2])
    centre_xy = rng.uniform(-8, 8, size=2)
    origin = (centre_xy[0] - half[0], centre_xy[1] - half[1], z_top - (nz - 1) * ct_spacing[2])
    grid = Image(np.zeros(shape, np.uint8), ct_spacing, origin)

    texture = FourierField(rng, n_modes=10, freq=(0.8, 2.0))
    blobs = place_lesions(np.random.default_rng([seed, 32]), n_nodes)
    for b in blobs:
        b.uptake = float(rng.uniform(6, 15) if b.label == 1 else rng.uniform(5, 10))
    brain_suv = float(rng.uniform(8, 10))

    phys = grid_points(grid)
    # canonical frame: X, Y as LPS about the isocentre, S = depth below the vertex
    canon = np.empty_like(phys)
    canon[..., 0] = phys[..., 0] - centre_xy[0]
    canon[..., 1] = phys[..., 1] - centre_xy[1]
    canon[..., 2] = (z_top + TOP_MARGIN_MM - ct_spacing[2] / 2) - phys[..., 2] + 0.0
    del phys
    tissue = tissue_map(canon, texture)
    levels = lesion_levels(canon, blobs)
    del canon
    labels = labels_from_levels(levels, blobs)

    ct = CT_LUT[tissue]
    pet_lut = np.array([PET_VALUES[n] for n in TISSUE_NAMES], np.float32)
    pet_lut[TISSUE_NAMES.index("brain")] = brain_suv
    pet = pet_lut[tissue]
    for lev, b in zip(levels, blobs):
        w = soft_membership(lev, softness=0.06)
        ct = ct * (1 - w) + CT_TUMOUR[b.label] * w
        suv = w * np.float32(b.uptake)
        if b.label == 1 and np.mean(b.radii) > 12:
            # large primaries: a colder core than rim (mild central necrosis), as often seen
            suv *= 1.0 - 0.3 * soft_membership(lev + 0.5, 0.08)
        pet = np.maximum(pet, suv)
    # CT: slight blur (reconstruction kernel) + quantum noise; int16 as scanners store it
    ct = exact.gaussian_blur(ct, (0.3, 0.5, 0.5)) + rng.normal(scale=12.0, size=ct.shape)
    ct_img = grid.with_array(np.clip(np.round(ct), -1024, 3071).astype(np.int16))

    # PET: blur by the scanner's resolution on the fine grid, then sample the coarse grid
    sigma_mm = PET_FWHM_MM / 2.3548
    pet = exact.gaussian_blur(pet, [sigma_mm / s for s in ct_spacing[::-1]])
    extent = np.array(shape[::-1]) * np.array(ct_spacing)
    pet_shape_xyz = np.ceil(extent / np.array(pet_spacing)).astype(int)
    first_edge = np.asarray(origin) - 0.5 * np.array(ct_spacing)
    pet_origin = first_edge + 0.5 * np.array(pet_spacing) + rng.uniform(-1.5, 1.5, size=3)
    pet_grid = Image(np.zeros(pet_shape_xyz[::-1], np.uint8), pet_spacing, tuple(pet_origin))
    pet_img = exact.resample_linear(grid.with_array(pet.astype(np.float32)), pet_grid, default_value=0.0)
    # counting noise: variance grows with activity
    arr = pet_img.array
    arr = arr + rng.normal(size=arr.shape).astype(np.float32) * 0.12 * np.sqrt(np.maximum(arr, 0) + 0.05)
    pet_img = pet_img.with_array(np.clip(arr, 0, None).astype(np.float32))
    return {"CT": ct_img, "PET": pet_img, "mask": grid.with_array(labels)}
