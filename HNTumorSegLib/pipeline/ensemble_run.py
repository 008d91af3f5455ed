"""Run an ensemble card: every member with its own preprocessing, probabilities averaged, one label map.

For each member of an :class:`~HNTumorSegLib.models.ensemble_card.EnsembleModel`:

* an **nnU-Net results folder** runs nnU-Net's own preprocessing and export
  (:func:`HNTumorSegLib.inference.nnunet_inference.predict_nnunet_case`); its softmax comes
  back on its first input's grid;
* a **model card** (STU-Net, nnU-Net architectures) or a **SegResNet** folder runs as a single
  model does (:func:`.tasks.prepare_work`: its task's crop, its spacing, its normalisation
  schemes - e.g. Auto3DSeg's range + sigmoid - then the tiled predictor); its softmax comes
  back on its working grid.

The first member's grid is the common grid: every other member's probabilities are resampled
onto it linearly (outside a member's own region: background 1, other classes 0). Then, as
seed 002's released ``fuse_probabilities``: ``p = sum_m w_m p_m`` (weights normalised to 1),
renormalised per voxel (``p / sum_k p``), argmax. Labels go back to the first input's grid and
through the ensemble card's clean-up, exactly as a single model's (:func:`.finish.finish_from_probabilities`).

Only softmax members can be averaged class by class; a sigmoid-region member is refused.

Example:
    $ hntumorseg segment --model models/seed002-fine --input CT=ct.nii.gz --input PET=pet.nii.gz -o seg.nii.gz
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..image import Image, resample_to, write_image
from ..models.ensemble_card import EnsembleModel, MemberModel, own_inputs
from ..models.types import NnUNetFolderModel
from .channels import model_channels
from .finish import finish_from_probabilities
from .outputs import paste, to_target_block
from .tasks import prepare_work
from .validate import ValidatedCase


def ensemble_tta(case: ValidatedCase) -> bool:
    """TTA for every member: the request's, or the ensemble card's ``"tta"`` (:func:`.validate.default_tta`)."""
    return bool(case.tta)


def _progress(stages, label: str):
    return lambda stage="inference", fraction=0.0, message="": stages.progress(
        "inference", fraction, f"{label}: {message}" if message else label)


def member_probabilities(case: ValidatedCase, member: MemberModel, images: dict[str, Image], tta: bool,
                         stages, label: str, own_task: bool = True) -> tuple[np.ndarray, Image]:
    """``(softmax (K, z, y, x), its grid)`` of one member run with its own preprocessing on ``images``.

    ``own_task=False``: the caller has already cropped (a coarse-to-fine stage); the member only
    goes to its spacing and normalisation, without its task's crop.
    """
    model = member.model
    own = {name: images[member.user_name(name)] for name in own_inputs(model)}
    if isinstance(model, NnUNetFolderModel):
        from ..inference.nnunet_inference import predict_nnunet_case

        grid = own[model.input_names[0]]
        # nnU-Net reads its channels on one grid (as nnUNetv2_predict requires): the first channel's
        own = {name: img if img.same_grid(grid) else resample_to(img, grid, interpolator="linear")
               for name, img in own.items()}
        with tempfile.TemporaryDirectory(prefix="hntumorseg-member-") as tmp:
            files = {name: str(write_image(img, Path(tmp) / f"{i:02d}.nii.gz", compress=False))
                     for i, (name, img) in enumerate(own.items())}
            res = predict_nnunet_case(model, files, device=case.device, tta=tta, return_probabilities=True,
                                      progress=_progress(stages, label))
        return np.asarray(res.probabilities, np.float32), grid
    from ..inference import EnsemblePredictor, TilingOptions

    card = model.card
    if card.output != "softmax":
        raise ModelError(f"ensemble member {member.name} predicts {card.output}; members are averaged per class "
                         "and must be softmax models", model.folder, "use softmax members")
    sub = dataclasses.replace(case, model=model, images=own)
    if not own_task:
        sub = dataclasses.replace(sub, task=None, boxes=[])
    work = prepare_work(sub)
    x = model_channels(card, work.images, work.boxes)
    predictor = EnsemblePredictor(model.networks, model.patch_size or list(x.shape[1:]), model.num_classes,
                                  device=case.device, output="softmax",
                                  tiling=TilingOptions(tta=tta, mirror_axes=tuple(card.tta_axes or (0, 1, 2))),
                                  progress=_progress(stages, label))
    return predictor.predict(x, region=work.region).probabilities, work.grid


def on_common_grid(probabilities: np.ndarray, grid: Image, common: Image) -> np.ndarray:
    """Probabilities on ``grid`` resampled (linear) onto ``common``; background 1 where ``grid`` does not reach."""
    fill = np.zeros(probabilities.shape[0], np.float32)
    fill[0] = 1.0
    block, sl = to_target_block(probabilities, grid, common, fill)
    return paste(block, sl, common.array.shape, fill)


def average_probabilities(parts: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """``sum w p`` renormalised per voxel (seed 002's ``fuse_probabilities``)."""
    total = parts[0][1] * parts[0][0]
    for prob, weight in parts[1:]:
        total = total + weight * prob
    denom = total.sum(axis=0, keepdims=True)
    return (total / np.where(denom > 0, denom, 1.0)).astype(np.float32)


def ensemble_probabilities(case: ValidatedCase, model: EnsembleModel, images: dict[str, Image], tta: bool,
                           stages, own_task: bool = True) -> tuple[np.ndarray, Image]:
    """Every member on ``images``, averaged on the first member's grid: ``(probabilities, grid)``."""
    common: Image | None = None
    parts: list[tuple[np.ndarray, float]] = []
    k = None
    for i, member in enumerate(model.members):
        label = f"member {i + 1}/{len(model.members)} {member.name} ({member.model.kind})"
        stages("inference", label)
        prob, grid = member_probabilities(case, member, images, tta, stages, label, own_task=own_task)
        if k is None:
            k = prob.shape[0]
        elif prob.shape[0] != k:
            raise ModelError(f"ensemble member {member.name} has {prob.shape[0]} classes, the first has {k}",
                             member.model.folder, "every member must predict the same labels")
        if common is None:
            common = grid
        elif not grid.same_grid(common):
            prob = on_common_grid(prob, grid, common)
        parts.append((prob, member.weight))
    if common is None:
        raise ModelError("ensemble card has no member", model.folder, "list at least one member")
    return average_probabilities(parts), common


def run_ensemble(case: ValidatedCase, stages, model: EnsembleModel):
    """``case``'s run with its ensemble card ``model`` (module docstring); coarse-to-fine cards run
    :mod:`.coarse_to_fine` instead."""
    tta = ensemble_tta(case)
    stages("resample", f"{len(model.members)} members, each with its own preprocessing"
                       + (f"; {'; '.join(case.notes)}" if case.notes else ""))
    prob, grid = ensemble_probabilities(case, model, case.images, tta, stages)
    return finish_from_probabilities(case, stages, prob, grid, case.reference, "softmax", boxes=list(case.boxes))
