"""The pipeline's side of the seed steps around nnU-Net folders (:mod:`HNTumorSegLib.inference.nnunet_seed`).

:func:`seed_steps_for` turns a validated case into a :class:`~HNTumorSegLib.inference.nnunet_seed.SeedSteps`
(the folder's declaration, the images read by :mod:`.validate`, the prior, the user's boxes) and
refuses, before anything is written, what a cropped model cannot give yet (probability and
uncertainty maps would have to be pasted back channel by channel: not implemented, said plainly).

Whole image by default, as the seeds ran; ``request.restrict_to_boxes`` keeps labels only
within the boxes (+ :data:`.tasks.REGION_CONTEXT_MM`) - lesions outside the boxes are lost.

Example (command line; :func:`seed_steps_for` needs an ``NnUNetFolderModel``, a trained nnU-Net v2
results folder a docstring cannot build - Testing/test_models_published_gradientseg.py trains one in
GradientSegHNTS's layout and runs this with and without ``--restrict-to-boxes``)::

    $ hntumorseg segment --task midrt --model GRADIENTSEG_FOLDER --input T2=mid_T2.nii.gz \\
          --prior preRT_mask_registered.nii.gz --output labels.nii.gz --device cpu --restrict-to-boxes

which runs ``with seed_steps_for(case, model, stages.progress) as seed:`` ``res =
predict_nnunet_case(model, seed.nnunet_inputs)``, then ``finish_labels(seed, case.request, res.segmentation)``.
:func:`finish_labels` alone, on seed 003's steps for a phantom (labels 1 everywhere stand in for nnU-Net's):
    >>> import numpy as np
    >>> from HNTumorSegLib.inference.nnunet_seed import SeedSteps
    >>> from HNTumorSegLib.models.declaration import infer_declaration
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> phantom = make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2, prior = phantom["midRT_T2"], phantom["preRT_mask_registered"]
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, output_path="labels.nii.gz",
    ...                          restrict_to_boxes=True)
    >>> everywhere = np.ones(t2.array.shape, np.uint8)
    >>> with SeedSteps(infer_declaration({"0": "T2", "1": "gradient"}), {"T2": t2}, {"T2": "t2.nii.gz"},
    ...                prior=prior) as seed:
    ...     labels = finish_labels(seed, request, everywhere)
    >>> 0 < int(np.count_nonzero(labels)) < everywhere.size        # only within the boxes (+ context)
    True
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
