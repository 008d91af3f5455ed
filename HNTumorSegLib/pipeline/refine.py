"""Refinement: re-segment only the edited lesion boxes of an earlier result; every other voxel stays.

The clinician moved or resized one box (say ``GTVn-2``) and wants that lesion again, in about a
second, without losing the hand edits made elsewhere. A refinement is two steps (issue 17):

1. **The edited boxes alone are segmented**: the request runs as a full run whose boxes are
   only the edited ones (picked by name from the request's ``boxes.json``, or from the prior's
   boxes for mid-RT), restricted to them (``restrict_to_boxes``), so only the tiles around
   them run (box-restricted region tiling of
   :mod:`HNTumorSegLib.inference`: one or two tiles for a node) and seed 003's gradient map is
   recomputed for the edited boxes only (it is computed per box on the box's own crop,
   :mod:`HNTumorSegLib.prompts.gradient_map`). Inside the box this *is* the full run of the
   request restricted to that box, voxel for voxel (same code path). Choice: the other boxes'
   gradient prompts are left out of the edited box's tiles; a full run of all boxes would run
   every tile touching the box (18 of the demo case's 27 tiles for one node, measured while
   designing this: 12 s on the loaded 2-core machine), far from a second, for a difference
   limited to the tiles' edges.
2. **The result is merged into the base label map** (:func:`merge_boxes`): inside an edited box
   the new prediction replaces the base, voxel for voxel; outside every edited box the base is
   kept byte for byte. Choices where the issue leaves room:

   * the box's label decides the lesion's label: a voxel the network calls lesion (GTVp *or*
     GTVn) inside a ``GTVn`` box becomes GTVn (the user said what the box holds; a crop around
     one node may look like a primary to the network);
   * a box moved onto another lesion's voxels replaces them inside the box only: where the new
     prediction is background they become background, the rest of that lesion is untouched;
   * the card's clean-up (small components) runs on the new prediction before it is cut to the
     box, as in a full run.

Every task works the same way (mid-RT: gradient map of the edited box; pre-RT: the box's
region; PET/CT: the crop around the edited box). nnU-Net results folders and ensembles run
their own paths: their labels go to a temp file and the same merge follows.

**Box only** (``RefineSpec.box_only``, issue 27): a caller that uses only the edited boxes
(Slicer's "Update while editing") gets only them back and need not hand over a base: the output
file holds the crop over the bounding box (union) of the edited boxes on the reference grid -
same spacing and direction, origin at the crop's first voxel, so the file says where it lies
(any NIfTI reader places it; no extra field in the result). Inside each edited box the new
prediction (as above), elsewhere in the crop the base labels when a base is given, else 0.
``volumes_ml`` is then of the crop (the labels in the file). Why: at 80x512x512 the whole map
was written (0.06 s) and the base exported in Slicer, written, read and checked (0.07 s) for a
box of a few thousand voxels.

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.run import run_segmentation
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask, write_boxes
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "mid.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> _ = run_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"},
    ...                                     prior_path="prior.nii.gz", output_path="labels_v1.nii.gz"))
    >>> boxes = boxes_from_mask(phantom["preRT_mask_registered"], margin_vox=4)   # the user then moves GTVn-2
    >>> _ = write_boxes(boxes, "boxes_v2.json")
    >>> spec = RefineSpec.from_dict({"base_labels_path": "labels_v1.nii.gz", "boxes": ["GTVn-2"]})
    >>> res = refine_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"},
    ...                                          boxes_path="boxes_v2.json", output_path="labels_v2.nii.gz"),
    ...                           spec)
    >>> res.n_tiles        # the tiles around GTVn-2 only (a whole run took 27)
    1
    >>> crop = refine_segmentation(SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"},
    ...                                           boxes_path="boxes_v2.json", output_path="gtvn2.nii.gz"),
    ...                            {"boxes": ["GTVn-2"], "box_only": True})      # no base: only the box back
    >>> box = box_to_index_slices(boxes[2], read_image("labels_v2.nii.gz"))
    >>> bool((read_image("gtvn2.nii.gz").array == read_image("labels_v2.nii.gz").array[box]).all())
    True
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..image import Image, check_labels, read_image, resample_to
from ..inference.tiling import Slices3, tiles_bounding_box
from ..protect import check_request
from ..prompts.boxes import LesionBox, boxes_from_mask, box_to_index_slices
from ..vocab import ModelKind, did_you_mean
from ..warm_cache import cached, file_identity
from .finish import sub_grid
from .outputs import OutputSet
from .request import SegmentRequest, SegmentResult
from .run import ModelLoader, Progress, _Stages, _volumes_ml, run_validated
from .validate import ValidatedCase, validate_request

#: How messages name the base label map (an input of the refinement, protected from its outputs).
BASE_LABELS_NAME = "the base label map (refine.base_labels_path)"
#: Keys of the ``refine`` object written before issue 21, still read: old key -> field (= new key).
OLD_REFINE_KEYS = {"base_labels": "base_labels_path"}


@dataclass(frozen=True)
class RefineSpec:
    """What to refine: the earlier label map, the names of the edited boxes, and what comes out.

    The session's request line carries it as ``"refine": {"base_labels_path": PATH, "boxes": ["GTVn-2"]}``:
    each JSON key is the field of the same name (:data:`REFINE_KEYS`); the older key
    ``base_labels`` is still read (:data:`OLD_REFINE_KEYS`) so earlier request lines keep working.

    ``box_only`` (key ``"box_only": true``): the output holds only the crop over the edited boxes
    (:func:`refine_segmentation`), and ``base_labels_path`` may be left out (inside an edited box
    the new prediction decides every voxel). Without it the base is required.

    Example:
        >>> RefineSpec.from_dict({"boxes": ["GTVn-2"], "box_only": True})
        RefineSpec(base_labels_path=None, boxes=('GTVn-2',), box_only=True)
        >>> RefineSpec.from_dict({"boxes": ["GTVn-2"], "box_only": True}).to_dict()
        {'base_labels_path': None, 'boxes': ['GTVn-2'], 'box_only': True}
    """

    base_labels_path: str | None
    boxes: tuple[str, ...]
    box_only: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> "RefineSpec":
        """Read the ``refine`` object; anything malformed is one InputError line."""
        if isinstance(data, RefineSpec):
            return data
        if not isinstance(data, dict):
            raise InputError("'refine' must be an object", None,
                             'write "refine": {"base_labels_path": "labels.nii.gz", "boxes": ["GTVn-2"]}')
        both = [old for old, new in OLD_REFINE_KEYS.items() if old in data and new in data]
        if both:
            raise InputError(f"refine gives both {both[0]!r} and {OLD_REFINE_KEYS[both[0]]!r}", None,
                             f"keep only {OLD_REFINE_KEYS[both[0]]!r}")
        data = {OLD_REFINE_KEYS.get(k, k): v for k, v in data.items()}
        unknown = sorted(set(data) - set(REFINE_KEYS))
        if unknown:
            hints = "".join(did_you_mean(k, REFINE_KEYS) for k in unknown)
            raise InputError(f"unknown refine field(s) {', '.join(unknown)}{hints}", None,
                             f"use only {', '.join(REFINE_KEYS)}")
        base, boxes, box_only = data.get("base_labels_path"), data.get("boxes"), box_only_flag(data)
        if not (box_only and base is None) and (not base or not isinstance(base, str)):
            raise InputError("refine needs 'base_labels_path', the label map to refine", None,
                             "give the path of the earlier result (labels.nii.gz)")
        if (not isinstance(boxes, list) or not boxes or not all(isinstance(b, str) and b.strip() for b in boxes)):
            raise InputError("refine needs 'boxes', a list of box names", base, 'write e.g. "boxes": ["GTVn-2"]')
        if len(set(boxes)) != len(boxes):
            raise InputError("a box is named twice in 'boxes'", base, "name each edited box once")
        return cls(None if base is None else str(base), tuple(b.strip() for b in boxes), box_only)

    def to_dict(self) -> dict:
        """The ``refine`` object: every field under its own name (:data:`REFINE_KEYS`)."""
        return {"base_labels_path": self.base_labels_path, "boxes": list(self.boxes), "box_only": self.box_only}


def box_only_flag(refine: dict) -> bool:
    """The ``box_only`` field of a ``refine`` object (False when absent); InputError unless a JSON bool.

    One check for the request file (:meth:`RefineSpec.from_dict`) and the HTTP server, which needs the
    value before the spec is built (it decides whether the parent's labels are copied).

        >>> box_only_flag({"boxes": ["GTVn-2"]}), box_only_flag({"box_only": True})
        (False, True)
    """
    value = refine.get("box_only", False)
    if not isinstance(value, bool):
        raise InputError(f"refine field 'box_only' must be true or false, not {value!r}", None,
                         'set "box_only": true to get only the crop over the edited boxes')
    return value


#: The keys of the ``refine`` object: the fields of :class:`RefineSpec`, so key and field cannot differ.
REFINE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RefineSpec))


def pick_boxes(boxes: Sequence[LesionBox], names: Sequence[str], path: str | None = None) -> list[LesionBox]:
    """The boxes called ``names``, in that order; an unknown name is an InputError listing the others."""
    by_name = {b.name: b for b in boxes}
    out = []
    for name in names:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise InputError(f"no box named {name!r} in this request (boxes: {known}){did_you_mean(name, list(by_name))}",
                             path, "name a box of the request's boxes.json (or of the prior: GTVp-1, GTVn-1 ...)")
        out.append(by_name[name])
    return out


def merge_boxes(base_zyx: np.ndarray, new_zyx: np.ndarray, boxes: Sequence[tuple[Slices3, int]]) -> np.ndarray:
    """The base labels with each box's voxels replaced by the new prediction, in the box's label.

    ``boxes``: ``(slices on the label grid, label)`` pairs, applied in order (a later box wins
    where edited boxes overlap). Outside every box the result is ``base_zyx`` unchanged.

    Example:
        >>> base = np.zeros((1, 1, 6), np.uint8); base[0, 0, :3] = 2     # GTVn on the left
        >>> new = np.zeros((1, 1, 6), np.uint8); new[0, 0, 2:5] = 1      # the new prediction, moved right
        >>> merge_boxes(base, new, [((slice(0, 1), slice(0, 1), slice(1, 6)), 2)]).tolist()   # the edited box
        [[[2, 0, 2, 2, 2, 0]]]
    """
    if base_zyx.shape != new_zyx.shape:
        raise ValueError(f"label maps differ in shape: {base_zyx.shape} vs {new_zyx.shape}")
    out = np.array(base_zyx, dtype=np.uint8, copy=True)
    for sl, label in boxes:
        out[sl] = np.where(new_zyx[sl] > 0, np.uint8(label), np.uint8(0))
    return out


def read_base_labels(path: str, case: ValidatedCase) -> Image:
    """The base label map, checked: labels {0, 1, 2} on the first input's grid."""
    ident = file_identity(path)   # unchanged between refinements: decoded once in a session
    base = cached(ident and ("read", ident, True, "base label map"),
                  lambda: read_image(path, label=True, name="base label map"))
    check_labels(base, path=path, name="base label map")
    if not base.same_grid(case.reference):
        raise InputError(f"the base label map does not lie on the {case.reference_name} image's grid",
                         path, "give the label map of an earlier run on this very image")
    return base


class BoxRefinement:
    """The edited boxes on the reference ``grid`` and the base labels (None: a box-only refinement
    without a base); :meth:`merge` makes the whole map (the pipeline's ``labels_hook``), :meth:`crop`
    the box-only output."""

    def __init__(self, edited: Sequence[LesionBox], grid: Image, base: Image | None):
        self.edited, self.grid, self.base = list(edited), grid, base
        self.boxes = [(box_to_index_slices(b, grid), int(b.label)) for b in self.edited]

    def merge(self, new_zyx: np.ndarray) -> np.ndarray:
        """Base labels (or 0) outside the edited boxes, the new prediction inside (in the box's label)."""
        base = self.base.array if self.base is not None else np.zeros(new_zyx.shape, np.uint8)
        return merge_boxes(base, new_zyx, self.boxes)

    @property
    def crop_slices(self) -> Slices3:
        """The bounding box (union) of the edited boxes on the reference grid, (z, y, x) slices."""
        return tiles_bounding_box([sl for sl, _ in self.boxes])

    def crop(self, new_zyx: np.ndarray) -> Image:
        """:meth:`merge` over :attr:`crop_slices` only, as an image placed there: the grid's spacing and
        direction, origin at the crop's first voxel (any NIfTI reader puts it where it belongs)."""
        c = self.crop_slices
        base = self.base.array[c] if self.base is not None else np.zeros(new_zyx[c].shape, np.uint8)

        def shifted(sl: Slices3) -> Slices3:   # the box's slices on the crop
            z, y, x = (slice(s.start - o.start, s.stop - o.start) for s, o in zip(sl, c))
            return z, y, x

        return sub_grid(self.grid, c).with_array(merge_boxes(base, new_zyx[c], [(shifted(sl), label)
                                                                                for sl, label in self.boxes]))


def case_boxes(case: ValidatedCase) -> list[LesionBox]:
    """The request's boxes: the user's, else (mid-RT) the prior's with the card's margin, as the pipeline makes them."""
    if case.boxes or case.prior is None:
        return list(case.boxes)
    prior = case.prior if case.prior.same_grid(case.reference) else resample_to(case.prior, case.reference, label=True)
    return boxes_from_mask(prior, margin_vox=case.model.card.box_margin_vox)


def _new_prediction(case: ValidatedCase, stages: _Stages, low_memory: bool) -> tuple[SegmentResult, np.ndarray]:
    """nnU-Net folders and ensembles: the run of the edited boxes writes its labels on the whole grid
    into a temp folder (removed), read back here; :func:`_write_refined` then writes the refined file.
    (A model card's run hands its labels to the refinement's hook instead: nothing is written twice.)"""
    temp = Path(tempfile.mkdtemp(prefix="hntumorseg-refine-"))
    try:
        request = dataclasses.replace(case.request, output_path=str(temp / "labels.nii"), boxes_output_path=None)
        full = run_validated(dataclasses.replace(case, request=request), stages, low_memory=low_memory)
        new = read_image(full.files["labels"], label=True).array
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return full, new


def _write_refined(case: ValidatedCase, stages: _Stages, refinement: BoxRefinement, box_only: bool,
                   low_memory: bool) -> SegmentResult:
    """The refined labels at ``request.output_path``: the whole merged map, or (``box_only``) its crop."""
    full, new = _new_prediction(case, stages, low_memory)
    stages("write", "writing the refined labels")
    labels = refinement.crop(new) if box_only else case.reference.with_array(refinement.merge(new))
    with OutputSet() as out:
        out.add_image("labels", labels, case.request.output_path)
        if case.request.boxes_output_path:
            out.add_json("boxes", [b.to_dict() for b in full.boxes], case.request.boxes_output_path)
    stages.end()
    timings = dict(stages.timings, total=stages.total())
    return dataclasses.replace(full, files=out.files, timings=timings,
                               volumes_ml=_volumes_ml(labels.array, labels.spacing))


def refine_segmentation(request: SegmentRequest, spec: RefineSpec | dict, progress: Progress | None = None,
                        low_memory: bool = False, model_loader: ModelLoader | None = None) -> SegmentResult:
    """Refine the named boxes of ``spec.base_labels_path`` (module docstring); writes ``request.output_path``.

    Same contract as :func:`~.run.run_segmentation` (every mistake an InputError before any
    output); ``SegmentResult.regions`` lists the refined boxes. With ``spec.box_only`` the file
    holds only the crop over the edited boxes, placed by its origin (module docstring), and
    ``volumes_ml`` is of that crop.
    """
    spec = RefineSpec.from_dict(spec)
    # the base labels are read too: no output may be them (a hand-edited map, issue 22), before any work
    check_request(request, extra_inputs={BASE_LABELS_NAME: spec.base_labels_path or ""})
    if request.probabilities_path or request.uncertainty_path:
        raise InputError("a refinement writes labels only", request.probabilities_path or request.uncertainty_path,
                         "leave probabilities and uncertainty out of refinement requests")
    stages = _Stages(progress)
    stages("load", "reading inputs and the model")
    case = validate_request(request, model_loader=model_loader)
    base = read_base_labels(spec.base_labels_path, case) if spec.base_labels_path else None
    edited = pick_boxes(case_boxes(case), spec.boxes, request.boxes_path)
    refinement = BoxRefinement(edited, case.reference, base)
    # the edited boxes alone, and only around them (restrict_to_boxes), are segmented
    alone = dataclasses.replace(case, boxes=edited, request=dataclasses.replace(request, restrict_to_boxes=True))
    if case.model.kind in (ModelKind.NNUNET, ModelKind.ENSEMBLE):
        result = _write_refined(alone, stages, refinement, spec.box_only, low_memory)
    else:
        result = run_validated(alone, stages, low_memory=low_memory,
                               labels_hook=refinement.crop if spec.box_only else refinement.merge)
    result.regions = [b.to_dict() for b in edited]
    return result
