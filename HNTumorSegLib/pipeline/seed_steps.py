"""The pipeline's side of the seed steps around nnU-Net folders (:mod:`HNTumorSegLib.inference.nnunet_seed`).

:func:`seed_steps_for` turns a validated case into a :class:`~HNTumorSegLib.inference.nnunet_seed.SeedSteps`
(the folder's declaration, the images read by :mod:`.validate`, the prior, the user's boxes) and
refuses, before anything is written, what a cropped model cannot give yet (probability and
uncertainty maps would have to be pasted back channel by channel: not implemented, said plainly).

Whole image by default, as the seeds ran; ``request.restrict_to_boxes`` keeps labels only
within the boxes (+ :data:`.tasks.REGION_CONTEXT_MM`) - lesions outside the boxes are lost.

Example:
    >>> with seed_steps_for(case, model, stages.progress) as seed:     # model: an NnUNetFolderModel
    ...     res = predict_nnunet_case(model, seed.files)
    >>> labels = finish_labels(seed, case.request, res.segmentation)
"""

from __future__ import annotations

import numpy as np

from typing import TYPE_CHECKING, Callable

from ..errors import InputError
from ..inference.nnunet_seed import SeedSteps
from ..models.types import NnUNetFolderModel
from .tasks import REGION_CONTEXT_MM

if TYPE_CHECKING:
    from .validate import ValidatedCase


def seed_steps_for(case: ValidatedCase, model: NnUNetFolderModel,
                   progress: Callable[[str, float, str], None] | None = None) -> SeedSteps:
    """A SeedSteps for ``case`` run with ``model`` (enter it with ``with``); InputError for outputs a crop cannot give."""
    request = case.request
    decl = model.declaration
    if decl.crop and (request.probabilities_path or request.uncertainty_path):
        raise InputError("this model runs on seed 004's head crop: probability and uncertainty maps are not "
                         "pasted back onto the CT grid", request.probabilities_path or request.uncertainty_path,
                         "leave --probabilities/--uncertainty out for this model")
    report = (lambda message: progress("inference", 0.0, message)) if progress else None
    return SeedSteps(decl, case.images, dict(request.input_paths), prior=case.prior, boxes=case.boxes,
                     progress=report)


def finish_labels(seed: SeedSteps, request, labels_on_first_file) -> np.ndarray:
    """nnU-Net's labels -> labels on the first input's grid, restricted to the boxes only when asked."""
    labels = seed.to_target(labels_on_first_file)
    if getattr(request, "restrict_to_boxes", False):
        labels = seed.restrict(labels, REGION_CONTEXT_MM)
    return labels
