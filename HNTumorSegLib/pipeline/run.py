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
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "mid.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> stages = []
    >>> res = run_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"},
    ...                                       prior_path="prior.nii.gz", output_path="labels.nii.gz"),
    ...                        progress=lambda stage, f, msg: stages.append(stage))
    >>> list(dict.fromkeys(stages))
    ['load', 'resample', 'prompts', 'inference', 'clean-up', 'write']
    >>> res.files["labels"], sorted(res.volumes_ml)
    ('labels.nii.gz', ['GTVn', 'GTVp'])
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..models.loader import with_checkpoint
from ..models.types import CardModel, ModelLoader, NnUNetFolderModel
from ..vocab import NetworkOutput, Uncertainty
from .channels import model_channels
from .finish import finish_from_probabilities
from .finish import volumes_ml as _volumes_ml
from .outputs import OutputSet
from .request import SegmentRequest, SegmentResult
from .tasks import REGION_CONTEXT_MM, prepare_work
from .validate import ValidatedCase, validate_request

Progress = Callable[[str, float, str], None]


def _no_progress(stage: str, fraction: float, message: str = "") -> None:
    """The progress callback of a run nobody watches."""


class _Stages:
    """Reports stage starts/ends and keeps seconds per stage."""

    def __init__(self, progress: Progress | None):
        self.progress: Progress = progress or _no_progress
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


def run_nnunet(case: ValidatedCase, stages: _Stages, model: NnUNetFolderModel) -> SegmentResult:
    """A raw nnU-Net results folder: nnU-Net's own preprocessing and export around our Predictor
    (:func:`HNTumorSegLib.inference.nnunet_inference.predict_nnunet_case`), with the seed steps the
    folder declares (gradient map, head crop: :mod:`.seed_steps`). Whole image unless
    ``--restrict-to-boxes`` (then only the tiles near the boxes run)."""
    from ..inference.ensemble import predictive_entropy
    from ..inference.nnunet_inference import predict_nnunet_case
    from .seed_steps import finish_labels, seed_steps_for

    request = case.request
    target = case.reference
    stages("inference", "nnU-Net preprocessing, sliding window and export")
    want_prob = bool(request.probabilities_path or request.uncertainty_path)
    with seed_steps_for(case, model, stages.progress) as seed:
        region = seed.region_zyx(REGION_CONTEXT_MM) if request.restrict_to_boxes else None
        res = predict_nnunet_case(
            model, seed.nnunet_inputs, device=case.device, tta=case.tta, return_probabilities=want_prob,
            restrict_zyx=region,
            progress=lambda stage="inference", fraction=0.0, message="": stages.progress("inference", fraction, message))
    stages("clean-up", "labels on the first input's grid")
    labels = finish_labels(seed, request, res.segmentation)
    if labels.shape != target.array.shape:
        raise InputError(f"nnU-Net returned a segmentation of shape {labels.shape} for an image of shape "
                         f"{target.array.shape}", request.input_paths[case.reference_name],
                         "check the input is a plain 3D image in the orientation nnU-Net was trained on")
    stages("write", "writing outputs")
    with OutputSet() as out:
        out.add_image("labels", target.with_array(labels), request.output_path)
        prob = None if res.probabilities is None else np.asarray(res.probabilities, np.float32)
        if request.probabilities_path and prob is not None:
            out.add_multichannel("probabilities", prob, target, request.probabilities_path)
        if request.uncertainty_path and prob is not None:
            out.add_image("uncertainty", target.with_array(predictive_entropy(prob, "softmax")), request.uncertainty_path)
        if request.boxes_output_path:
            out.add_json("boxes", [b.to_dict() for b in seed.boxes], request.boxes_output_path)
        for add in case.extra_outputs:   # --save-registered
            add(out)
    stages.end()
    timings = dict(stages.timings, **{f"nnunet.{k}": round(v, 3) for k, v in res.timings.items()})
    timings["total"] = stages.total()
    return SegmentResult(files=out.files, timings=timings, device=str(case.device), model_id=model.card.id,
                         task=case.task, volumes_ml=_volumes_ml(labels, target.spacing), boxes=list(seed.boxes),
                         n_tiles=res.n_tiles, registration=case.registration)


def run_validated(case: ValidatedCase, stages: _Stages, low_memory: bool = False,
                  labels_hook: Callable[[np.ndarray], Any] | None = None) -> SegmentResult:
    """Run a request already checked by :func:`validate_request` (see :func:`run_segmentation`).

    The model's type says how it runs (:mod:`HNTumorSegLib.models.types`): an nnU-Net folder by
    nnU-Net's own pre/post-processing, an ensemble card member by member, a model card here.
    ``labels_hook(labels) -> labels``: applied to the final labels before they are written
    (a refinement keeps the base labels outside its boxes: :mod:`.refine`); it may return an
    :class:`~HNTumorSegLib.image.Image` instead, written as it is (a box-only refinement's crop)."""
    from ..inference import EnsembleOptions, EnsemblePredictor, TilingOptions
    from ..models.ensemble_card import EnsembleModel

    request, model = case.request, case.model
    if isinstance(model, NnUNetFolderModel):
        return run_nnunet(case, stages, model)
    if isinstance(model, EnsembleModel):
        if model.pipeline == "seed002-coarse-to-fine":
            from .coarse_to_fine import run_coarse_to_fine

            return run_coarse_to_fine(case, stages, model)
        from .ensemble_run import run_ensemble

        return run_ensemble(case, stages, model)
    if not isinstance(model, CardModel):
        raise TypeError(f"cannot run a {type(model).__name__} (models.types lists the model types)")
    card = model.card
    stages("resample", "inputs onto the model's grid")
    work = prepare_work(case)
    stages("prompts", "; ".join(work.notes) or "input channels")
    x = model_channels(card, work.images, work.boxes)

    stages("inference", "starting")
    output = NetworkOutput.parse(card.output, "model.json output")
    patch = model.patch_size or list(x.shape[1:])
    predictor = EnsemblePredictor(
        model.networks, patch, model.num_classes, device=case.device, output=output,
        tiling=TilingOptions(tta=case.tta, mirror_axes=tuple(card.tta_axes or (0, 1, 2)),
                             low_memory=low_memory),  # the worker's retry after a GPU out-of-memory
        options=EnsembleOptions(uncertainty=Uncertainty.ENTROPY if request.uncertainty_path else None),
        progress=lambda stage="inference", fraction=0.0, message="": stages.progress("inference", fraction, message))
    pred = predictor.predict(x, region=work.region)
    return finish_from_probabilities(case, stages, pred.probabilities, work.grid, work.target, output,
                                     boxes=list(work.boxes), uncertainty=pred.uncertainty, n_tiles=int(pred.n_tiles),
                                     labels_hook=labels_hook)


def register_case_prior(case: ValidatedCase, stages: _Stages) -> None:
    """``--prior-image`` (issue 23): the pre-RT contours registered onto the mid-RT T2 in the
    ``register`` stage, then used as a registered prior (:mod:`.prior_registration`); the quality
    figures go to the result, ``--save-registered`` files are staged with the labels."""
    from .prior_registration import add_registered_outputs, register_prior

    stages("register", "pre-RT T2 onto the mid-RT T2")
    assert case.unregistered_prior is not None
    done = register_prior(case.unregistered_prior, case.reference, case.request.registration, stages.progress)
    case.prior, case.registration = done.prior, done.quality
    folder = case.request.registered_folder_path
    if folder:
        case.extra_outputs.append(lambda out: add_registered_outputs(out, done, case.reference, folder))


def run_segmentation(request: SegmentRequest | dict, progress: Progress | None = None,
                     low_memory: bool = False, model_loader: ModelLoader | None = None) -> SegmentResult:
    """Segment one case (module docstring). User mistakes raise :class:`InputError` before any output exists.

    ``model_loader``: a warm session's model cache (:mod:`HNTumorSegLib.session`); refinement of
    edited boxes is :func:`.refine.refine_segmentation`."""
    if isinstance(request, dict):
        request = SegmentRequest.from_dict(request)
    if not isinstance(request, SegmentRequest):
        raise InputError(f"not a segmentation request ({type(request).__name__})")
    stages = _Stages(progress)
    stages("load", "reading inputs and the model")
    case = validate_request(request, model_loader=with_checkpoint(model_loader, request.checkpoint))
    for warning in case.warnings:   # a line each in the progress stream; also in the result (issue 11)
        stages.progress("load", 0.0, f"warning: {warning}")
    if case.unregistered_prior is not None:
        register_case_prior(case, stages)
    result = run_validated(case, stages, low_memory=low_memory)
    result.warnings = list(case.warnings)
    result.alignment = case.alignment   # the PET on the CT: the gate's figures (issue 24)
    return result
