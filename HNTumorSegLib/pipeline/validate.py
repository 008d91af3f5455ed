"""Check a :class:`~.request.SegmentRequest` completely before any work, and load what it names.

Everything a user can get wrong is found here, each as one :class:`InputError` line naming
the file and the fix (exit code 2), before a single voxel is predicted or written:

* output paths: an image suffix, not equal to or resolving to any input (nor to each other; :mod:`HNTumorSegLib.protect`), a folder that
  exists or can be made and is writable;
* the device (an explicitly asked, absent device is a DeviceError);
* the model: folder or catalogue id, card, checkpoints, folds (ModelError from the loader);
* the task: known, and the model's own task when the model names one;
* input names: every name the model needs, no unknown one;
* every image: readable, 3D, finite (:func:`HNTumorSegLib.image.read_image`), and lying over the
  first input in physical space (:func:`HNTumorSegLib.image.check_overlap`); a PET that covers
  less than half of its CT is registered to it rigidly instead (``--align-pet``), applied only when
  the alignment gate passes, with a note in the progress (:mod:`HNTumorSegLib.prompts.pet_ct_registration`);
* the prior (mid-RT): a label map in {0, 1, 2} over the T2, holding at least one lesion;
* boxes: valid ``boxes.json`` whose every box touches the first input.

Example (a phantom mid-RT case and the bundled demo model):
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "t2.nii.gz")
    >>> _ = write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> case = validate_request(SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"},
    ...                                        prior_path="prior.nii.gz", output_path="out.nii.gz"))
    >>> case.reference_name, str(case.task), int(case.prior.array.max())
    ('T2', 'midrt', 2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..dicom.contours_in import ContourOptions, check_same_frame, read_label_input
from ..dicom.pet_units import UNCONVERTED, read_pet
from ..dicom.read import input_image_name, read_volume
from ..image import Image, check_overlap
from ..image_checks import check_extent
from ..protect import check_request
from ..vocab import Task
from .prior_registration import check_registration_options, read_unregistered_prior
from .request import SegmentRequest

if TYPE_CHECKING:   # imported when used: torch only when a prediction runs
    from torch import device as TorchDevice

    from ..models.types import LoadedModel, ModelLoader
    from ..prompts.boxes import LesionBox
    from .prior_registration import UnregisteredPrior

DICOM_MODALITY = {"CT": "CT", "PET": "PT", "T2": "MR"}  # input name -> modality, to pick a series in a study folder
WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


@dataclass
class ValidatedCase:
    """A request whose inputs were read and checked, with the model loaded."""

    request: SegmentRequest
    model: LoadedModel              # a CardModel, NnUNetFolderModel or EnsembleModel (models.types)
    task: Task | None
    images: dict[str, Image]        # in the model's input order; the first is the reference grid
    prior: Image | None = None
    boxes: list[LesionBox] = field(default_factory=list)   # from --boxes (empty if none)
    device: TorchDevice | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the progress (e.g. PET registered to the CT)
    tta: bool = False               # the request's --tta, or the model's default (default_tta)
    warnings: list[str] = field(default_factory=list)  # content/size warnings: progress stream and result (issue 11)
    unregistered_prior: UnregisteredPrior | None = None  # --prior-image: registered by run_segmentation (issue 23)
    registration: dict | None = None    # its quality figures, once registered
    extra_outputs: list = field(default_factory=list)   # callables out -> None, staged with the labels (OutputSet)
    alignment: dict | None = None   # the PET on the CT (--align-pet, the gate's figures: PetOnCt.to_dict; issue 24)

    @property
    def reference_name(self) -> str:
        return next(iter(self.images))

    @property
    def reference(self) -> Image:
        return self.images[self.reference_name]


def check_output_paths(request: SegmentRequest) -> None:
    """Outputs: image suffix, distinct from every input and each other, in a writable folder."""
    given = {"--output": request.output_path, "--probabilities": request.probabilities_path,
             "--uncertainty": request.uncertainty_path, "--save-boxes": request.boxes_output_path}
    outputs = {flag: path for flag, path in given.items() if path}
    for flag, out in outputs.items():
        name = Path(out).name.lower()
        if flag == "--save-boxes":
            if not name.endswith(".json"):
                raise InputError("boxes are written as JSON", out, "give a path ending in .json")
        elif not name.endswith(WRITABLE_SUFFIXES):
            raise InputError(f"{flag} needs an image file name", out,
                             f"end it with one of {', '.join(WRITABLE_SUFFIXES)}")
        folder = Path(out).expanduser().resolve().parent
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {flag} into {folder}", out, "choose a folder you can write to")
    check_request(request)  # protected paths (symlinks, hard links, case), regular files only


def default_tta(model: LoadedModel) -> bool:
    """TTA when the request does not say: on where the model's seed ran it (``model.default_tta``).

    nnU-Net results folders: on (``nnUNetv2_predict``'s default, which seeds 000, 001, 003 and
    004 used); ensemble cards: their ``"tta"`` (seed 002's released pipeline passes
    ``--disable_tta``); model cards: their ``"tta": true``, else off (the demo models).
    """
    return model.default_tta


def expected_inputs(model: LoadedModel) -> list[str]:
    """Input names the user gives for this model, first = output grid (T2, or CT; nnU-Net: channel 0;
    derived channels such as the gradient map are made, not given)."""
    return list(model.user_inputs)


def resolve_task(request: SegmentRequest, model: LoadedModel) -> Task | None:
    """The task: ``--task`` or the model's; a conflict or an unknown task is an InputError."""
    card_task = model.card.task
    task = request.task          # a Task (or None): SegmentRequest converted it
    if task and card_task and task != card_task:
        raise InputError(f"--task {task} does not match the model, which is for {card_task}", None,
                         f"use --task {card_task} or a {task} model")
    return task or card_task


def check_input_names(request: SegmentRequest, expected: list[str], model_name: str) -> None:
    unknown = [n for n in request.input_paths if n not in expected]
    if unknown:
        raise InputError(f"unknown input name {unknown[0]!r}: model {model_name} takes {', '.join(expected)}", None,
                         "name each --input after the model's inputs, e.g. --input " + f"{expected[0]}=PATH")
    missing = [n for n in expected if n not in request.input_paths]
    if missing:
        raise InputError(f"missing input {missing[0]!r}: model {model_name} takes {', '.join(expected)}", None,
                         f"add --input {missing[0]}=PATH")


def validate_request(request: SegmentRequest,
                     model_loader: ModelLoader | None = None) -> ValidatedCase:
    """Check everything (module docstring) and return the loaded case. Raises InputError on any problem.

    ``model_loader``: called like :func:`~HNTumorSegLib.models.loader.load_model`; a warm
    session (:mod:`HNTumorSegLib.session`) passes its cache so the model loads once.
    """
    from ..inference.devices import resolve_device
    from ..models.loader import load_model
    from ..prompts.boxes import box_to_index_slices, read_boxes
    from ..prompts.pet_ct_registration import pet_on_ct

    if not request.input_paths:
        raise InputError("no input image given", None, "add --input NAME=PATH (T2, or CT and PET)")
    check_output_paths(request)
    device = resolve_device(request.device)
    model = (model_loader or load_model)(request.model, folds=request.folds, device="cpu")  # request.folds: a Folds
    task = resolve_task(request, model)
    expected = expected_inputs(model)
    check_input_names(request, expected, model.card.id)

    images: dict[str, Image] = {}
    pet_notes: list[str] = []
    for name in expected:
        if name == "PET":   # the one PET path (dicom/pet_units.py, issue 24): SUVbw, the unit's source said
            pet = read_pet(request.input_paths[name], units=request.pet_units, suv_factor=request.suv_factor,
                           series=request.series.get(name), expected=model.card.pet_unit, card=True)
            images[name] = pet.image
            pet_notes += [pet.note] if pet.rule != UNCONVERTED else []   # a conversion is said; SUV as given is not
            continue
        images[name] = read_volume(request.input_paths[name], name=input_image_name(name), series=request.series.get(name),
                                   prefer_modality=DICOM_MODALITY.get(name))  # a file, or a DICOM folder
    for name, image in images.items():   # too thin for B-spline: refused before ITK sees it (issue 25)
        check_extent(image, request.input_paths[name], input_image_name(name))
    ref_name = expected[0]
    ref = images[ref_name]
    notes: list[str] = list(pet_notes)
    alignment = None
    for name in expected[1:]:
        if ref_name == "CT" and name == "PET":  # seed 004: a PET that lost its place is registered rigidly
            placed = pet_on_ct(ref, images[name], warn=notes.append, mode=request.align_pet,
                               path=request.input_paths[name])
            alignment = placed.to_dict()
            if placed.registered:  # otherwise the PET keeps its own grid (resampled once, later, onto the crop)
                images[name] = placed.pet
            continue
        check_overlap(ref, images[name], ref_name, name, request.input_paths[name])

    prior = None
    unregistered = None
    check_registration_options(request, task)
    if request.prior_image_path:   # the prior is on the pre-RT T2: registered later, in its own stage (issue 23)
        unregistered = read_unregistered_prior(request, ref)
        notes += [f"the prior is a DICOM {unregistered.found.summary()}"] if unregistered.found.structures else []
    elif request.prior_path:
        if task != "midrt":
            raise InputError(f"--prior is used by the midrt task only (this run is {task or 'without a task'})",
                             request.prior_path, "leave --prior out, or give --boxes")
        # a label map, an RTSTRUCT or a SEG (issue 23): a DICOM prior is read onto the series it references,
        # else onto the task image's grid when its contours lie on its slices
        found = read_label_input(request.prior_path, "prior mask", grid=ref, options=ContourOptions(
            request.prior_structures, request.prior_reference_path))
        prior = found.image
        if Path(request.input_paths[ref_name]).is_dir():   # DICOM contours on a DICOM T2: one frame of reference
            check_same_frame(found, request.prior_path, request.input_paths[ref_name], request.series.get(ref_name),
                             DICOM_MODALITY.get(ref_name), ref_name)
        if found.structures:   # say which structures were taken: the user checks the planning system's names
            notes.append(f"the prior is a DICOM {found.summary()}")
        check_overlap(ref, prior, ref_name, "prior mask", request.prior_path)
        if not np.any(prior.array):
            raise InputError("prior mask holds no lesion (no voxel labelled 1 or 2)", request.prior_path,
                             "give the pre-RT mask registered to the mid-RT T2, or --boxes")
    boxes: list[LesionBox] = []
    if request.boxes_path:
        boxes = read_boxes(request.boxes_path)
        if not boxes:
            raise InputError("boxes file holds no box", request.boxes_path, "draw at least one box, or leave --boxes out")
        for box in boxes:
            try:
                box_to_index_slices(box, ref)
            except InputError as exc:  # the message names the box; add the file it came from
                raise InputError(exc.problem, request.boxes_path,
                                 exc.fix or f"boxes are RAS mm and must lie over the {ref_name} image") from None
    if task == "midrt" and prior is None and unregistered is None and not boxes:
        raise InputError("the midrt task needs the registered pre-RT mask", None,
                         "add --prior PRE_RT_MASK.nii.gz (or --boxes boxes.json)")
    warnings = [w for img in images.values() for w in img.notes] + _patch_warnings(model, ref, ref_name)
    warnings += [n for n in notes if n not in warnings]   # e.g. the PET registered to the CT (seed 004)
    return ValidatedCase(request=request, model=model, task=task, images=images, prior=prior, boxes=boxes,
                         device=device, notes=notes,
                         tta=request.tta if request.tta is not None else default_tta(model), warnings=warnings,
                         unregistered_prior=unregistered, alignment=alignment)


def _patch_warnings(model: LoadedModel, ref: Image, ref_name: str) -> list[str]:
    """A volume smaller than one patch of the model (image_checks.patch_warnings); the card has the
    spacing and patch in the image's axis order for every form (nnU-Net's made from its plans)."""
    from ..image_checks import patch_warnings

    card = model.card
    try:
        return patch_warnings(ref, card.spacing_xyz, card.patch_size_zyx, f"the {ref_name} image")
    except (TypeError, ValueError):  # a model without a fixed patch: nothing to compare
        return []
