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
from ..image import Image
from .outputs import OutputSet, Slices3, paste, to_target_block
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


#: how far background must lead at a model-grid voxel for its label to be settled (:func:`settled_background`);
#: far above the float32 round-off of an interpolated probability (~1e-7), far below a network's own margins
SETTLED_LEAD = 1e-4
#: target voxels (z, y, x) per chunk of :func:`labels_on_target`: small enough to skip most of a
#: 80 x 512 x 512 grid around scattered lesions, large enough that ITK's per-call cost stays small
CHUNK_VOX = (16, 64, 64)


def settled_background(probabilities: np.ndarray, output: str) -> np.ndarray:
    """Model-grid voxels (bool, z y x) whose label is background by a margin, for any resampling.

    Softmax: background leads every other channel by more than :data:`SETTLED_LEAD`. Sigmoid
    (seed 002's fusion, threshold 0.5): every map stays below 0.5 by as much. NaN is never settled.
    Linear interpolation is a convex combination of 8 neighbours, so a target voxel whose
    neighbours are all settled keeps background's lead: its label is background, computed or not.

    Example:
        >>> p = np.zeros((3, 2, 2, 2), np.float32); p[0] = 0.9; p[1] = 0.1
        >>> p[:, 1, 1, 1] = [0.4, 0.5, 0.1]                   # the network calls this voxel GTVp
        >>> int(settled_background(p, "softmax").sum()), int(settled_background(p[1:], "sigmoid").sum())
        (7, 7)
    """
    if output == "softmax":
        return probabilities[0] - probabilities[1:].max(axis=0) > SETTLED_LEAD
    return probabilities.max(axis=0) < 0.5 - SETTLED_LEAD


def _chunks(shape: tuple[int, ...], size: tuple[int, ...]):
    """Slices (z, y, x) tiling an array of ``shape`` in blocks of at most ``size``."""
    import itertools

    ranges = [[slice(a, min(a + n, dim)) for a in range(0, dim, n)] for dim, n in zip(shape, size)]
    return itertools.product(*ranges)


def labels_on_target(probabilities: np.ndarray, grid, target, fill, output: str) -> tuple[np.ndarray, Slices3]:
    """Labels of ``probabilities`` on ``grid`` moved linearly onto ``target``: (a block, its slices in ``target``).

    Every voxel of ``target`` outside the block is background. Equal, voxel for voxel, to moving
    the whole (K, z, y, x) map back and taking its argmax (:func:`labels_from`), but only the
    chunks of ``target`` (:data:`CHUNK_VOX`) that can hold a voxel whose label is not settled
    background (:func:`settled_background`) are resampled; the rest is background. Which chunks:
    the unsettled voxels grown by 2 (a linear neighbour is at most 1 voxel from the nearest
    voxel, plus 1 for round-off), moved to ``target`` by nearest neighbour. The map is cut to the
    unsettled voxels' bounding box plus 2 first: a target voxel with an unsettled neighbour has
    all its neighbours inside, any other is background whatever it reads.

    Why: on an 80 x 512 x 512 mid-RT image, moving the whole map back and its argmax took 2.1 of
    a 19.6 s run (issue 27); lesions, and the voxels a network hesitates on, are a small part of
    it, though scattered (one bounding box would cover most of the grid). A box-restricted run
    (a refinement above all) is settled outside its boxes: only the block around them is touched.
    A network unsure everywhere gets every chunk: never much slower than moving everything.
    """
    import SimpleITK as sitk
    from scipy import ndimage

    from ..postprocess import STRUCTURE_26, bounding_box
    from .outputs import covered_block

    nothing = (np.zeros((0, 0, 0), np.uint8), (slice(0, 0),) * 3)
    unsettled = ~settled_background(probabilities, output)
    if not unsettled.any():
        return nothing
    if grid.same_grid(target):   # no resampling: the unsettled voxels' own labels
        box = bounding_box(unsettled)
        block = np.zeros(tuple(s.stop - s.start for s in box), np.uint8)
        inside = unsettled[box]
        block[inside] = labels_from(probabilities[(slice(None), *box)][:, inside], output)
        return block, (box[0], box[1], box[2])
    box = bounding_box(unsettled, margin=2)
    cut = sub_grid(grid, box)
    covered = covered_block(target, cut)
    if covered is None:
        return nothing
    lo, hi = covered
    origin = (int(lo[2]), int(lo[1]), int(lo[0]))          # z y x
    at_block = tuple(slice(int(a), int(b) + 1) for a, b in zip(origin, hi[::-1]))
    near = ndimage.binary_dilation(unsettled[box], STRUCTURE_26, iterations=2).astype(np.uint8)
    needed = sitk.GetArrayFromImage(sitk.Resample(cut.with_array(near).to_sitk(), sub_grid(target, at_block).to_sitk(),
                                                  sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    sources = [cut.with_array(np.ascontiguousarray(channel[box], np.float32)).to_sitk() for channel in probabilities]
    block = np.zeros(needed.shape, np.uint8)
    for chunk in _chunks(needed.shape, CHUNK_VOX):
        if not needed[chunk].any():
            continue
        ref = sub_grid(target, tuple(slice(o + s.start, o + s.stop) for o, s in zip(origin, chunk))).to_sitk()
        values = np.stack([sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear,
                                                                float(fill[c])))
                           for c, src in enumerate(sources)])
        block[chunk] = labels_from(values, output)
    return block, (at_block[0], at_block[1], at_block[2])


def sub_grid(grid, sl):
    """The grid of ``grid.array[sl]`` (same spacing and direction, origin at its first voxel)."""
    from ..image import Image

    lo_ijk = np.array([sl[2].start, sl[1].start, sl[0].start], float)
    shape = tuple(s.stop - s.start for s in sl)
    return Image(np.zeros(shape, np.uint8), grid.spacing, tuple(grid.index_to_physical(lo_ijk)), grid.direction)


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
    block, sl = None, None
    if request.probabilities_path or labels_nearest:
        block, sl = to_target_block(probabilities, grid, target, fill)
    labels = np.zeros(target.array.shape, np.uint8)
    if labels_nearest:
        from ..image import resample_to

        on_grid = grid.with_array(labels_from(probabilities, output).astype(np.uint8))
        labels = resample_to(on_grid, target, label=True, default_value=0).array.astype(np.uint8)
        labels = clean_up(labels, target.spacing, post.get("min_volume_ml") or {},
                          keep_largest_gtvp=bool(post.get("keep_largest_gtvp", False)))
    else:   # labels only: resampled where they are not settled background (issue 27)
        lab, at = ((labels_from(block, output), sl) if block is not None and sl is not None
                   else labels_on_target(probabilities, grid, target, fill, output))
        if lab.size:   # every label outside the block is background: clean-up on the block alone
            labels[at] = clean_up(lab.astype(np.uint8), target.spacing, post.get("min_volume_ml") or {},
                                  keep_largest_gtvp=bool(post.get("keep_largest_gtvp", False)))
    written = target.with_array(labels.astype(np.uint8))
    if labels_hook is not None:  # refinement: the base labels outside the edited boxes, or only their crop
        hooked = labels_hook(labels)
        written = hooked if isinstance(hooked, Image) else target.with_array(hooked.astype(np.uint8))

    stages("write", "writing outputs")
    with OutputSet() as out:
        out.add_image("labels", written, request.output_path)
        if request.probabilities_path:
            assert block is not None and sl is not None     # moved back whole above
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
                         n_tiles=int(n_tiles), task=case.task, volumes_ml=volumes_ml(written.array, written.spacing),
                         boxes=list(boxes), registration=getattr(case, "registration", None))
