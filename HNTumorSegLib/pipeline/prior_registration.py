"""An unregistered mid-RT prior: the pre-RT contours registered onto the mid-RT T2 inside ``segment``.

Seed 003 starts from pre-RT contours *registered* onto the mid-RT scan (HNTS-MRG handed them
out); a clinic holds the pre-RT T2 and its planning contours in their own place (issue 23).
With ``--prior-image PRE_T2`` the prior (a label map, RTSTRUCT or SEG, read by
:mod:`HNTumorSegLib.dicom.contours_in`) is on the pre-RT grid; the run then

1. reads the pre-RT T2 and the prior on its grid (:func:`read_unregistered_prior`, part of the
   checks before any work: a prior off the pre-RT grid is refused, one line);
2. registers the pre-RT T2 onto the mid-RT T2 exactly as ``hntumorseg register`` does
   (:func:`HNTumorSegLib.prompts.registration.register`, the same defaults: rigid then
   deformable, one thread, seeded), reported as the ``register`` progress stage;
3. warps the prior (per-label linear + 0.5, :func:`~HNTumorSegLib.prompts.registration.warp_labels`)
   and hands it to seed 003's prompts as if it had been given registered;
4. keeps the quality figures (similarity before/after, Jacobian range, the fold flag) for the
   result, and with ``--save-registered DIR`` writes the registered image, the registered prior,
   the transform, the quality JSON and its picture with the run's other outputs (all or nothing,
   :class:`.outputs.OutputSet`; names in :data:`~.request.REGISTERED_FILES`).

Example (a small pair with a known transform, rigid only to keep it quick):
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> pair = make_registration_pair(seed=0, shape=(12, 40, 40), spacing=(3.5, 3.5, 6.0))
    >>> _ = write_image(pair["moving"], "pre.nii.gz"), write_image(pair["moving_mask"], "pre_mask.nii.gz")
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"}, output_path="out.nii.gz",
    ...                          prior_path="pre_mask.nii.gz", prior_image_path="pre.nii.gz", registration="rigid")
    >>> found = read_unregistered_prior(request, pair["fixed"])
    >>> found.prior.same_grid(found.image)
    True
    >>> done = register_prior(found, pair["fixed"], request.registration)
    >>> done.prior.same_grid(pair["fixed"]), done.quality["mode"], done.quality["jacobian"]["folded"]
    (True, 'rigid', False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..dicom.contours_in import ContourOptions, LabelInput, read_label_input
from ..dicom.read import read_volume
from ..errors import InputError
from ..image import Image, check_overlap
from ..vocab import RegistrationMode, Task
from .request import REGISTERED_FILES, SegmentRequest

Progress = Callable[[str, float, str], None]


@dataclass
class UnregisteredPrior:
    """The pre-RT T2 (``image``) and the prior on its grid (``prior``), as read before any work."""

    image: Image
    prior: Image
    found: LabelInput


@dataclass
class RegisteredPrior:
    """The prior on the mid-RT grid, the registered pre-RT T2, the transform and the quality figures."""

    prior: Image
    image: Image
    transform: Any
    quality: dict = field(default_factory=dict)


def check_registration_options(request: SegmentRequest, task: Task | str | None) -> None:
    """The option combinations: ``--prior-image`` needs ``--prior`` and the midrt task;
    ``--registration`` and ``--save-registered`` need ``--prior-image``; DIR is a folder."""
    if request.prior_image_path:
        if not request.prior_path:
            raise InputError("--prior-image is given without --prior (the pre-RT contours to register)",
                             request.prior_image_path, "add --prior PRE_CONTOURS (label map, RTSTRUCT or SEG)")
        if task != Task.MIDRT:
            raise InputError(f"--prior-image is used by the midrt task only (this run is {task or 'without a task'})",
                             request.prior_image_path, "leave --prior-image out, or use --task midrt")
    for flag, value in (("--registration", request.registration), ("--save-registered", request.registered_folder_path)):
        if value and not request.prior_image_path:
            raise InputError(f"{flag} needs --prior-image (the pre-RT T2 the prior is drawn on)", None,
                             f"add --prior-image PRE_T2, or drop {flag}")
    folder = request.registered_folder_path
    if folder and Path(folder).exists() and not Path(folder).is_dir():
        raise InputError("--save-registered names a file, not a folder", folder, "give a new or empty folder")


def read_unregistered_prior(request: SegmentRequest, reference: Image) -> UnregisteredPrior:
    """Read the pre-RT T2 (file or DICOM folder) and the prior onto its grid; a prior that lies
    elsewhere (e.g. already registered to the mid-RT T2) is refused, one line."""
    image_path, prior_path = str(request.prior_image_path), str(request.prior_path)   # both given: validate checked
    pre = read_volume(image_path, name="pre-RT image (--prior-image)", prefer_modality="MR")
    found = read_label_input(prior_path, "prior mask", grid=pre,
                             options=ContourOptions(request.prior_structures, request.prior_reference_path))
    prior = found.image
    if not prior.same_grid(pre):
        raise InputError(f"the prior (grid {prior.array.shape[::-1]}, spacing "
                         f"{tuple(round(float(s), 3) for s in prior.spacing)}) is not on the grid of the pre-RT image "
                         f"--prior-image (grid {pre.array.shape[::-1]})", request.prior_path,
                         "give the contours drawn on that pre-RT T2, or drop --prior-image if the prior is "
                         "already registered to the mid-RT T2")
    check_overlap(pre, prior, "pre-RT image", "prior mask", request.prior_path)
    if not np.any(prior.array):
        raise InputError("prior mask holds no lesion (no voxel labelled 1 or 2)", request.prior_path,
                         "give the pre-RT contours (1 GTVp, 2 GTVn), or --boxes")
    del reference   # the mid-RT T2: the registration decides where the pre-RT scan lies over it
    return UnregisteredPrior(pre, prior, found)


def register_prior(unregistered: UnregisteredPrior, fixed: Image, mode: RegistrationMode | str | None = None,
                   progress: Progress | None = None) -> RegisteredPrior:
    """Register the pre-RT T2 onto ``fixed`` (the mid-RT T2) and carry the prior over (module docstring).

    ``progress(stage, fraction, message)`` hears one stage, ``register``, whose fraction runs over
    the registration's own stages (rigid, deformable ...), the warp and the quality figures."""
    from ..prompts.registration import RegistrationSettings, register, warp_image, warp_labels
    from ..prompts.registration_quality import jacobian_range, similarity

    report: Progress = progress or _quiet
    mode = RegistrationMode.parse(mode or RegistrationMode.DEFORMABLE, "--registration")
    parts = {"rigid": (0.0, 0.2), "affine": (0.2, 0.2), "deformable": (0.2, 0.65)}
    if mode is RegistrationMode.RIGID:
        parts = {"rigid": (0.0, 0.85)}
    elif mode is RegistrationMode.AFFINE:
        parts = {"rigid": (0.0, 0.45), "affine": (0.45, 0.4)}

    def sub(stage: str, fraction: float, message: str = "") -> None:
        start, weight = parts.get(stage, (0.85, 0.0))
        report("register", start + weight * fraction, f"{stage}: {message}")

    report("register", 0.0, f"{mode.value} registration of the pre-RT T2 onto the mid-RT T2")
    reg = register(fixed, unregistered.image, RegistrationSettings(mode=mode), sub)
    report("register", 0.85, "warping the pre-RT image and contours")
    warped = warp_image(unregistered.image, reg, fixed)
    prior = warp_labels(unregistered.prior, reg, fixed)
    if not prior.array.any():
        raise InputError("the pre-RT contours land outside the mid-RT image after registration",
                         None, "check the two scans show the same region (or try --registration rigid)")
    report("register", 0.95, "similarity, Jacobian")
    quality = {"mode": mode.value, "similarity": similarity(reg, fixed, unregistered.image),
               "jacobian": jacobian_range(reg, fixed), "rigid": reg.rigid_parameters,
               "stages": [{k: v for k, v in st.items() if "parameters" not in k} for st in reg.stages],
               "labels_ml": _volumes(unregistered.prior, prior)}
    report("register", 1.0, summary_line(quality))
    return RegisteredPrior(prior, warped, reg.transform, quality)


def _quiet(stage: str, fraction: float, message: str = "") -> None:
    """The progress callback of a registration nobody watches."""


def _volumes(before: Image, after: Image) -> dict:
    from .. import LABEL_NAMES

    out = {}
    for value in (1, 2):
        ml = [float((img.array == value).sum()) * img.voxel_volume_mm3 / 1000.0 for img in (before, after)]
        out[LABEL_NAMES[value]] = {"pre_rt": round(ml[0], 3), "registered": round(ml[1], 3)}
    return out


def summary_line(quality: dict) -> str:
    """``deformable registration: MI 0.412 -> 0.803, Jacobian 0.61..1.52 (no fold)`` (a fold is said in capitals)."""
    mi, jac = quality["similarity"]["mutual_information"], quality["jacobian"]
    fold = (f"FOLDED in {100 * jac['folded_fraction']:.2f} % of voxels - check the registration"
            if jac["folded"] else "no fold")
    return (f"{quality['mode']} registration: MI {mi['before']:.3f} -> {mi['after']:.3f}, "
            f"Jacobian {jac['min']:.2f}..{jac['max']:.2f} ({fold})")


def add_registered_outputs(out: Any, registered: RegisteredPrior, fixed: Image, folder: str | os.PathLike) -> None:
    """Stage ``--save-registered``'s files in ``out`` (an :class:`.outputs.OutputSet`): they are
    committed with the labels, all or nothing."""
    from ..prompts.registration_quality import render_checkerboard

    folder = Path(folder)
    names = REGISTERED_FILES
    out.add_image("registered_image", registered.image, folder / names["registered_image"])
    out.add_image("registered_prior", registered.prior, folder / names["registered_prior"])
    out.add_written("transform", folder / names["transform"], lambda tmp: _write_transform(registered.transform, tmp))
    out.add_written("registration_picture", folder / names["registration_picture"],
                    lambda tmp: render_checkerboard(fixed, registered.image, tmp, registered.prior,
                                                    title=summary_line(registered.quality)))
    out.add_json("registration", registered.quality, folder / names["registration"])


def _write_transform(transform: Any, tmp: Path) -> None:
    """ITK picks the transform format by the file's suffix: write ``<tmp>.h5``, then move it onto ``tmp``."""
    import SimpleITK as sitk

    named = tmp.with_name(tmp.name + ".h5")
    try:
        sitk.WriteTransform(transform, str(named))
        os.replace(named, tmp)
    finally:
        if named.exists():
            named.unlink()

