"""Per-task composition: from validated inputs to the images, boxes and region the network runs on.

Each task returns a :class:`Work`: the images on the *working grid* (the model's spacing), the
lesion boxes, an optional region (box-restricted inference) and the *target* grid the labels
are written on (the first input: T2 or CT).

* ``prert``: the T2; with ``--boxes`` only the boxes (+ :data:`REGION_CONTEXT_MM`) are segmented.
* ``midrt`` (seed 003): the registered pre-RT mask is put on the T2 grid (nearest neighbour)
  when it lies elsewhere; one box per lesion with a fixed margin of ``card.box_margin_vox``
  voxels per side (a validated card field, default 4: why 4 is in
  :mod:`HNTumorSegLib.models.card`; Slicer's "Boxes from prior" reads the same field);
  ``--boxes`` replaces the prior's boxes. The
  gradient map is computed inside the boxes (:mod:`.channels`); the whole image is segmented, as
  the seeds ran, unless ``--restrict-to-boxes`` (only tiles near the boxes run; lesions outside are lost).
* ``petct`` (seeds 002, 004): seed 004's head crop around the PET hot spot
  (:func:`~HNTumorSegLib.prompts.head_localisation.locate_head`), or with ``--boxes`` a crop
  around the boxes (+20 mm), made directly at the model's spacing when it is isotropic
  (no second resampling); the whole crop is segmented.
* no task (an nnU-Net folder or a card without one): every input resampled onto the first;
  the whole image (or the boxes' region) is segmented.

Images go to the working grid with linear interpolation (choice: B-spline rings at edges
and costs more; nnU-Net uses 3rd order in-plane, the difference is small beside the seeds'
voxel sizes).

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> from HNTumorSegLib.pipeline.validate import validate_request
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "t2.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> case = validate_request(SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"},
    ...                                        prior_path="prior.nii.gz", output_path="out.nii.gz"))
    >>> work = prepare_work(case)
    >>> bool(np.allclose(work.images["T2"].spacing, case.model.card.spacing_xyz))   # on the model's grid
    True
    >>> [box.name for box in work.boxes]          # mid-RT: one box per lesion of the prior
    ['GTVp-1', 'GTVn-1', 'GTVn-2']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..image import Image, resample_to, resample_to_spacing
from ..prompts.boxes import LesionBox, boxes_from_mask, boxes_to_mask
from ..vocab import InputRole, Task
from ..warm_cache import cached, derived_key
from .validate import ValidatedCase

#: context kept around user or prior boxes in box-restricted runs (mm): a lesion that grew a
#: little beyond its box is still segmented (seed 003 Fig. 3 shows the cost of cutting at the box).
#: This is what is *kept* (output); how much image a box-made PET/CT crop *shows* the network is a
#: different number with its own name, :data:`HNTumorSegLib.prompts.extents.BOX_CROP_SURROUND_MM`.
REGION_CONTEXT_MM = 5.0


@dataclass
class Work:
    """What the network runs on (see the module docstring)."""

    images: dict[str, Image]          # on the working grid, model input order
    target: Image                     # the output grid (first input)
    boxes: list[LesionBox] = field(default_factory=list)
    region: np.ndarray | None = None  # bool mask on the working grid (box-restricted mode)
    notes: list[str] = field(default_factory=list)

    @property
    def grid(self) -> Image:
        return next(iter(self.images.values()))


def to_spacing(image: Image, spacing: Sequence[float] | None) -> Image:
    """``image`` on a grid of the same extent at ``spacing`` (x, y, z); unchanged when equal or None."""
    if spacing is None or np.allclose(image.spacing, spacing, rtol=1e-4, atol=1e-4):
        return image
    x, y, z = (float(s) for s in spacing)
    return cached(derived_key(image, "spacing", (x, y, z)),   # a warm session resamples an unchanged input once
                  lambda: resample_to_spacing(image, (x, y, z), interpolator="linear"))


def _on_grid(images: dict[str, Image], grid: Image) -> dict[str, Image]:
    where = (grid.array.shape, grid.spacing, grid.origin, tuple(np.asarray(grid.direction).ravel()))

    def onto(img: Image) -> Image:   # a warm session moves an unchanged input once (issue 27)
        if img.same_grid(grid):
            return img
        return cached(derived_key(img, "onto", where), lambda: resample_to(img, grid, interpolator="linear"))

    return {name: onto(img) for name, img in images.items()}


def _working_images(images: dict[str, Image], spacing) -> dict[str, Image]:
    first = next(iter(images.values()))
    grid = to_spacing(first, spacing)
    return _on_grid(images, grid)


def _region(boxes: list[LesionBox], grid: Image, restrict: bool = True) -> np.ndarray | None:
    """The box-restricted region, only with ``--restrict-to-boxes`` (whole image by default, as the seeds ran)."""
    return boxes_to_mask(boxes, grid, margin_mm=REGION_CONTEXT_MM) if boxes and restrict else None


def prepare_midrt(case: ValidatedCase) -> Work:
    card = case.model.card
    t2 = case.reference
    boxes = list(case.boxes)
    notes = []
    if not boxes and case.prior is not None:   # validate_request: a midrt case has a prior or boxes
        prior = case.prior if case.prior.same_grid(t2) else resample_to(case.prior, t2, label=True)
        margin = card.box_margin_vox
        boxes = boxes_from_mask(prior, margin_vox=margin)
        notes.append(f"{len(boxes)} box(es) from the prior, margin {margin} voxels")
    images = _working_images(case.images, card.spacing_xyz)
    return Work(images, t2, boxes, _region(boxes, next(iter(images.values())), case.request.restrict_to_boxes), notes)


def prepare_petct(case: ValidatedCase) -> Work:
    from ..prompts.head_localisation import crop_around_boxes, locate_head

    card = case.model.card
    ct, pet = case.images[InputRole.CT], case.images[InputRole.PET]
    spacing = card.spacing_xyz
    iso = float(min(spacing)) if spacing else 1.0
    if case.boxes:
        crop = crop_around_boxes(ct, pet, case.boxes, spacing=iso)
        note = "crop around the boxes"
    else:
        crop = locate_head(ct, pet, spacing=iso)
        note = "head crop around the PET hot spot" if crop.found_hot_region else \
            "no PET hot spot found: crop at the top of the scan"
    images: dict[str, Image] = {InputRole.CT: crop.ct, InputRole.PET: crop.pet}
    images.update({k: v for k, v in case.images.items() if k not in images})  # extra channels, if any
    images = _working_images(images, spacing)
    return Work(images, ct, list(case.boxes), None, [*case.notes, note])


def prepare_generic(case: ValidatedCase) -> Work:
    images = _working_images(case.images, case.model.card.spacing_xyz)
    boxes = list(case.boxes)
    return Work(images, case.reference, boxes, _region(boxes, next(iter(images.values())), case.request.restrict_to_boxes))


def prepare_work(case: ValidatedCase) -> Work:
    """The :class:`Work` of ``case``'s task (module docstring)."""
    if case.task == Task.MIDRT:
        return prepare_midrt(case)
    if case.task == Task.PETCT and InputRole.CT in case.images and InputRole.PET in case.images:
        return prepare_petct(case)
    return prepare_generic(case)
