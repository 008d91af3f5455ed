"""What to segment and where to write it: :class:`SegmentRequest`, and what came out: :class:`SegmentResult`.

One request, three spellings, all made here so they never drift apart (like SlicerNNUnet's
parameter dataclass):

* the ``hntumorseg segment`` command line (:meth:`SegmentRequest.to_argv`,
  :meth:`SegmentRequest.from_args`),
* the worker's ``request.json`` (:meth:`SegmentRequest.to_dict` / :meth:`SegmentRequest.from_dict`,
  docs/internal-api.md "request.json"),
* the Python object the pipeline runs (:func:`HNTumorSegLib.pipeline.run_segmentation`).

Example:
    >>> req = SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"}, prior_path="pre_mask.nii.gz",
    ...                      output_path="out/labels.nii.gz", task="midrt")
    >>> req.to_argv()[:4]
    ['segment', '--task', 'midrt', '--model']
    >>> SegmentRequest.from_dict(req.to_dict()) == req
    True

Values are converted when the request is made (``task`` -> :class:`~HNTumorSegLib.vocab.Task`,
``device`` -> :func:`~HNTumorSegLib.vocab.parse_device`, ``folds`` ->
:class:`~HNTumorSegLib.folds.Folds`), so a typo or a renamed field fails at construction,
in the caller's process, not later inside the worker. Every field holding a file path ends
in ``_path`` (``input_paths`` maps input names to paths); the ``request.json`` keys are the
field names (docs/internal-api.md, "request.json").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import write_json_atomic
from ..folds import Folds, parse_folds
from ..vocab import AlignPet, Checkpoint, PetUnit, ProgressMode, RegistrationMode, Task, did_you_mean, parse_device

#: Fields holding one optional file path (``None`` = not given / not wanted).
PATH_FIELDS = ("prior_path", "prior_reference_path", "prior_image_path", "registered_folder_path", "boxes_path", "probabilities_path", "uncertainty_path",
               "boxes_output_path")
REQUIRED_FIELDS = ("model", "input_paths", "output_path")
#: What ``--save-registered DIR`` writes (role -> file name in DIR; pipeline/prior_registration.py).
REGISTERED_FILES = {"registered_image": "pre_T2_registered.nii.gz", "registered_prior": "prior_registered.nii.gz",
                    "transform": "pre_to_mid.h5", "registration": "registration.json",
                    "registration_picture": "registration.png"}


def parse_input_pair(text: str) -> tuple[str, str]:
    """``"T2=case/mid.nii.gz"`` -> ``("T2", "case/mid.nii.gz")``; anything else is an InputError."""
    name, sep, path = str(text).partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise InputError(f"--input {text!r} is not NAME=PATH", None, "write e.g. --input T2=mid_T2.nii.gz")
    return name, path


def parse_series_args(texts: list[str] | None, input_names: list[str]) -> dict[str, str]:
    """``--series UID`` (the first input's) or ``--series NAME=UID`` (repeatable) -> ``{name: uid}``."""
    out: dict[str, str] = {}
    for text in texts or []:
        name, sep, uid = str(text).partition("=")
        name, uid = (name.strip(), uid.strip()) if sep else (input_names[0] if input_names else "", name.strip())
        if not uid or name not in input_names:
            raise InputError(f"--series {text!r} names no input", None,
                             f"write --series UID (for {input_names[0] if input_names else 'the first input'}) "
                             f"or --series NAME=UID with NAME one of {', '.join(input_names)}")
        out[name] = uid
    return out


@dataclass
class SegmentRequest:
    """One segmentation job (docs/design.md ``hntumorseg segment`` contract).

    ``input_paths`` maps input names (``T2``; ``CT`` and ``PET``; or an nnU-Net folder's
    ``channel_names``) to image paths, in the order given: the first input's grid is the
    output grid. ``model`` is a model folder or a catalogue id. ``folds`` is a
    :class:`~HNTumorSegLib.folds.Folds` (anything :func:`~HNTumorSegLib.folds.parse_folds`
    accepts is converted). ``tta``: ``None`` (the default) takes the model's own default -
    on where its seed ran test-time mirroring (nnU-Net folders, as ``nnUNetv2_predict``; an
    ensemble card's ``"tta"``; a card's ``"tta": true``), off otherwise; on a CPU mirroring
    costs 8x the inference time. ``boxes_output_path`` is where to write the boxes
    used (mid-RT: those made from the prior); ``uncertainty_path`` where to write the
    voxel-wise uncertainty map (``None``: none is computed).
    """

    model: str
    input_paths: dict[str, str]
    output_path: str
    task: Task | None = None
    prior_path: str | None = None
    boxes_path: str | None = None
    device: str = "auto"
    folds: Folds = field(default_factory=Folds.all)
    tta: bool | None = None   # None: the model's default (validate.default_tta)
    probabilities_path: str | None = None
    uncertainty_path: str | None = None
    boxes_output_path: str | None = None
    restrict_to_boxes: bool = False   # labels only within the boxes (+ context); lesions outside are lost
    series: dict[str, str] = field(default_factory=dict)  # input name -> SeriesInstanceUID (DICOM folder inputs)
    # a prior given as an RTSTRUCT or SEG (dicom.contours_in): --structures, and --reference (its series' folder)
    prior_structures: str | None = None
    prior_reference_path: str | None = None
    # an unregistered prior (issue 23): the pre-RT T2 it was drawn on, registered onto the T2 first
    # (pipeline/prior_registration.py); the mode (None: deformable); a folder keeping the registered image and mask
    prior_image_path: str | None = None
    registration: RegistrationMode | None = None
    registered_folder_path: str | None = None
    # --align-pet (issue 24): when a PET is registered to its CT (prompts/pet_ct_registration.py)
    align_pet: AlignPet = AlignPet.AUTO
    # the unit of a PET given as an image file (--pet-units; None: the model card's, checked) and
    # its Bq/mL -> SUV factor (--suv-factor): dicom/pet_units.py, issue 24
    pet_units: PetUnit | None = None
    suv_factor: float | None = None
    # --checkpoint (issue 28): which checkpoint the nnU-Net folds run (None: the model's own default,
    # models/nnunet_folder.py: an ensemble card's or the folder's, else checkpoint_final)
    checkpoint: Checkpoint | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input_paths, dict):
            raise InputError("request field 'input_paths' must map names to paths", None,
                             'write e.g. "input_paths": {"T2": "mid_T2.nii.gz"}')
        self.model = str(self.model)
        self.input_paths = {str(k): str(v) for k, v in self.input_paths.items()}
        self.output_path = str(self.output_path)
        for name in PATH_FIELDS:
            value = getattr(self, name)
            setattr(self, name, None if value in (None, "") else str(value))
        self.task = Task.parse_optional(self.task)
        self.registration = RegistrationMode.parse_optional(self.registration, "--registration")
        self.pet_units = PetUnit.parse_optional(self.pet_units, "--pet-units")
        self.checkpoint = Checkpoint.parse_optional(self.checkpoint, "--checkpoint")
        if self.suv_factor is not None and (isinstance(self.suv_factor, bool)
                                            or not isinstance(self.suv_factor, (int, float))):
            raise InputError(f"request field 'suv_factor' must be a number, not {self.suv_factor!r}", None,
                             'write e.g. "suv_factor": 0.000214 (body weight g / decay-corrected dose Bq)')
        self.align_pet = AlignPet.parse(self.align_pet if self.align_pet is not None else AlignPet.AUTO, "--align-pet")
        self.device = parse_device(self.device)
        self.folds = parse_folds(self.folds)
        if not isinstance(self.series, dict) or set(self.series) - set(self.input_paths):
            raise InputError(f"request field 'series' must map input names to series UIDs, not {self.series!r}", None,
                             'write e.g. "series": {"CT": "1.2.840..."} for inputs given as DICOM folders')
        self.series = {str(k): str(v).strip() for k, v in self.series.items()}
        if not isinstance(self.restrict_to_boxes, bool):
            raise InputError(f"request field 'restrict_to_boxes' must be true or false, not {self.restrict_to_boxes!r}",
                             None, 'write "restrict_to_boxes": true or false')
        if self.tta is not None and not isinstance(self.tta, bool):
            raise InputError(f"request field 'tta' must be true, false or null, not {self.tta!r}", None,
                             'write "tta": true, "tta": false, or leave it out for the model\'s default')

    # ---- request.json -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (the worker's ``request.json``; keys = field names)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["input_paths"] = dict(self.input_paths)
        d["series"] = dict(self.series)
        d["task"] = None if self.task is None else str(self.task)
        d["registration"] = None if self.registration is None else str(self.registration)
        d["pet_units"] = None if self.pet_units is None else str(self.pet_units)
        d["checkpoint"] = None if self.checkpoint is None else str(self.checkpoint)
        d["align_pet"] = str(self.align_pet)
        d["device"] = str(self.device)
        d["folds"] = self.folds.to_json()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentRequest":
        """Read a ``request.json`` object; unknown, renamed or missing fields are an InputError."""
        if not isinstance(data, dict):
            raise InputError("the request is not a JSON object", None,
                             "write an object with model, input_paths, output_path")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            hints = "".join(did_you_mean(k, known) for k in unknown)
            raise InputError(f"unknown request field(s) {', '.join(unknown)}{hints}", None,
                             f"use only {', '.join(known)}")
        missing = [k for k in REQUIRED_FIELDS if not data.get(k)]
        if missing:
            raise InputError(f"the request lacks {', '.join(missing)}", None, f"give {', '.join(REQUIRED_FIELDS)}")
        return cls(**data)

    def write_json(self, path: str | Path) -> Path:
        """Write ``request.json`` for the worker."""
        return write_json_atomic(path, self.to_dict())

    def model_folder(self) -> Path | None:
        """The folder (or file) ``model`` names: a path, or an installed / bundled catalogue id.

        None when it names nothing installed: the loader reports that later, with its own
        message. Here, not in :mod:`~HNTumorSegLib.protect`, because resolving a catalogue id
        needs :mod:`~HNTumorSegLib.models`, a layer above protect's (docs/design.md, inner map);
        protect asks the request for its model folder instead.
        """
        if not self.model:
            return None
        if Path(self.model).exists():
            return Path(self.model)
        from ..models.catalogue import installed_path

        try:
            return installed_path(str(self.model))
        except Exception:  # unknown or not installed: the loader reports it, with its own message
            return None

    def registered_outputs(self) -> dict[str, str]:
        """``--save-registered``'s files, ``{"--save-registered (registration.json)": path}`` (none without it):
        here so that :mod:`~HNTumorSegLib.protect` checks them like every output."""
        if not self.registered_folder_path:
            return {}
        return {f"--save-registered ({name})": str(Path(self.registered_folder_path) / name)
                for name in REGISTERED_FILES.values()}

    # ---- command line --------------------------------------------------------------------------
    def to_argv(self, progress: str | ProgressMode | None = None) -> list[str]:
        """The ``hntumorseg segment ...`` arguments that make this request (without the program name)."""
        argv = ["segment"]
        if self.task:
            argv += ["--task", str(self.task)]
        argv += ["--model", str(self.model)]
        for name, path in self.input_paths.items():
            argv += ["--input", f"{name}={path}"]
        for name, uid in self.series.items():
            argv += ["--series", f"{name}={uid}"]
        if self.prior_path:
            argv += ["--prior", self.prior_path]
        if self.prior_structures:
            argv += ["--structures", self.prior_structures]
        if self.prior_reference_path:
            argv += ["--reference", self.prior_reference_path]
        if self.prior_image_path:
            argv += ["--prior-image", self.prior_image_path]
        if self.registration is not None:
            argv += ["--registration", str(self.registration)]
        if self.registered_folder_path:
            argv += ["--save-registered", self.registered_folder_path]
        if self.boxes_path:
            argv += ["--boxes", self.boxes_path]
        if self.pet_units is not None:
            argv += ["--pet-units", str(self.pet_units)]
        if self.suv_factor is not None:
            argv += ["--suv-factor", repr(float(self.suv_factor))]
        if self.align_pet != AlignPet.AUTO:
            argv += ["--align-pet", str(self.align_pet)]
        argv += ["--output", self.output_path, "--device", str(self.device)]
        if not self.folds.is_all:
            argv += ["--folds", self.folds.to_text()]
        if self.checkpoint is not None:
            argv += ["--checkpoint", str(self.checkpoint)]
        if self.tta is not None:
            argv.append("--tta" if self.tta else "--no-tta")
        if self.probabilities_path:
            argv += ["--probabilities", self.probabilities_path]
        if self.uncertainty_path:
            argv += ["--uncertainty", self.uncertainty_path]
        if self.boxes_output_path:
            argv += ["--save-boxes", self.boxes_output_path]
        if self.restrict_to_boxes:
            argv.append("--restrict-to-boxes")
        if progress:
            argv += ["--progress", str(ProgressMode.parse(progress))]
        return argv

    @classmethod
    def from_args(cls, args: Any) -> "SegmentRequest":
        """Build from ``hntumorseg segment``'s parsed arguments (argparse Namespace; the option
        names users type are unchanged: ``--output``, ``--prior``, ``--boxes`` ...)."""
        input_paths: dict[str, str] = {}
        for text in args.input or []:
            name, path = parse_input_pair(text)
            if name in input_paths:
                raise InputError(f"input {name!r} is given twice", None, "give each --input NAME once")
            input_paths[name] = path
        if not input_paths:
            raise InputError("no input image given", None, "add --input NAME=PATH (T2, or CT and PET)")
        model = args.model
        if isinstance(model, (list, tuple)):  # `--model` repeats (an ad hoc ensemble, commands/segment.py)
            if len(model) != 1:
                raise InputError(f"{len(model)} models given where one request takes one", None,
                                 "combine them first (hntumorseg segment builds an ensemble from repeated --model)")
            model = model[0]
        return cls(model=model, input_paths=input_paths, output_path=args.output, task=args.task,
                   prior_path=args.prior, boxes_path=args.boxes, device=args.device, folds=args.folds,
                   tta=getattr(args, "tta", None), probabilities_path=args.probabilities, uncertainty_path=args.uncertainty,
                   boxes_output_path=getattr(args, "save_boxes", None),
                   series=parse_series_args(getattr(args, "series", None), list(input_paths)),
                   restrict_to_boxes=bool(getattr(args, "restrict_to_boxes", False)),
                   prior_structures=getattr(args, "structures", None),
                   prior_reference_path=getattr(args, "reference", None),
                   prior_image_path=getattr(args, "prior_image", None),
                   registration=getattr(args, "registration", None),
                   registered_folder_path=getattr(args, "save_registered", None),
                   align_pet=getattr(args, "align_pet", None) or AlignPet.AUTO,
                   pet_units=getattr(args, "pet_units", None), suv_factor=getattr(args, "suv_factor", None),
                   checkpoint=getattr(args, "checkpoint", None))


@dataclass
class SegmentResult:
    """What a run produced: ``files`` (role -> path: ``labels``, ``probabilities``, ``uncertainty``,
    ``boxes``), seconds per stage, and facts about the run (``volumes_ml`` per label name ...)."""

    files: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    device: str | None = None
    model_id: str | None = None
    n_tiles: int | None = None
    task: str | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    boxes: list = field(default_factory=list)
    regions: list = field(default_factory=list)   # seed 002's stage ROIs (coarse-to-fine pipeline)
    warnings: list = field(default_factory=list)  # input warnings (constant image, smaller than a patch ...)
    registration: dict | None = None   # --prior-image: the registration's quality figures (issue 23)
    alignment: dict | None = None      # the PET placed on the CT: mode, gate, transform, overlaps (issue 24)

    @property
    def labels(self) -> str:
        return self.files["labels"]
