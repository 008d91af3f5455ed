"""Write synthetic cohorts in the HNTS-MRG 2024 and HECKTOR 2025 file layouts.

HNTS-MRG 2024 (one folder per patient, numeric ids)::

    <root>/<ID>/preRT/<ID>_preRT_T2.nii.gz
    <root>/<ID>/preRT/<ID>_preRT_mask.nii.gz
    <root>/<ID>/midRT/<ID>_midRT_T2.nii.gz
    <root>/<ID>/midRT/<ID>_midRT_mask.nii.gz
    <root>/<ID>/midRT/<ID>_preRT_T2_registered.nii.gz
    <root>/<ID>/midRT/<ID>_preRT_mask_registered.nii.gz

HECKTOR 2025 task 1 (one folder per patient, centre-prefixed ids such as ``CHUM-001``)::

    <root>/<ID>/<ID>__CT.nii.gz
    <root>/<ID>/<ID>__PT.nii.gz
    <root>/<ID>/<ID>.nii.gz          (labels on the CT grid)

Every 4th case (the 4th, 8th, ...) has no GTVn, so cohorts always mix both kinds.

Example:
    >>> ids = write_hntsmrg_cohort("/tmp/hnts", n=4, seed=0)
    >>> ids
    ['1', '2', '3', '4']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..image import write_image
from .mri import make_midrt_case
from .petct import make_petct_case

HECKTOR_CENTRES = ("CHUM", "CHUP", "CHUS", "HGJ", "HMR", "MDA", "USZ", "CHB")


def _n_nodes(index: int, rng: np.random.Generator) -> int:
    """0 for every 4th case, else 1-3 nodes."""
    return 0 if index % 4 == 3 else int(rng.integers(1, 4))


def write_hntsmrg_cohort(root: str | os.PathLike, n: int, seed: int = 0, shape=(32, 96, 96),
                         spacing=(0.9, 0.9, 3.0)) -> list[str]:
    """Write ``n`` pre-RT/mid-RT cases under ``root``; returns their ids ``["1", "2", ...]``."""
    root = Path(root)
    rng = np.random.default_rng([seed, 41])
    ids = []
    for index in range(n):
        cid = str(index + 1)
        case = make_midrt_case(seed=seed * 1000 + index, shape=shape, spacing=spacing,
                               n_nodes=_n_nodes(index, rng))
        pre, mid = root / cid / "preRT", root / cid / "midRT"
        write_image(case["preRT_T2"], pre / f"{cid}_preRT_T2.nii.gz")
        write_image(case["preRT_mask"], pre / f"{cid}_preRT_mask.nii.gz")
        write_image(case["midRT_T2"], mid / f"{cid}_midRT_T2.nii.gz")
        write_image(case["midRT_mask"], mid / f"{cid}_midRT_mask.nii.gz")
        write_image(case["preRT_T2_registered"], mid / f"{cid}_preRT_T2_registered.nii.gz")
        write_image(case["preRT_mask_registered"], mid / f"{cid}_preRT_mask_registered.nii.gz")
        ids.append(cid)
    return ids


def write_hecktor_cohort(root: str | os.PathLike, n: int, seed: int = 0, tall: bool = False,
                         **case_options) -> list[str]:
    """Write ``n`` PET/CT cases under ``root``; returns their ids (``CHUM-001``, ``CHUP-002`` ...).

    ``case_options`` go to :func:`make_petct_case` (``in_plane``, ``ct_spacing``, ``pet_spacing``).
    """
    root = Path(root)
    rng = np.random.default_rng([seed, 42])
    ids = []
    for index in range(n):
        cid = f"{HECKTOR_CENTRES[index % len(HECKTOR_CENTRES)]}-{index + 1:03d}"
        case = make_petct_case(seed=seed * 1000 + index, tall=tall, n_nodes=_n_nodes(index, rng),
                               **case_options)
        folder = root / cid
        write_image(case["CT"], folder / f"{cid}__CT.nii.gz")
        write_image(case["PET"], folder / f"{cid}__PT.nii.gz")
        write_image(case["mask"], folder / f"{cid}.nii.gz")
        ids.append(cid)
    return ids
