"""HNTS-MRG 2024 -> nnU-Net v2 raw dataset (task 1: pre-RT T2; task 2: mid-RT T2 + gradient map).

* ``task="prert"`` (HNTS-MRG task 1, seeds 000/001): one channel ``T2`` (z-score); case
  ``<ID>_preRT`` = ``preRT_T2`` + ``preRT_mask``.
* ``task="midrt"`` (task 2, seed 003): two channels, ``T2`` and ``gradient_map`` (both z-scored
  by nnU-Net, as seed 003 says). Case ``<ID>_midRT`` = ``midRT_T2`` + the gradient map of the
  mid-RT T2 inside per-lesion boxes of the **registered pre-RT mask**; label ``midRT_mask``.
  With ``prert_extras`` (default, seed 003: "gradient maps from the original pre-RT images
  and their ground truth ... as extra training data") each patient also gives ``<ID>_preRT``
  = ``preRT_T2`` + the gradient map inside boxes of its **own** ``preRT_mask``; these extras
  are marked non-primary, so :mod:`.splits` trains on them only in folds where their patient
  is not validated, and never validates on them.

Boxes come from :func:`HNTumorSegLib.prompts.boxes.boxes_from_mask` (face-connected lesions) with
seed 003's training perturbation as its released code draws it (``SEED003_RELEASED``: 4-7 voxels
below, 3-6 above, per side and axis; ``random_margin_vox="paper"`` gives the paper's 2-6;
:mod:`HNTumorSegLib.prompts.margins`), drawn from a generator seeded by
``(seed, patient index, pre/mid)`` so a conversion is reproducible; the gradient map is
:func:`HNTumorSegLib.prompts.gradient_map.gradient_map` (sigma 1 voxel), the same function
inference uses.

Example:
    >>> folder = convert_hntsmrg("HNTSMRG24_train", "nnUNet_raw", 502, task="midrt")
    >>> sorted(p.name for p in (folder / "imagesTr").iterdir())[:2]
    ['1_midRT_0000.nii.gz', '1_midRT_0001.nii.gz']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from HNTumorSegLib.datasets import find_hntsmrg_cases
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import check_labels, resample_to
from HNTumorSegLib.prompts.boxes import boxes_from_mask
from HNTumorSegLib.prompts.gradient_map import gradient_map
from HNTumorSegLib.prompts.margins import SEED003_RELEASED, MarginDraw
from HNTumorSegLib.vocab import MRI_TASKS

from .nnunet_raw import RawDatasetWriter

PRERT_INPUTS = [{"name": "T2", "normalisation": {"type": "zscore"}}]
MIDRT_INPUTS = [{"name": "T2", "normalisation": {"type": "zscore"}},
                {"name": "gradient_map", "derived_from": "T2", "normalisation": {"type": "zscore"}}]
SEED003_RANDOM_MARGIN_VOX = SEED003_RELEASED  # the released code's draw; "paper" for the paper's 2-6


def _label_on(label_img, image, path):
    """The mask on the image's grid (resampled nearest-neighbour if a file lies on another grid)."""
    check_labels(label_img, path=path)
    if not label_img.same_grid(image):
        label_img = resample_to(label_img, image, label=True)
    return label_img


def convert_hntsmrg(data_root: str | os.PathLike, raw_root: str | os.PathLike, dataset_id: int,
                    task: str = "prert", name: str | None = None, prert_extras: bool = True,
                    random_margin_vox: MarginDraw | Sequence[int] | str | None = SEED003_RANDOM_MARGIN_VOX,
                    seed: int = 0,
                    cases: Sequence[str] | None = None) -> Path:
    """Convert an HNTS-MRG 2024 training folder; returns the written ``DatasetXXX_Name`` folder.

    ``cases`` restricts the conversion to these patient ids; ``random_margin_vox=None`` gives
    tight boxes (no perturbation).
    """
    if task not in MRI_TASKS:
        raise InputError(f"HNTS-MRG task {task!r} is not prert or midrt", None, "use --task prert or --task midrt")
    found = find_hntsmrg_cases(data_root, task=task)
    if cases is not None:
        wanted = {str(c) for c in cases}
        found = [c for c in found if c.case_id in wanted]
    name = name or ("HNTSMRGPreRT" if task == "prert" else "HNTSMRGMidRT")
    writer = RawDatasetWriter(Path(raw_root), dataset_id, name, PRERT_INPUTS if task == "prert" else MIDRT_INPUTS,
                              task, description=f"HNTS-MRG 2024 {task} converted by hntumorseg_training "
                                                f"(seed 003 gradient maps)" if task == "midrt" else
                              "HNTS-MRG 2024 task 1 (pre-RT T2) converted by hntumorseg_training")
    margin = MarginDraw.coerce(random_margin_vox) if random_margin_vox is not None else None
    for index, case in enumerate(found):
        if task == "prert":
            t2 = case.load("preRT_T2")
            mask = _label_on(case.load("preRT_mask"), t2, case.path("preRT_mask"))
            writer.add_case(f"{case.case_id}_preRT", [t2], mask, patient=case.case_id)
            continue
        t2 = case.load("midRT_T2")
        mask = _label_on(case.load("midRT_mask"), t2, case.path("midRT_mask"))
        prior = _label_on(case.load("preRT_mask_registered"), t2,
                          case.path("preRT_mask_registered"))
        rng = np.random.default_rng([seed, index, 1])
        boxes = boxes_from_mask(prior, random_margin_vox=margin, rng=rng)
        writer.add_case(f"{case.case_id}_midRT", [t2, gradient_map(t2, boxes)], mask, patient=case.case_id)
        if prert_extras and case.preRT_T2 is not None and case.preRT_mask is not None:
            pre = case.load("preRT_T2")
            pre_mask = _label_on(case.load("preRT_mask"), pre, case.path("preRT_mask"))
            pre_boxes = boxes_from_mask(pre_mask, random_margin_vox=margin, rng=np.random.default_rng([seed, index, 0]))
            writer.add_case(f"{case.case_id}_preRT", [pre, gradient_map(pre, pre_boxes)], pre_mask,
                            patient=case.case_id, primary=False)
    return writer.finish({"source": str(Path(data_root)), "random_margin_vox": margin.to_json() if margin else None,
                          "seed": seed})
