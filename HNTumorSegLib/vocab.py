"""The fixed words of HNTumorSeg, defined once (docs/design.md "Rules of the house").

Every closed set of values a user or a file can name - the task, the device, the progress
mode, what the pipeline writes, the Slicer quality - is one ``StrEnum`` here. Values are
converted where they enter (command line ``type=``, ``request.json``, ``model.json``, the
Slicer parameter node) with ``Enum.parse(text)``, which gives one :class:`InputError` line
with a "did you mean" on a typo. Past that point the code compares enum members, which are
also plain strings (``Task.MIDRT == "midrt"``), so JSON and f-strings need no conversion.

Other spellings a vocabulary reads (``t2w`` for ``T2``) live in the one table :data:`ALIASES`.
:data:`ErrorKind` is not listed here but built from the exception classes of
:mod:`HNTumorSegLib.errors`, so an error kind and its class cannot disagree.
``Testing/test_vocab_single_source.py`` fails when a choice list is written outside this file.

Example:
    >>> Task.parse("midRT")
    <Task.MIDRT: 'midrt'>
    >>> Task.parse("mdrt")
    Traceback (most recent call last):
    HNTumorSegLib.errors.InputError: unknown task 'mdrt' (did you mean midrt?) - use one of prert, midrt, petct
    >>> parse_device("CUDA:1")
    'cuda:1'
"""

from __future__ import annotations

import difflib
import re
from enum import Enum
from typing import Any, TypeVar, cast

from .errors import InputError, error_class, error_kinds, exit_code_for

try:  # Python >= 3.11
    from enum import StrEnum as _StrEnumBase
except ImportError:  # pragma: no cover - Python 3.10 (older Slicer builds)
    class _StrEnumBase(str, Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)

E = TypeVar("E", bound="VocabEnum")

# The word each vocabulary is called in messages (a class attribute would become an enum member).
_WHAT = {"ProgressMode": "progress mode", "OutputKind": "output kind", "NetworkOutput": "model output",
         "FoldAverage": "fold average", "RegionTiling": "region tiling", "AccumulateOn": "accumulate_on",
         "ModelKind": "model kind", "HoleStyle": "hole style", "InputRole": "input role",
         "DerivedChannel": "derived channel", "CaseFileKind": "file kind", "LicenceTerms": "licence terms",
         "PetUnit": "PET unit", "PetUnitSource": "PET unit source", "HpvLoss": "HPV loss", "ExportFormat": "export format",
         "AllowMissing": "--allow-missing mode", "RegistrationMode": "registration mode",
         "StructureRole": "structure role", "Checkpoint": "checkpoint",
         "ImportForm": "import form"}


#: THE alias table: other spellings a vocabulary reads (lower case) -> its value. Aliases are read,
#: never written; one table for every vocabulary, so a spelling cannot mean two things.
ALIASES: dict[str, dict[str, str]] = {
    # nnU-Net dataset.json channel names and the Slicer panel's node fields name images these ways too
    "InputRole": {"t2w": "T2", "mri": "T2"},
    # derived channels in nnU-Net channel names (models.declaration): seed 003's gradient map
    "DerivedChannel": {"gradient_map": "gradient", "grad": "gradient", "gradientmap": "gradient"},
    # nnU-Net checkpoint files are named <value>.pth; "final" / "best" are short forms
    "Checkpoint": {"final": "checkpoint_final", "best": "checkpoint_best",
                   "checkpoint_final.pth": "checkpoint_final", "checkpoint_best.pth": "checkpoint_best"},
}


def did_you_mean(text: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean midrt?)`` when ``text`` is close to one of ``choices``, else ``""``."""
    by_lower = {str(c).lower(): str(c) for c in choices}   # case-blind: "pt" is close to "PET"
    close = difflib.get_close_matches(str(text).strip().lower(), list(by_lower), n=1, cutoff=0.5)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


class VocabEnum(_StrEnumBase):
    """A StrEnum with :meth:`parse` (case-insensitive, the spellings of :data:`ALIASES`, "did you
    mean" on a typo) and :meth:`lookup` (the same, ``None`` instead of an error)."""

    @classmethod
    def what(cls) -> str:
        """The word used in messages (``task``, ``device`` ...)."""
        return _WHAT.get(cls.__name__, cls.__name__.lower())

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """All values as plain strings, in definition order (for argparse ``choices`` and combo boxes)."""
        return tuple(m.value for m in cls)

    @classmethod
    def parse(cls: type[E], text: Any, what: str | None = None) -> E:
        """``text`` (any case, surrounding spaces ignored) -> member; otherwise an InputError.

        ``what`` names the value in the message (e.g. ``"--task"`` or ``"model.json task"``).
        """
        found = cls.lookup(text)
        if found is not None:
            return found
        word = what or cls.what()
        key = str(text).strip().lower() if text is not None else ""
        choices = cls.values()
        raise InputError(f"unknown {word} {text!r}{did_you_mean(key, choices)}", None,
                         f"use one of {', '.join(choices)}")

    @classmethod
    def lookup(cls: type[E], text: Any) -> E | None:
        """The member ``text`` names (any case, an alias of :data:`ALIASES`), or ``None``."""
        if isinstance(text, cls):
            return text
        key = str(text).strip().lower() if text is not None else ""
        key = ALIASES.get(cls.__name__, {}).get(key, key).lower()
        for member in cls:
            if member.value.lower() == key:
                return member
        return None

    @classmethod
    def parse_optional(cls: type[E], text: Any, what: str | None = None) -> E | None:
        """Like :meth:`parse`, but ``None``/``""`` -> ``None`` (an optional field)."""
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        return cls.parse(text, what)


class Task(VocabEnum):
    """The three clinical tasks: pre-RT MRI, mid-RT MRI (with the pre-RT prior), PET/CT."""

    PRERT = "prert"
    MIDRT = "midrt"
    PETCT = "petct"


#: The MRI tasks (HNTS-MRG 2024): those an HNTS-MRG folder and its converters hold.
MRI_TASKS: tuple[Task, ...] = (Task.PRERT, Task.MIDRT)


class Device(VocabEnum):
    """Where inference runs. ``cuda:N`` is also accepted where a device is typed: use
    :func:`parse_device`, which returns the canonical string (``"cuda:1"``) for it."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class ProgressMode(VocabEnum):
    """How a command shows progress: a bar on stderr, JSON event lines on stdout, or nothing."""

    BAR = "bar"
    JSON = "json"
    NONE = "none"


class OutputKind(VocabEnum):
    """What the pipeline writes: the keys of ``SegmentResult.files`` and the worker's result event."""

    LABELS = "labels"
    PROBABILITIES = "probabilities"
    UNCERTAINTY = "uncertainty"
    BOXES = "boxes"


class Quality(VocabEnum):
    """The Slicer module's speed/quality switch: ``fast`` = the first fold the model has, no
    mirroring; ``full`` = every fold with mirroring."""

    FAST = "fast"
    FULL = "full"


class RunOn(VocabEnum):
    """Where the Slicer module runs a segmentation (issue 29): this computer (a local warm session)
    or a segmentation server (``hntumorseg serve``; scene/remote_run.py)."""

    LOCAL = "local"
    SERVER = "server"


class NetworkOutput(VocabEnum):
    """How a model's output channels are read (``model.json`` ``output``): one softmax over the
    labels, or two sigmoid maps (GTVp, GTVn) fused as in seed 002. This is the one spelling, also
    inside the inference code (an ensemble member's ``output``): there is no short "sigmoid"."""

    SOFTMAX = "softmax"
    SIGMOID_REGIONS = "sigmoid_regions"



class InputRole(VocabEnum):
    """An image a user gives: ``--input ROLE=PATH``, a card's ``inputs[].name``, an nnU-Net
    channel name, the Slicer panel's volume selector. Written in upper case (as model cards name
    their channels); read in any case and in the spellings of :data:`ALIASES` (``t2w``, ``mri``)."""

    T2 = "T2"
    CT = "CT"
    PET = "PET"

    @property
    def field(self) -> str:
        """The Slicer panel parameter holding this image's node (``t2``, ``ct``, ``pet``)."""
        return self.value.lower()


class DerivedChannel(VocabEnum):
    """A channel the pipeline makes from an input instead of reading it (``models.declaration``):
    seed 003's gradient map of the T2 inside the boxes."""

    GRADIENT = "gradient"


class Uncertainty(VocabEnum):
    """The per-voxel uncertainty map an ensemble can write (:mod:`HNTumorSegLib.inference.ensemble`):
    the normalised predictive entropy, or the fraction of members that disagree with the label."""

    ENTROPY = "entropy"
    DISAGREEMENT = "disagreement"


class FoldAverage(VocabEnum):
    """How an ensemble combines one member's folds: in logit space tile by tile (nnU-Net's way),
    or each fold as its own member averaged in probability space."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


class RegionTiling(VocabEnum):
    """How tiles are laid over a region (box-restricted inference,
    :class:`HNTumorSegLib.inference.tiled.TilingOptions`): new tiles centred on each box, the full
    grid's tiles that touch it, or centred tiles shrunk to a small box."""

    FIT = "fit"
    GRID = "grid"
    SHRINK = "shrink"


class AccumulateOn(VocabEnum):
    """Where the tile accumulators live: decided from free GPU memory, on the device, or on the CPU."""

    AUTO = "auto"
    DEVICE = "device"
    CPU = "cpu"


class ModelKind(VocabEnum):
    """What a loaded model is (``LoadedModel.kind``), which decides how the pipeline runs it:
    ``card`` = a model.json card with its own network, ``nnunet`` = an nnU-Net results folder,
    ``segresnet`` = MONAI SegResNetDS checkpoints behind a card, ``ensemble`` = an ensemble card
    that averages other models (:mod:`HNTumorSegLib.models.ensemble_card`)."""

    CARD = "card"
    NNUNET = "nnunet"
    SEGRESNET = "segresnet"
    ENSEMBLE = "ensemble"


class ImportForm(VocabEnum):
    """What ``models import`` found in a folder or zip (:mod:`HNTumorSegLib.models.importer`), which
    decides how it is checked and installed: a folder with a model card, an nnU-Net results folder,
    or SegResNet checkpoints (UW LAIR's ``model_N.pt``) that the import turns into a card folder.
    Not :class:`ModelKind`: that is how a *loaded* model runs (a checkpoint folder runs as a card)."""

    CARD = "card"
    NNUNET = "nnunet"
    SEGRESNET_CHECKPOINTS = "segresnet-checkpoints"


class _ErrorKindBase(VocabEnum):
    """The methods of :data:`ErrorKind` (an enum with members cannot be subclassed, so they live here)."""

    @property
    def exception_class(self) -> type:
        """The class in :mod:`HNTumorSegLib.errors` whose ``kind`` this is."""
        return error_class(self.value)

    @property
    def user_fixable(self) -> bool:
        """The user can fix it by changing the inputs, the model, the device or the node (exit code 2)."""
        return issubclass(self.exception_class, InputError)

    @property
    def exit_code(self) -> int:
        """The command line's exit code for this kind (2 user-fixable, else 1)."""
        return exit_code_for(self.value)


#: The ``kind`` of an ``error`` event (docs/design.md "Worker protocol"). Built from the exception
#: classes of :mod:`HNTumorSegLib.errors` (each class's ``kind``), never listed by hand, so the
#: protocol (:class:`HNTumorSegLib.protocol.ErrorEvent`) accepts exactly what the code can raise.
#: (The functional Enum API: type checkers see the members' class, :class:`_ErrorKindBase`.)
ErrorKind = cast("type[_ErrorKindBase]", _ErrorKindBase(  # type: ignore[call-arg]
    "ErrorKind", [(kind.upper(), kind) for kind in error_kinds()], module=__name__, qualname="ErrorKind"))
ErrorKind.__doc__ = ("The kind of an error event: one per exception class of HNTumorSegLib.errors "
                     "(bad_input, model, device, send: the user can fix them; the others cannot).")
_WHAT["ErrorKind"] = "error kind"


_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def parse_device(text: Any, what: str = "device") -> str:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` (any case) -> the canonical string.

    Returns ``str`` rather than :class:`Device` because ``cuda:N`` is not a fixed member; the
    named ones come back as :class:`Device` members (which are strings).

    Example:
        >>> parse_device(" Cuda:0 "), parse_device("cpu")
        ('cuda:0', <Device.CPU: 'cpu'>)
    """
    key = str(text).strip().lower() if text is not None else ""
    match = _CUDA_INDEX.match(key)
    if match:
        return f"cuda:{int(match.group(1))}"
    try:
        return Device.parse(key, what)
    except InputError as exc:
        raise InputError(exc.problem, None, f"use one of {', '.join(Device.values())} or cuda:N") from None


class Challenge(VocabEnum):
    """The challenges whose ranking metrics ``evaluate --challenge`` prints
    (:mod:`HNTumorSegLib.metrics.challenges`)."""

    HNTSMRG2024 = "hntsmrg2024"
    HECKTOR2025 = "hecktor2025"


class Layout(VocabEnum):
    """How a cohort is stored on disk (``batch --layout``, :mod:`HNTumorSegLib.datasets`):
    the HNTS-MRG 2024 folders, the HECKTOR 2025 folders, a plain folder of ``<ID>_0000.nii.gz``
    channel files, or one DICOM study folder per case (:mod:`HNTumorSegLib.dicom.studies`)."""

    HNTSMRG = "hntsmrg"
    HECKTOR = "hecktor"
    FOLDER = "folder"
    DICOM = "dicom"


class HoleStyle(VocabEnum):
    """How RTSTRUCT writes a hole in a contour (:mod:`HNTumorSegLib.export.contours`)."""

    NESTED = "nested"  # outer and inner contours, read with the even-odd rule (default)
    KEYHOLE = "keyhole"  # one contour per island, the hole joined by a zero-width cut


class NonGtvTarget(VocabEnum):
    """RTROIInterpretedType values (DICOM PS3.3 C.8.8.8) of target volumes that are not a GTV: a
    structure so typed is never read as GTVp/GTVn by its name (:mod:`HNTumorSegLib.dicom.structures`)."""

    CTV = "CTV"
    PTV = "PTV"
    ITV = "ITV"


class Timepoint(VocabEnum):
    """How the HNTS-MRG 2024 data name the MRI tasks in folder and file names (``evaluate --timepoint``)."""

    PRERT = "preRT"
    MIDRT = "midRT"


class CaseFileKind(VocabEnum):
    """What a file of a cohort is, read from its name (:mod:`HNTumorSegLib.caseids`)."""

    LABEL = "label"
    IMAGE = "image"
    PRIOR = "prior"


class Architecture(VocabEnum):
    """The network architectures a model card can name (``model.json`` ``architecture.name``;
    :func:`HNTumorSegLib.networks.build_network`). Spelled as the classes they build."""

    STUNET = "STUNet"
    PLAIN_CONV_UNET = "PlainConvUNet"
    RESIDUAL_ENCODER_UNET = "ResidualEncoderUNet"
    SEGRESNET_DS = "SegResNetDS"


class LicenceTerms(VocabEnum):
    """What a catalogue entry's licence allows (``models.json`` ``licence_terms``): open use, or
    non-commercial / unstated terms the user must accept before a download."""

    OPEN = "open"
    NON_COMMERCIAL = "non-commercial"
    UNSTATED = "unstated"


class PetUnit(VocabEnum):
    """The unit of a PET volume (``--pet-units``): SUV, or Bq/ml (converted with the DICOM header)."""

    SUV = "SUV"
    BQML = "BQML"


class PetUnitSource(VocabEnum):
    """Where a PET's unit came from (:mod:`HNTumorSegLib.dicom.pet_units`, said in the run's notes):
    the DICOM header's ``Units``, the user's ``--pet-units``, the model card's ``pet_unit`` (an image
    file taken in the unit the model expects, checked to look like it), or the default SUV of a
    command without a model (``biomarkers``, Slicer's panels), checked the same way."""

    DICOM_HEADER = "dicom-header"
    USER = "pet-units"
    MODEL_CARD = "model-card"
    DEFAULT = "default"


class Endpoint(VocabEnum):
    """The outcome endpoints (seed 004, HECKTOR 2025 tasks 2 and 3): recurrence-free survival, HPV status."""

    RFS = "rfs"
    HPV = "hpv"


class HpvLoss(VocabEnum):
    """The HPV classifier's training loss (:mod:`HNTumorSegLib.outcome.classification`)."""

    WEIGHTED_BCE = "weighted_bce"
    FOCAL = "focal"


class SplitScheme(VocabEnum):
    """How ``python -m hntumorseg_training splits --split`` and the MEDAI trainers deal cases into
    folds (:mod:`hntumorseg_training.crossval`): ``kfold`` (the default: a true k-fold split, every
    patient validated once) or ``medai-released`` (seed 004's fork as it runs: nnU-Net's 5-fold
    KFold for folds 0-4 and a seeded random 80:20 split for each fold >= 5)."""

    KFOLD = "kfold"
    MEDAI_RELEASED = "medai-released"


class BoxOverlap(VocabEnum):
    """What seed 003's gradient map does where lesion boxes overlap
    (:func:`HNTumorSegLib.prompts.gradient_map.gradient_map`): ``overwrite`` (the default, as
    released: each box writes its values over the earlier ones, in the released drawing order)
    or ``max`` (the larger value wins, whatever the order; HNTumorSeg before issue 28)."""

    OVERWRITE = "overwrite"
    MAX = "max"


class EmptyLabel(VocabEnum):
    """What an outcome model takes as the volume (MTV, NTV) of an empty label
    (:class:`HNTumorSegLib.outcome.clinical.ClinicalEncoder`, ``outcome-train --empty-label``):
    ``median`` (the default, as released: missing, so the training median) or ``zero`` (0.0 mL,
    HNTumorSeg before issue 28; cards written before it are read so)."""

    MEDIAN = "median"
    ZERO = "zero"


class OutcomePreset(VocabEnum):
    """A training recipe of ``outcome-train --preset`` (:mod:`hntumorseg_training.outcome.presets`):
    ``medai-hpv`` is seed 004's released HPV recipe (focal loss, temperature scaling, Youden
    threshold, KFold seed 3407, 30 epochs, lr 5e-5, wd 1e-2)."""

    MEDAI_HPV = "medai-hpv"


class ExportFormat(VocabEnum):
    """What the Slicer module exports a segmentation as (:meth:`HNTumorSegLib.scene.logic.SceneLogic.export`)."""

    NIFTI = "nifti"
    DICOM_SEG = "dicom_seg"
    RTSTRUCT = "rtstruct"
    CSV = "csv"


class AllowMissing(VocabEnum):
    """How scoring counts a truth case (``evaluate``) or patient (``evaluate-outcome``) that has no
    prediction (``--allow-missing``); without the option it is an error (issue 22): a left-out
    case inflates a challenge score. ``empty``: scored as an empty prediction, the challenges'
    convention (segmentation only); ``skip``: left out, with a warning."""

    EMPTY = "empty"
    SKIP = "skip"


class RegistrationMode(VocabEnum):
    """How far ``register`` (:mod:`HNTumorSegLib.prompts.registration`) goes: a rigid move
    (rotation + shift), then an affine one (scaling, shear), or rigid then a B-spline deformation
    (the default: pre-RT to mid-RT soft tissue changes shape)."""

    RIGID = "rigid"
    AFFINE = "affine"
    DEFORMABLE = "deformable"


class StructureRole(VocabEnum):
    """What one structure of a prior RTSTRUCT / SEG becomes in the Slicer panel's structure table
    (:mod:`HNTumorSegLib.scene.prior_table`): label 1, label 2, or left out."""

    GTVP = "GTVp"
    GTVN = "GTVn"
    IGNORE = "ignore"


class Checkpoint(VocabEnum):
    """Which checkpoint of each nnU-Net fold folder runs (``segment --checkpoint``, an ensemble card's
    ``"checkpoint"``, :mod:`HNTumorSegLib.models.nnunet_folder`): ``checkpoint_final.pth`` (the
    default, ``nnUNetv2_predict``'s) or ``checkpoint_best.pth`` (best validation pseudo-Dice; what
    seed 002's released code loads for every stage). The file is ``<value>.pth``."""

    FINAL = "checkpoint_final"
    BEST = "checkpoint_best"


class AlignPet(VocabEnum):
    """When a PET is registered to its CT (``--align-pet``, :mod:`HNTumorSegLib.prompts.pet_ct_registration`):
    ``auto`` (the default) only when its header places it off the CT, and applied only when the
    alignment gate passes; ``off`` never (a PET off its CT is refused); ``force`` always, applied
    even when the gate fails (its figures are shown)."""

    AUTO = "auto"
    OFF = "off"
    FORCE = "force"


class PetHeadGrid(VocabEnum):
    """Which grid seed 002's head region puts the PET on (:func:`HNTumorSegLib.prompts.coarse_to_fine.window_head_images`):
    ``own`` (the default, as released: ``resample_head_neck_region(pet)`` crops the PET on its own
    origin and top) or ``ct`` (the CT's head grid, HNTumorSeg before issue 28)."""

    OWN = "own"
    CT = "ct"


class HeadCropGrid(VocabEnum):
    """Where seed 004's 1 mm common grid starts (:func:`HNTumorSegLib.prompts.head_localisation.plan_head_crop`):
    ``released`` (the default: at the maximum of the CT's and PET's voxel-centre origins, size rounded,
    HECKTOR2025-MEDAI ``resample_images``) or ``edges`` (the voxel-edge intersection + 0.5 mm, size
    floored: HNTumorSeg before issue 28)."""

    RELEASED = "released"
    EDGES = "edges"


class JobState(VocabEnum):
    """A segmentation server job's state (``hntumorseg serve``, docs/server-api.md): waiting for a
    session, running, ended with a result, an error or a cancel; ``deleted`` answers a DELETE."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    CANCELLING = "cancelling"


class UploadPart(VocabEnum):
    """The multipart parts of a server job besides ``input.<role>`` (docs/server-api.md): the JSON
    fields ``request`` / ``refine`` and the files ``prior``, ``prior_image``, ``base_labels``."""

    REQUEST = "request"
    REFINE = "refine"
    PRIOR = "prior"
    PRIOR_IMAGE = "prior_image"
    BASE_LABELS = "base_labels"


class ServerErrorKind(VocabEnum):
    """The ``kind`` of a server HTTP error body that no worker error kind fits (docs/server-api.md);
    a bad request uses the worker's ``bad_input``."""

    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    QUEUE_FULL = "queue_full"
    CONFLICT = "conflict"


__all__ = ["VocabEnum", "Task", "MRI_TASKS", "Device", "ProgressMode", "OutputKind", "Quality",
           "NetworkOutput", "Uncertainty", "FoldAverage", "RegionTiling", "AccumulateOn", "ModelKind",
           "ErrorKind", "InputRole", "DerivedChannel", "ALIASES", "Layout", "Timepoint", "CaseFileKind",
           "Architecture", "LicenceTerms", "PetUnit", "PetUnitSource", "Endpoint", "HpvLoss", "SplitScheme", "BoxOverlap", "OutcomePreset", "EmptyLabel", "ExportFormat", "HoleStyle",
           "Challenge", "AllowMissing", "NonGtvTarget", "RegistrationMode", "AlignPet", "PetHeadGrid", "HeadCropGrid", "ImportForm", "StructureRole", "Checkpoint", "JobState", "UploadPart", "ServerErrorKind",
           "parse_device",
           "did_you_mean"]
