"""``run_segmentation``: one task = validation -> prompts -> channels -> inference -> clean-up -> outputs.

Stages reported through ``progress(stage, fraction, message)`` (the names
:mod:`HNTumorSegLib.progress` weighs): ``load`` (validate the request, read the images, load
the model), ``resample`` (inputs onto the model's grid), ``prompts`` (boxes, gradient map,
CT/PET channels), ``inference`` (the EnsemblePredictor's tiles), ``clean-up`` (back to the first input's
grid, argmax, the card's small-component removal), ``write`` (all outputs at once). Seconds per
stage come back in ``SegmentResult.timings``.

Nothing is written before every check passed (:mod:`.validate`), and outputs appear together
or not at all (:class:`.outputs.OutputSet`).

Example:
    >>> res = run_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"},
    ...                                       prior_path="prior.nii.gz", output_path="labels.nii.gz"),
    ...                        progress=lambda stage, f, msg: print(stage, f, msg))
    >>> res.files["labels"], res.volumes_ml
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .. import LABEL_NAMES
from ..errors import InputError
from .channels import model_channels
from .outputs import OutputSet, paste, to_target_block
from .request import SegmentRequest, SegmentResult
from .tasks import prepare_work
from .validate import ValidatedCase, validate_request

Progress = Callable[[str, float, str], None]


class _Stages:
    """Reports stage starts/ends and keeps seconds per stage."""

    def __init__(self, progress: Progress | None):
        self.progress = progress or (lambda stage, fraction, message="": None)
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = time.perf_counter()
        self._start = self._t0

    def __call__(self, stage: str, message: str = "") -> None:
        self.end()
        self._stage, self._t0 = stage, time.perf_counter()
        self.progress(stage, 0.0, message)

    def end(self, message: str = "") -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + time.perf_counter() - self._t0, 3)
            self.progress(self._stage, 1.0, message or "done")
            self._stage = None

    def total(self) -> float:
        return round(time.perf_counter() - self._start, 3)


def _predictor_output(card_output: str) -> str:
    return "softmax" if card_output == "softmax" else "sigmoid"


def _labels_from(prob: np.ndarray, output: str) -> np.ndarray:
    from ..inference.ensemble import hard_labels
    from ..postprocess import fuse_binary_probabilities

    if output == "softmax":
        return hard_labels(prob, output)
    return fuse_binary_probabilities(prob[0], prob[1])  # seed 002's GTVp/GTVn region maps


def _volumes_ml(labels: np.ndarray, spacing) -> dict[str, float]:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {name: round(float(np.count_nonzero(labels == value)) * voxel_ml, 3) for value, name in LABEL_NAMES.items()}


def run_nnunet(case: ValidatedCase, stages: _Stages) -> SegmentResult:
    """A raw nnU-Net results folder: nnU-Net's own preprocessing and export around our Predictor
    (:func:`HNTumorSegLib.inference.nnunet_inference.predict_nnunet_case`). With ``--boxes`` the
    labels outside the boxes (+ :data:`.tasks.REGION_CONTEXT_MM`) are set to background."""
    from ..inference.ensemble import predictive_entropy
    from ..inference.nnunet_inference import predict_nnunet_case
    from ..prompts.boxes import boxes_to_mask
    from .tasks import REGION_CONTEXT_MM

    request, model = case.request, case.model
    target = case.reference
    stages("inference", "nnU-Net preprocessing, sliding window and export")
    want_prob = bool(request.probabilities_path or request.uncertainty_path)
    res = predict_nnunet_case(
        model, {name: request.input_paths[name] for name in case.images}, device=case.device, tta=request.tta,
        return_probabilities=want_prob,
        progress=lambda stage="inference", fraction=0.0, message="": stages.progress("inference", fraction, message))
    stages("clean-up", "labels on the first input's grid")
    labels = np.asarray(res.segmentation).astype(np.uint8)
    if labels.shape != target.array.shape:
        raise InputError(f"nnU-Net returned a segmentation of shape {labels.shape} for an image of shape "
                         f"{target.array.shape}", request.input_paths[case.reference_name],
                         "check the input is a plain 3D image in the orientation nnU-Net was trained on")
    if case.boxes:
        labels[~boxes_to_mask(case.boxes, target, margin_mm=REGION_CONTEXT_MM)] = 0
    stages("write", "writing outputs")
    with OutputSet() as out:
        out.add_image("labels", target.with_array(labels), request.output_path)
        prob = None if res.probabilities is None else np.asarray(res.probabilities, np.float32)
        if request.probabilities_path and prob is not None:
            out.add_multichannel("probabilities", prob, target, request.probabilities_path)
        if request.uncertainty_path and prob is not None:
            out.add_image("uncertainty", target.with_array(predictive_entropy(prob, "softmax")), request.uncertainty_path)
        if request.boxes_output_path:
            out.add_json("boxes", [b.to_dict() for b in case.boxes], request.boxes_output_path)
    stages.end()
    timings = dict(stages.timings, **{f"nnunet.{k}": round(v, 3) for k, v in res.timings.items()})
    timings["total"] = stages.total()
    return SegmentResult(files=out.files, timings=timings, device=str(case.device), model_id=model.card.id,
                         task=case.task, volumes_ml=_volumes_ml(labels, target.spacing), boxes=list(case.boxes))


def run_validated(case: ValidatedCase, stages: _Stages, low_memory: bool = False) -> SegmentResult:
    """Run a request already checked by :func:`validate_request` (see :func:`run_segmentation`)."""
    from ..inference import EnsembleOptions, EnsemblePredictor, TilingOptions

    request, model = case.request, case.model
    card = model.card
    if model.kind == "nnunet":
        return run_nnunet(case, stages)
    if model.kind == "ensemble":
        from .ensemble_run import run_ensemble

        return run_ensemble(case, stages)
    stages("resample", "inputs onto the model's grid")
    work = prepare_work(case)
    stages("prompts", "; ".join(work.notes) or "input channels")
    x = model_channels(card, work.images, work.boxes)

    stages("inference", "starting")
    output = _predictor_output(card.output)
    patch = model.patch_size or list(x.shape[1:])
    predictor = EnsemblePredictor(
        model.networks, patch, model.num_classes, device=case.device, output=output,
        tiling=TilingOptions(tta=request.tta, mirror_axes=tuple(card.tta_axes or (0, 1, 2)),
                             low_memory=low_memory),  # the worker's retry after a GPU out-of-memory
        options=EnsembleOptions(uncertainty="entropy" if request.uncertainty_path else None),
        progress=lambda stage="inference", fraction=0.0, message="": stages.progress("inference", fraction, message))
    pred = predictor.predict(x, region=work.region)
    return finish_from_probabilities(case, stages, pred.probabilities, work.grid, work.target, output,
                                     boxes=list(work.boxes), uncertainty=pred.uncertainty, n_tiles=int(pred.n_tiles))


def finish_from_probabilities(case: ValidatedCase, stages: _Stages, probabilities: np.ndarray, grid, target,
                              output: str, boxes: list, uncertainty: np.ndarray | None = None,
                              n_tiles: int = 0, labels_nearest: bool = False) -> SegmentResult:
    """Probabilities on ``grid`` -> labels on ``target`` (argmax or threshold), the card's clean-up, all outputs.

    Shared by single models and ensembles (:mod:`.ensemble_run`), so both write the same files.
    ``labels_nearest``: labels are decided on ``grid`` and moved by nearest neighbour (seed 002's
    released paste-back) instead of moving the probabilities first.
    """
    from ..postprocess import clean_up

    request, card = case.request, case.model.card
    stages("clean-up", "back to the output grid")
    k = probabilities.shape[0]
    fill = np.zeros(k, np.float32)
    if output == "softmax":
        fill[0] = 1.0
    block, sl = to_target_block(probabilities, grid, target, fill)
    labels = np.zeros(target.array.shape, np.uint8)
    if labels_nearest:
        from ..image import resample_to

        on_grid = grid.with_array(_labels_from(probabilities, output).astype(np.uint8))
        labels = resample_to(on_grid, target, label=True, default_value=0).array.astype(np.uint8)
    elif block.size:
        labels[sl] = _labels_from(block, output)
    post = card.postprocess or {}
    labels = clean_up(labels, target.spacing, post.get("min_volume_ml") or {},
                      keep_largest_gtvp=bool(post.get("keep_largest_gtvp", False)))

    stages("write", "writing outputs")
    with OutputSet() as out:
        out.add_image("labels", target.with_array(labels.astype(np.uint8)), request.output_path)
        if request.probabilities_path:
            out.add_multichannel("probabilities", paste(block, sl, target.array.shape, fill), target,
                                 request.probabilities_path)
        if request.uncertainty_path:
            unc = uncertainty if uncertainty is not None else np.zeros(grid.array.shape, np.float32)
            ublock, usl = to_target_block(unc[None], grid, target, np.zeros(1, np.float32))
            out.add_image("uncertainty", target.with_array(paste(ublock, usl, target.array.shape, [0.0])[0]),
                          request.uncertainty_path)
        if request.boxes_output_path:
            out.add_json("boxes", [b.to_dict() for b in boxes], request.boxes_output_path)
    stages.end()
    timings = dict(stages.timings)
    timings["total"] = stages.total()
    return SegmentResult(files=out.files, timings=timings, device=str(case.device), model_id=card.id,
                         n_tiles=int(n_tiles), task=case.task, volumes_ml=_volumes_ml(labels, target.spacing),
                         boxes=list(boxes))


def run_segmentation(request: SegmentRequest | dict, progress: Progress | None = None,
                     low_memory: bool = False) -> SegmentResult:
    """Segment one case (module docstring). User mistakes raise :class:`InputError` before any output exists."""
    if isinstance(request, dict):
        request = SegmentRequest.from_dict(request)
    if not isinstance(request, SegmentRequest):
        raise InputError(f"not a segmentation request ({type(request).__name__})")
    stages = _Stages(progress)
    stages("load", "reading inputs and the model")
    case = validate_request(request)
    return run_validated(case, stages, low_memory=low_memory)
