"""Seed 002 as a pipeline: head localisation -> coarse ROI -> coarse segmentation -> fine ROI -> fine ensemble -> back.

An ensemble card with ``"pipeline": "seed002-coarse-to-fine"`` (:mod:`HNTumorSegLib.models.ensemble_card`)
declares three stages; each is any model HNTumorSeg loads (an nnU-Net results folder as
released, ``Dataset004_HECKHead`` / ``Dataset005_HECKCoarse`` / the fine members, or a model card):

1. **head**: the CT's top 384 mm at 2 x 2 x 3 mm, windowed [-105, 195] HU -> [0, 1]; the PET's
   top 384 mm on its own grid (as released; the card's ``"pet_head_grid": "ct"`` puts it on the
   CT's, :class:`~HNTumorSegLib.vocab.PetHeadGrid`), min-max then / 5; the head model's labels ->
   the head point (:func:`HNTumorSegLib.prompts.coarse_to_fine.head_point`);
2. **coarse**: a 144^3 ROI at 2 mm hanging below the point, CT and PET resampled from their head
   regions; the coarse model's labels -> their centroid;
3. **fine**: a 144^3 ROI at 1 mm on that centroid, CT and PET min-max normalised on the ROI
   (the released ``apply_transforms``); the card's members (ResEnc-L, SegResNet, ...) each with
   their own normalisation, per-class probabilities averaged with their weights, renormalised,
   argmax (:mod:`.ensemble_run`);
4. **back**: the fine labels onto the CT grid by nearest neighbour, 0 outside, then the card's
   clean-up.

Formulas and the choices where the released code stops or is vague:
:mod:`HNTumorSegLib.prompts.coarse_to_fine`. Every stage's region is reported in the progress
(``prompts`` stage: grid origin, size and spacing) and returned in ``SegmentResult.regions``.

The stages' models see only the images the pipeline prepared (they do not crop again), so a
stage model's card declares schemes for those inputs (``none``/``zscore`` for card models;
nnU-Net folders use their plans, as released).

Example:
    $ hntumorseg segment --model models/seed002 --input CT=ct.nii.gz --input PET=pet.nii.gz -o seg.nii.gz
"""

from __future__ import annotations

import numpy as np

from ..image import Image
from ..models.ensemble_card import EnsembleModel, MemberModel
from ..prompts.coarse_to_fine import (OUTSIDE_CT, OUTSIDE_PET, PET_HEAD_GRID, RoiGrid, choose_fine_roi, coarse_grid,
                                      head_grid, head_point, window_head_images)
from ..vocab import PetHeadGrid
from ..prompts.ct_channels import minmax_released
from .ensemble_run import ensemble_probabilities, ensemble_tta, member_probabilities, on_common_grid
from .finish import finish_from_probabilities
from .validate import ValidatedCase


def _stage_labels(case: ValidatedCase, member: MemberModel, images: dict[str, Image], tta: bool, stages,
                  label: str) -> Image:
    """One stage model on prepared images -> argmax labels on the images' grid."""
    from ..inference.ensemble import hard_labels

    grid = next(iter(images.values()))
    prob, own_grid = member_probabilities(case, member, images, tta, stages, label, own_task=False)
    if not own_grid.same_grid(grid):
        prob = on_common_grid(prob, own_grid, grid)
    return grid.with_array(hard_labels(prob, "softmax").astype(np.uint8))


def fine_inputs(ct_head: Image, pet_head: Image, fine: RoiGrid) -> dict[str, Image]:
    """The fine ROI's CT and PET as the released fine models read them (min-max on the ROI)."""
    ct_f = fine.resample(ct_head, default=OUTSIDE_CT)
    pet_f = fine.resample(pet_head, default=OUTSIDE_PET)
    return {"CT": ct_f.with_array(minmax_released(ct_f.array)), "PET": pet_f.with_array(minmax_released(pet_f.array))}


def run_coarse_to_fine(case: ValidatedCase, stages, model: EnsembleModel):
    """Run seed 002's pipeline for a validated request whose model is ``model``, a coarse-to-fine ensemble card."""

    tta = ensemble_tta(case)
    ct, pet = case.images["CT"], case.images["PET"]

    stages("resample", "seed 002 head region: top 384 mm of the scan at 2 x 2 x 3 mm")
    head = head_grid(ct)
    pet_grid = PetHeadGrid.parse(model.spec.get("pet_head_grid") or PET_HEAD_GRID, "ensemble.json pet_head_grid")
    ct_h, pet_h = window_head_images(ct, pet, head, pet_grid)
    regions = [{"stage": "head", **head.to_json()}]
    stages("prompts", f"head region origin {regions[0]['origin']} size {regions[0]['size']} "
                      f"spacing {regions[0]['spacing']}; PET on {'its own' if pet_grid is PetHeadGrid.OWN else 'the CT'}"
                      f" head grid" + (f"; {'; '.join(case.notes)}" if case.notes else ""))

    stages("inference", "stage 1/3: head localisation")
    head_mask = _stage_labels(case, model.stages["head"], {"CT": ct_h}, tta, stages, "head localisation")
    point = head_point(head_mask, scan=ct)
    coarse = coarse_grid(point.xyz)
    regions.append({"stage": "coarse", **coarse.to_json(), "head_found": point.found})
    stages("prompts", f"coarse ROI origin {regions[-1]['origin']} size 144^3 at 2 mm"
                      + ("" if point.found else " (no head found: centre of the scan, 70 % up the head region)"))

    stages("inference", "stage 2/3: coarse segmentation")
    coarse_images = {"CT": coarse.resample(ct_h, default=OUTSIDE_CT), "PET": coarse.resample(pet_h, default=OUTSIDE_PET)}
    coarse_labels = _stage_labels(case, model.stages["coarse"], coarse_images, tta, stages, "coarse segmentation")
    chosen = choose_fine_roi(coarse_labels, coarse)
    regions.append({"stage": "fine", **chosen.grid.to_json(), "from_tumour": chosen.from_tumour})
    stages("prompts", f"fine ROI origin {regions[-1]['origin']} size 144^3 at 1 mm"
                      + ("" if chosen.from_tumour else " (coarse stage found no tumour: centre of the coarse ROI)"))

    stages("inference", f"stage 3/3: fine ensemble of {len(model.members)} model(s)")
    images = fine_inputs(ct_h, pet_h, chosen.grid)
    prob, grid = ensemble_probabilities(case, model, images, tta, stages, own_task=False)
    result = finish_from_probabilities(case, stages, prob, grid, case.reference, "softmax", boxes=[],
                                       labels_nearest=True)
    result.regions = regions
    return result
