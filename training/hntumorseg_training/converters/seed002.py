"""Seed 002's three training datasets (head, coarse, fine) from HECKTOR-layout PET/CT cases.

Each stage learns on the grid the pipeline gives it at inference
(:mod:`HNTumorSegLib.prompts.coarse_to_fine`, the released formulas):

| dataset | grid | channels | label |
|---|---|---|---|
| head (``Dataset004_HECKHead`` released) | head region, 256 x 256 x 128 at 2 x 2 x 3 mm | ``CT_norm`` (window [-105, 195] -> [0, 1]) | the head, 1 (:func:`head_label_from_ct`) |
| coarse (``Dataset005_HECKCoarse``) | 144^3 at 2 mm below the head point | ``CT_norm``, ``PET_norm`` (from the head regions; the PET's on its own grid as released, ``pet_head_grid``) | GTVp 1 / GTVn 2, nearest neighbour |
| fine (``Dataset014_HECKFine2chan``) | 144^3 at 1 mm on the **reference** labels' centroid | ``CT``, ``PET`` min-max on the ROI (2, 4 or 6 channels of the ``seed002`` set) | GTVp / GTVn, nearest neighbour |

*Head labels.* The released head model learnt from 40 CTs whose head region the authors
outlined by hand ("in just a few hours"); those outlines are not published. **Choice**, from
the CT alone: on the head region (CT resampled with -1024 HU outside the scan), the body is
the largest face-connected component of ``CT > -300 HU`` with holes filled slice by slice; the
head's widest axial slice is found within 150 mm of the top of the body; below it, down to
250 mm from the top, the neck is the smallest axial area, and the head is the body above the
highest slice (below the widest) whose area is within 5 % of that minimum. This is everything above the narrowest part of the neck: the skull, the face
and the oropharynx's upper part. The head point then lies at 70 % of that height, and the
coarse ROI (288 mm below it) covers the whole neck (tested on phantoms: every lesion inside).

*Coarse ROI placement.* The released conversion places the coarse ROI with its trained head
model's prediction; a conversion here needs no trained model, so the ROI is placed with the
head label above (the same rule at inference would need the head model; the two agree as far
as the head model learnt its labels).

Example:
    >>> folders = convert_seed002("HECKTOR2025_train", "nnUNet_raw", first_id=604)   # 604 head, 605 coarse, 606 fine
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from HNTumorSegLib.datasets import find_hecktor_cases
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, check_labels
from HNTumorSegLib.prompts.coarse_to_fine import (OUTSIDE_CT, OUTSIDE_PET, PET_HEAD_GRID, RoiGrid, coarse_grid,
                                                  fine_grid, head_grid, head_point, tumour_centroid, window_head_images)
from HNTumorSegLib.prompts.ct_channels import channel_set_inputs, minmax_released, seed002_stack

from .nnunet_raw import RawDatasetWriter

BODY_HU = -300.0
NECK_SEARCH_MM = 250.0
HEAD_WIDEST_WITHIN_MM = 150.0
NECK_TOLERANCE = 1.05
HEAD_LABELS = {"background": 0, "Head": 1}
PREPARED = {"type": "none"}   # the stage inputs are prepared by the pipeline, nnU-Net z-scores them


def head_label_from_ct(ct_on_head_grid: Image) -> Image:
    """The CT-derived head mask on the head-region grid (module docstring; uint8 0/1)."""
    hu = np.asarray(ct_on_head_grid.array, dtype=np.float32)
    body, n = ndimage.label(hu > BODY_HU, structure=ndimage.generate_binary_structure(3, 1))
    out = np.zeros(hu.shape, np.uint8)
    if n == 0:
        return ct_on_head_grid.with_array(out)
    sizes = np.bincount(body.ravel())[1:]
    body = body == (int(np.argmax(sizes)) + 1)
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    area = body.sum(axis=(1, 2))
    occupied = np.flatnonzero(area)
    top = int(occupied[-1])                                   # z index grows toward the head (identity grid)
    dz = float(ct_on_head_grid.spacing[2])
    bottom = max(int(occupied[0]), top - int(NECK_SEARCH_MM / dz))
    # the skull cap narrows to nothing at the vertex: look for the neck below the head's widest slice
    cranium = max(bottom, top - int(HEAD_WIDEST_WITHIN_MM / dz))
    widest = cranium + int(np.argmax(area[cranium:top + 1]))
    window = area[bottom:widest + 1]
    neck_area = window.min()
    within = np.flatnonzero(window <= NECK_TOLERANCE * neck_area) + bottom
    neck = int(within.max())
    out[neck + 1:top + 1] = body[neck + 1:top + 1]
    return ct_on_head_grid.with_array(out)


def fine_stage_inputs(n_channels: int) -> list[dict]:
    """The fine stage's card inputs: the ``seed002`` set on inputs the pipeline prepared (min-max on the ROI)."""
    inputs = channel_set_inputs("seed002", n_channels)
    for item in inputs:
        if "derived_from" not in item:
            item["normalisation"] = dict(PREPARED)
    return inputs


@dataclass
class StageSamples:
    """One case's three training samples (channels on the stage grid, label on the same grid)."""

    head: tuple[list[Image], Image]
    coarse: tuple[list[Image], Image]
    fine: tuple[list[Image], Image]
    grids: dict[str, RoiGrid]


def stage_samples(ct: Image, pet: Image, label: Image, fine_channels: tuple[str, int] = ("seed002", 2),
                  pet_head_grid: str = PET_HEAD_GRID) -> StageSamples:
    """The head, coarse and fine training samples of one PET/CT case (module docstring)."""
    head = head_grid(ct)
    ct_h, pet_h = window_head_images(ct, pet, head, pet_head_grid)
    head_mask = head_label_from_ct(head.resample(ct, default=-1024.0))
    coarse = coarse_grid(head_point(head_mask).xyz)
    coarse_x = [coarse.resample(ct_h, default=OUTSIDE_CT), coarse.resample(pet_h, default=OUTSIDE_PET)]
    coarse_y = coarse.resample(label, label=True)
    centroid = tumour_centroid(label)
    if centroid is None:   # a case without lesions: the fine ROI on the coarse ROI's centre
        centroid = tuple(np.add(coarse.origin_xyz, (np.array(coarse.size_xyz) - 1) / 2 * np.array(coarse.spacing_xyz)))
    fine = fine_grid(centroid)
    ct_f, pet_f = fine.resample(ct_h, default=OUTSIDE_CT), fine.resample(pet_h, default=OUTSIDE_PET)
    name, n = fine_channels
    if name != "seed002":
        raise InputError(f"the coarse-to-fine fine stage takes the seed002 channel set, not {name!r}", None,
                         "use --channel-set seed002 (2, 4 or 6 channels)")
    stacked = seed002_stack(minmax_released(ct_f.array), minmax_released(pet_f.array), n)
    fine_x = [ct_f.with_array(c) for c in stacked]
    return StageSamples(head=([ct_h], head_mask), coarse=(coarse_x, coarse_y),
                        fine=(fine_x, fine.resample(label, label=True)),
                        grids={"head": head, "coarse": coarse, "fine": fine})


def convert_seed002(data_root: str | os.PathLike, raw_root: str | os.PathLike, first_id: int,
                    name: str = "HECK", fine_channels: tuple[str, int] = ("seed002", 2),
                    cases: Sequence[str] | None = None, pet_head_grid: str = PET_HEAD_GRID) -> dict[str, Path]:
    """Write the three datasets ``first_id`` (head), ``+1`` (coarse), ``+2`` (fine); returns their folders."""
    found = [c for c in find_hecktor_cases(data_root) if cases is None or c.case_id in set(cases)]
    if not found:
        raise InputError("no HECKTOR case found", Path(data_root), "give the HECKTOR 2025 training folder")
    n_fine = fine_channels[1]
    writers = {
        "head": RawDatasetWriter(Path(raw_root), first_id, f"{name}Head", [{"name": "CT", "normalisation": PREPARED}],
                                 "petct", nnunet_channel_names=["CT_norm"], labels=HEAD_LABELS,
                                 description="seed 002 head localisation (labels derived from CT)"),
        "coarse": RawDatasetWriter(Path(raw_root), first_id + 1, f"{name}Coarse",
                                   [{"name": "CT", "normalisation": PREPARED}, {"name": "PET", "normalisation": PREPARED}],
                                   "petct", nnunet_channel_names=["CT_norm", "PET_norm"],
                                   description="seed 002 coarse ROI (144^3 at 2 mm)"),
        "fine": RawDatasetWriter(Path(raw_root), first_id + 2, f"{name}Fine{n_fine}chan",
                                 fine_stage_inputs(n_fine), "petct",
                                 nnunet_channel_names=["CT", "PET"] if n_fine == 2 else None,
                                 description="seed 002 fine ROI (144^3 at 1 mm)"),
    }
    for case in found:
        if case.label is None:
            raise InputError(f"HECKTOR case {case.case_id} has no label map", case.ct,
                             "training needs <ID>.nii.gz beside each CT")
        label = case.load("label")
        check_labels(label, path=case.label)
        s = stage_samples(case.load("CT"), case.load("PET"), label, fine_channels, pet_head_grid)
        for stage, (channels, y) in (("head", s.head), ("coarse", s.coarse), ("fine", s.fine)):
            writers[stage].add_case(case.case_id, channels, y, patient=case.case_id)
    return {stage: w.finish({"seed002_stage": stage}) for stage, w in writers.items()}
