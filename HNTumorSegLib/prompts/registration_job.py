"""The background worker's second kind of job: register the pre-RT T2 (and its prior) onto the mid-RT T2.

Why: the Slicer module's "Register pre-RT to mid-RT" button must not freeze Slicer for the tens
of seconds a deformable registration takes, and must run *the same* registration as
``hntumorseg register`` (:mod:`.registration`: rigid then B-spline, one thread, fixed seeds,
labels warped per label at 0.5). So it goes through the worker like Apply does
(:mod:`HNTumorSegLib.runner` writes ``request.json``, ``python -m HNTumorSegLib.worker`` answers
with progress events and one result event): :class:`RegisterRequest` is that request (its JSON
carries ``"job": "register"``, which a :class:`~HNTumorSegLib.pipeline.request.SegmentRequest`
never does), :func:`run_register` the worker's side. The result's files are the registered image
(``image``), the registered label map on the mid-RT grid (``labels``) and the transform
(``transform``, ITK HDF5, mid-RT -> pre-RT points in LPS, as ``register --transform`` writes it);
the scene turns the transform into Slicer transform nodes (:mod:`HNTumorSegLib.scene.prior_registration`).

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
    >>> pair = make_registration_pair(seed=0, shape=(12, 40, 40), spacing=(3.5, 3.5, 6.0))
    >>> paths = {k: str(write_image(pair[k], f"{k}.nii.gz")) for k in ("fixed", "moving", "moving_mask")}
    >>> request = RegisterRequest(paths["fixed"], paths["moving"], paths["moving_mask"], output_dir="reg", mode="rigid")
    >>> RegisterRequest.from_dict(request.to_dict()) == request
    True
    >>> result = run_register(request, lambda stage, fraction, message="": None)
    >>> sorted(result.files), result.info["labels_ml"]["GTVp"] > 0
    (['image', 'labels', 'transform'], True)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import LABEL_NAMES
from ..errors import InputError
from ..image import check_labels, check_overlap, read_image, write_image
from ..protocol import ResultEvent
from ..vocab import RegistrationMode, did_you_mean

#: The ``job`` value of a registration request (a segmentation request has none).
JOB = "register"
#: Stage weights of the job's progress bar (the B-spline dominates, as in ``hntumorseg register``).
STAGES = (("load", 0.05), ("rigid", 0.2), ("affine", 0.0), ("deformable", 0.6), ("warp", 0.1), ("write", 0.05))


@dataclass
class RegisterRequest:
    """What the worker registers: image files on disk (the scene writes its volumes as NIfTI)."""

    fixed_path: str                 # mid-RT T2: the grid of every output
    moving_path: str                # pre-RT T2
    labels_path: str | None = None  # pre-RT prior label map (1 GTVp, 2 GTVn) on the pre-RT grid
    output_dir: str = "."
    mode: str = RegistrationMode.DEFORMABLE.value

    def __post_init__(self) -> None:
        self.mode = RegistrationMode.parse(self.mode, "registration mode").value

    def to_dict(self) -> dict:
        return {"job": JOB, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "RegisterRequest":
        """The request's JSON (with ``"job": "register"``); unknown or missing fields are an InputError."""
        known = [f.name for f in fields(cls)]
        body = {k: v for k, v in data.items() if k != "job"}
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise InputError(f"unknown registration request field(s) {', '.join(unknown)}"
                             f"{''.join(did_you_mean(k, known) for k in unknown)}", None, f"use only {', '.join(known)}")
        if not body.get("fixed_path") or not body.get("moving_path"):
            raise InputError("a registration request needs fixed_path and moving_path", None,
                             "give the mid-RT (fixed) and pre-RT (moving) images")
        return cls(**body)


def is_register_request(data: Any) -> bool:
    """True for the JSON of a :class:`RegisterRequest` (the worker's switch)."""
    return isinstance(data, dict) and data.get("job") == JOB


def run_register(request: RegisterRequest, progress: Callable[..., None]) -> ResultEvent:
    """Register, warp and write (the worker's side); the result event lists the files."""
    # SimpleITK's registration only here: the runner reads this module in Slicer's GUI process too
    from .registration import RegistrationSettings, register, warp_image, warp_labels, write_transform

    t0 = time.monotonic()
    out = Path(request.output_dir)
    progress("load", 0.0, "reading the images")
    fixed = read_image(request.fixed_path)
    moving = read_image(request.moving_path)
    labels = None
    if request.labels_path:
        labels = read_image(request.labels_path, label=True)
        check_labels(labels, path=request.labels_path)
        if not labels.array.any():
            raise InputError("the pre-RT prior holds no GTVp or GTVn voxel", None,
                             "choose the pre-RT contours and set their structures to GTVp / GTVn")
        check_overlap(labels, moving, "pre-RT prior", "pre-RT image", request.moving_path)
    progress("load", 1.0, "images read")
    reg = register(fixed, moving, RegistrationSettings(mode=request.mode), progress)
    progress("warp", 0.0, "resampling onto the mid-RT grid")
    warped = warp_image(moving, reg, fixed)
    moved = warp_labels(labels, reg, fixed) if labels is not None else None
    if moved is not None and not moved.array.any():
        raise InputError("the pre-RT contours land outside the mid-RT image after registration", None,
                         "check the two scans show the same region (or register rigidly)")
    progress("write", 0.0, "writing")
    files = {"image": str(write_image(warped, out / "registered_T2.nii.gz")),
             "transform": str(write_transform(reg.transform, out / "pre_to_mid.h5"))}
    info: dict[str, Any] = {"mode": request.mode, "rigid": reg.rigid_parameters}
    if moved is not None:
        files["labels"] = str(write_image(moved, out / "registered_prior.nii.gz"))
        counts = np.bincount(moved.array.ravel(), minlength=3)
        info["labels_ml"] = {LABEL_NAMES[v]: float(counts[v]) * fixed.voxel_volume_mm3 / 1000.0 for v in (1, 2)}
    progress("write", 1.0, "done")
    return ResultEvent(files=files, timings={"total": round(time.monotonic() - t0, 3)}, info=info)
