"""The end of every run: probabilities on a grid -> labels on the first input's grid -> clean-up -> outputs.

One implementation for a single model (:mod:`.run`), an ensemble (:mod:`.ensemble_run`) and
seed 002's coarse-to-fine pipeline (:mod:`.coarse_to_fine`), so all write the same files in the
same way (all or nothing, :class:`.outputs.OutputSet`). Its own module so that those import it
without importing each other (imports point down, docs/design.md "Inner map").

Example (a phantom case validated for the demo model; hand-made softmax probabilities, a GTVp block):
    >>> import numpy as np
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> from HNTumorSegLib.pipeline.run import _Stages
    >>> from HNTumorSegLib.pipeline.validate import validate_request
    >>> phantom = make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> _ = write_image(phantom["midRT_T2"], "t2.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> case = validate_request(SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"},
    ...                                        prior_path="prior.nii.gz", output_path="labels.nii.gz"))
    >>> prob = np.zeros((3, *case.reference.array.shape), np.float32)    # background, GTVp, GTVn
    >>> prob[0] = 1.0
    >>> prob[:2, 2:6, 8:20, 8:20] = [[[[0.0]]], [[[1.0]]]]               # 4 x 12 x 12 voxels of GTVp
    >>> result = finish_from_probabilities(case, _Stages(None), prob, case.reference, case.reference,
    ...                                    "softmax", boxes=[])
    >>> result.files, result.volumes_ml                                  # 576 voxels of 0.9 x 0.9 x 3 mm
    ({'labels': 'labels.nii.gz'}, {'GTVp': 1.4, 'GTVn': 0.0})
"""

from __future__ import annotations

import numpy as np

from .. import LABEL_NAMES
from .outputs import OutputSet, paste, to_target_block
from .request import SegmentResult


def labels_from(prob: np.ndarray, output: str) -> np.ndarray:
    """Argmax of softmax probabilities, or seed 002's fusion of two sigmoid region maps."""
    from ..inference.ensemble import hard_labels
    from ..postprocess import fuse_binary_probabilities

    if output == "softmax":
        return hard_labels(prob, output)
    return fuse_binary_probabilities(prob[0], prob[1])  # seed 002's GTVp/GTVn region maps


def volumes_ml(labels: np.ndarray, spacing) -> dict[str, float]:
    """mL per label name."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {name: round(float(np.count_nonzero(labels == value)) * voxel_ml, 3) for value, name in LABEL_NAMES.items()}


#: background voxels kept around the content of :func:`crop_to_content` (linear interpolation reads 2 per axis)
CONTENT_MARGIN_VOX = 2


def content_slices(probabilities: np.ndarray, fill, margin: int = CONTENT_MARGIN_VOX) -> tuple[slice, slice, slice]:
    """Slices (z, y, x) of the voxels whose probabilities differ from ``fill``, plus ``margin`` of fill.

    Why: a box-restricted run (a refinement above all) is background outside a few boxes; moving
    the whole (K, z, y, x) map back to a 512 x 512 grid, its argmax and clean-up cost seconds
    (issue 27). Linear interpolation of the cut map gives the same labels as of the whole map:
    its margin is pure fill. A whole-image run gets the whole extent.

    Example:
        >>> p = np.zeros((2, 10, 10, 10), np.float32); p[0] = 1.0; p[:, 4, 5, 6] = [0.2, 0.8]
        >>> content_slices(p, [1.0, 0.0])
        (slice(2, 7, None), slice(3, 8, None), slice(4, 9, None))
    """
    fill = np.asarray(fill, np.float32).reshape(-1, 1, 1, 1)
    differs = np.any(probabilities != fill, axis=0)
    if not differs.any():
        return (slice(0, 1),) * 3   # all background: one voxel of it
    out = []
    for axis in range(3):
        idx = np.flatnonzero(differs.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, differs.shape[axis])))
    return out[0], out[1], out[2]


def sub_grid(grid, sl):
    """The grid of ``grid.array[sl]`` (same spacing and direction, origin at its first voxel)."""
    from ..image import Image

    lo_ijk = np.array([sl[2].start, sl[1].start, sl[0].start], float)
    shape = tuple(s.stop - s.start for s in sl)
    return Image(np.zeros(shape, np.uint8), grid.spacing, tuple(grid.index_to_physical(lo_ijk)), grid.direction)


def labels_block(probabilities: np.ndarray, grid, target, fill):
    """Probabilities of the target block that can hold labels, and its slices (:func:`content_slices`)."""
    sl = content_slices(probabilities, fill)
    cut = probabilities[(slice(None), *sl)]
    if grid.same_grid(target):
        return cut, sl
    return to_target_block(cut, sub_grid(grid, sl), target, fill)


def finish_from_probabilities(case, stages, probabilities: np.ndarray, grid, target,
                              output: str, boxes: list, uncertainty: np.ndarray | None = None,
                              n_tiles: int = 0, labels_nearest: bool = False, labels_hook=None) -> SegmentResult:
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
    post = card.postprocess or {}
    if request.probabilities_path or labels_nearest:
        block, sl = to_target_block(probabilities, grid, target, fill)
    else:   # labels only: just the target block where the network saw something (box-restricted runs, issue 27)
        block, sl = labels_block(probabilities, grid, target, fill)
    labels = np.zeros(target.array.shape, np.uint8)
    if labels_nearest:
        from ..image import resample_to

        on_grid = grid.with_array(labels_from(probabilities, output).astype(np.uint8))
        labels = resample_to(on_grid, target, label=True, default_value=0).array.astype(np.uint8)
        labels = clean_up(labels, target.spacing, post.get("min_volume_ml") or {},
                          keep_largest_gtvp=bool(post.get("keep_largest_gtvp", False)))
    elif block.size:   # every label outside the block is background: argmax and clean-up on the block alone
        labels[sl] = clean_up(labels_from(block, output).astype(np.uint8), target.spacing,
                              post.get("min_volume_ml") or {}, keep_largest_gtvp=bool(post.get("keep_largest_gtvp", False)))
    if labels_hook is not None:  # refinement: the base labels outside the edited boxes
        labels = labels_hook(labels)

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
        for add in getattr(case, "extra_outputs", ()):   # e.g. --save-registered (pipeline/prior_registration.py)
            add(out)
    stages.end()
    timings = dict(stages.timings)
    timings["total"] = stages.total()
    return SegmentResult(files=out.files, timings=timings, device=str(case.device), model_id=card.id,
                         n_tiles=int(n_tiles), task=case.task, volumes_ml=volumes_ml(labels, target.spacing),
                         boxes=list(boxes), registration=getattr(case, "registration", None))
