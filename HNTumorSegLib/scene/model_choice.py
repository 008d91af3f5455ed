"""What the panel's model box offers and accepts: catalogue models for the task, or a typed/browsed folder.

The model box is editable: it lists *every* catalogue model of the chosen task (others are
hidden), installed ones first; one not installed yet carries a marker in the list
(``GradientSegHNTS  [not installed: Download]``, ``... [not installed: Import]``, ``... [code only]``)
and selecting it shows what to click (:func:`..model_install.install_plan`: Download, or where to
download by hand and then Import) instead of failing at Apply. The user may also type or browse
to a model folder (a model card folder or an nnU-Net results folder). Whatever is chosen, the
panel shows its licence and source next to it, because a model's licence must be seen before it
is used. A missing model says what to click in the panel, never which command to run.

:func:`models_for_task` gives the list; :func:`choose_model` turns the box's text (an id, a list
label with its marker, or a path) into a :class:`ModelChoice` (or an
:class:`~HNTumorSegLib.errors.InputError` saying what to do), and :func:`model_box_state` gives
the widget everything it shows for that text (info line, which buttons are enabled), without
loading any weights, so both can run on every keystroke.

The first hour on a fresh Slicer (issue 26): with no model of the task installed the info line
says where to get one (:func:`no_model_installed_text`); Apply with a model not installed stays
pressable and offers its Download or Import (:func:`apply_offer`); a demo model (its card's
``training.phantom_seeds``) on an image that is not one of the project's phantoms (a
``HNTumorSeg.Phantom`` node attribute, or the phantoms' size rule: at most one axis longer than
128 voxels) puts :data:`DEMO_WARNING` above the info line (:func:`demo_warning`).

Example:
    >>> [c.label for c in models_for_task("midrt")][:2]
    ['demo-midrt', 'GradientSegHNTS  [not installed: Download]']
    >>> choose_model("GradientSegHNTS  [not installed: Download]", "midrt").instructions
    "Not installed: press Download and type the commit hash you checked on the model's Hugging Face page."
    >>> import os; os.makedirs("results/Dataset501_midRT")
    >>> choose_model("results/Dataset501_midRT", "midrt").is_path  # an existing folder
    True
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..models.card import CARD_NAME, read_card
from ..models.catalogue import CatalogueEntry, is_installed, read_catalogue
from ..vocab import Task
from .model_install import install_plan

#: What the panel says when a folder does not state its licence.
LICENCE_UNKNOWN = "not stated in the model folder: check with the model's authors before use"


@dataclass(frozen=True)
class ModelChoice:
    """One model the panel can run: catalogue id or folder path, with what the user must see."""

    id: str            # catalogue id, or the folder path as given
    title: str
    task: Task | None  # None for a folder whose card names no task
    licence: str
    source: str        # homepage / URL / citation, or the folder
    installed: bool    # runs now (bundled, fetched, or an existing folder)
    is_path: bool = False
    action: str = ""         # the button that installs it: "download", "import", "train" (code only) or ""
    instructions: str = ""   # what to click while it is not installed (install_plan)

    @property
    def status(self) -> str:
        if self.is_path or self.installed:
            return ""
        return self.instructions

    @property
    def label(self) -> str:
        """The list's text: the id, with a marker while not installed (:func:`model_id_from_box` strips it)."""
        if self.is_path or self.installed:
            return self.id
        return f"{self.id}  [{_MARKERS.get(self.action, 'not installed')}]"

    def info_text(self) -> str:
        """The line shown under the model box."""
        parts = [f"Licence: {self.licence}", f"Source: {self.source}"]
        if self.status:
            parts.append(self.status)
        return " | ".join(parts)


_MARKERS = {"download": "not installed: Download", "import": "not installed: Import", "train": "code only"}
_MARKED = re.compile(r"^(?P<id>\S+)  \[(?:not installed: (?:Download|Import)|code only|not installed)\]$")


def model_id_from_box(text: str) -> str:
    """The model the box's text names: a list label loses its marker; ids and paths stay as typed (stripped)."""
    text = (text or "").strip()
    match = _MARKED.match(text)
    return match.group("id") if match else text


def _entry_choice(entry: CatalogueEntry, cache: str | Path | None, catalogue: str | Path | None) -> ModelChoice:
    source = entry.homepage or entry.url or entry.citation
    installed = entry.kind != "source-only" and is_installed(entry, cache)
    plan = install_plan(entry.id, cache, catalogue) if not installed else None
    return ModelChoice(entry.id, entry.title, Task.parse(entry.task), entry.licence, source, installed,
                       action=plan.action if plan else "", instructions=plan.instructions if plan else "")


def models_for_task(task: Task | str, cache: str | Path | None = None,
                    catalogue: str | Path | None = None) -> list[ModelChoice]:
    """Every catalogue model of ``task`` (other tasks hidden): installed first (bundled, fetched,
    imported), then those to Download, to Import, and code-only ones, each by id."""
    task = Task.parse(task)
    order = {"": 0, "download": 1, "import": 2, "train": 3}
    choices = [_entry_choice(e, cache, catalogue) for e in read_catalogue(catalogue) if Task.parse(e.task) is task]
    return sorted(choices, key=lambda c: (not c.installed, order.get(c.action, 4), c.id))


def _folder_choice(path: Path) -> ModelChoice:
    card_path = path / CARD_NAME if path.is_dir() else path
    if card_path.name == CARD_NAME and card_path.is_file():
        card = read_card(card_path)  # ModelError (an InputError) naming the field when the card is bad
        task = Task.parse(card.task) if card.task else None
        return ModelChoice(str(path), card.title or path.name, task, card.licence or LICENCE_UNKNOWN,
                           card.source or card.citation or str(path), True, is_path=True)
    return ModelChoice(str(path), f"model folder {path.name}", None, LICENCE_UNKNOWN, str(path), True, is_path=True)


def choose_model(text: str, task: Task | str, cache: str | Path | None = None,
                 catalogue: str | Path | None = None, require_installed: bool = False) -> ModelChoice:
    """The model the box's ``text`` names for ``task``: a catalogue id (or its list label) or an existing folder.

    Raises :class:`InputError` for an empty box, an id of another task, or a name that is neither
    an id nor an existing path (with the closest ids of this task); with ``require_installed``
    (Apply) also for a catalogue model not installed yet, whose fix is what to click.
    """
    task = Task.parse(task)
    text = model_id_from_box(text)
    if not text:
        raise InputError("no model selected", None, "choose a model in the list, or type / browse a model folder")
    entries = {e.id: e for e in read_catalogue(catalogue)}
    entry = entries.get(text)
    if entry is not None:
        if Task.parse(entry.task) is not task:
            raise InputError(f"model {text!r} is for the {entry.task} task, not {task}", None,
                             f"choose a {task} model, or switch the task to {entry.task}")
        choice = _entry_choice(entry, cache, catalogue)
        if require_installed and not choice.installed:
            problem = "publishes code, not weights" if choice.action == "train" else "is not installed yet"
            raise InputError(f"model {text!r} {problem}", None, choice.instructions)
        return choice
    path = Path(text).expanduser()
    if path.exists():
        choice = _folder_choice(path)
        if choice.task is not None and choice.task is not task:
            raise InputError(f"the model card says task {choice.task}, not {task}", path,
                             f"choose a {task} model, or switch the task to {choice.task}")
        return choice
    ids = [c.id for c in models_for_task(task, cache, catalogue)]
    close = difflib.get_close_matches(text, ids, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(f"{text!r} is neither a model of the list nor an existing folder", None,
                     hint + f"choose one of: {', '.join(ids) or '(none for this task)'}, or browse to a model folder")


#: What the info line says while the box is empty.
NO_MODEL_TEXT = ("No model chosen: pick one in the list (a model marked 'not installed' is installed with the "
                 "Download or Import button), or press Browse... and choose a model folder.")


@dataclass(frozen=True)
class ModelBoxState:
    """Everything the panel shows for the model box's text: the info line and which buttons work."""

    model: str          # what goes into the parameter node (an id without its marker, or a path)
    info_text: str
    can_download: bool
    can_import: bool
    can_run: bool       # Apply may start with this model
    offer: str = ""     # not installed: Apply offers this action ("download" or "import") instead of running

    @property
    def apply_enabled(self) -> bool:
        """Apply is pressable: it runs (``can_run``) or offers the Download / Import (:func:`apply_offer`)."""
        return self.can_run or bool(self.offer)


def model_box_state(text: str, task: Task | str, cache: str | Path | None = None,
                    catalogue: str | Path | None = None) -> ModelBoxState:
    """The panel's view of ``text`` (never raises for what the user typed: a problem becomes the info line).

    Example:
        >>> s = model_box_state("HECKTOR2025-MEDAI  [not installed: Import]", "petct")
        >>> s.model, s.can_import, s.can_download, s.can_run
        ('HECKTOR2025-MEDAI', True, False, False)
    """
    model = model_id_from_box(text)
    if not model:
        return ModelBoxState("", NO_MODEL_TEXT + _none_installed_suffix(task, cache, catalogue), False, False, False)
    try:
        choice = choose_model(model, task, cache, catalogue)
    except InputError as exc:
        return ModelBoxState(model, str(exc), False, False, False)
    ready = choice.is_path or choice.installed
    info = choice.info_text() + ("" if ready else _none_installed_suffix(task, cache, catalogue))
    offer = choice.action if not ready and choice.action in ("download", "import") else ""
    return ModelBoxState(model, info, offer == "download", offer == "import", ready, offer)


def no_model_installed_text(task: Task | str, cache: str | Path | None = None,
                            catalogue: str | Path | None = None) -> str:
    """Where to get a model when none of ``task`` is installed ("" when one is): what the panel shows.

    Example:
        >>> print(no_model_installed_text("prert"))   # no bundled pre-RT model: Import, or your own folder
        No pre-RT model is installed yet. Get one: choose UW-LAIR-hntsmrg24-task1 or hntsmrg24-sztu-stunet-b
        in the list ...
        >>> no_model_installed_text("midrt")          # the bundled demo model is installed
        ''
    """
    task = Task.parse(task)
    choices = models_for_task(task, cache, catalogue)
    if any(c.installed for c in choices):
        return ""
    download = [c.id for c in choices if c.action == "download"]
    by_hand = [c.id for c in choices if c.action in ("import", "train")]
    ways = []
    if download:
        ways.append(f"choose {' or '.join(download)} in the list and press Download (its size and licence are "
                    "shown before anything is downloaded)")
    if by_hand:
        ways.append(f"choose {' or '.join(by_hand)} in the list and follow the line shown under it (download by "
                    "hand, then Import)")
    ways.append("or press Browse... and choose a model folder (a model.json folder or an nnU-Net results folder)")
    return (f"No {_TASK_WORDS[task]} model is installed yet. Get one: " + "; ".join(ways)
            + ". README section 1, 'First model', walks through it.")


_TASK_WORDS = {Task.PRERT: "pre-RT", Task.MIDRT: "mid-RT", Task.PETCT: "PET/CT"}


def _none_installed_suffix(task: Task | str, cache, catalogue) -> str:
    text = no_model_installed_text(task, cache, catalogue)
    return f"\n{text}" if text else ""


@dataclass(frozen=True)
class ApplyOffer:
    """What Apply offers instead of running when the chosen model is not installed (the widget asks it)."""

    model_id: str
    action: str      # "download" or "import": the button Apply presses for the user after a yes
    question: str    # the dialog's text: what, size / licence, what happens next


def apply_offer(text: str, task: Task | str, cache: str | Path | None = None,
                catalogue: str | Path | None = None) -> ApplyOffer | None:
    """Apply with a model not installed yet: offer to Download (or Import) it; None when Apply can run.

    An empty box offers the task's first downloadable catalogue model when none is installed.
    Nothing is downloaded here: a yes makes the widget press Download, whose licence dialog
    (non-commercial or unstated licences) and size line come before the first byte.

    Example:
        >>> offer = apply_offer("GradientSegHNTS  [not installed: Download]", "midrt")
        >>> offer.action, offer.question.split(".")[0]
        ('download', 'GradientSegHNTS is not installed yet')
        >>> apply_offer("demo-midrt", "midrt") is None              # bundled: Apply runs
        True
    """
    task = Task.parse(task)
    model = model_id_from_box(text)
    if not model:
        if any(c.installed for c in models_for_task(task, cache, catalogue)):
            return None
        first = next((c for c in models_for_task(task, cache, catalogue) if c.action == "download"), None)
        if first is None:
            return None
        model = first.id
    try:
        choice = choose_model(model, task, cache, catalogue)
    except InputError:
        return None   # the info line already says what is wrong; Apply then reports it in one line
    if choice.is_path or choice.installed or choice.action not in ("download", "import"):
        return None
    if choice.action == "download":
        question = (f"{choice.id} is not installed yet. Download it now? Licence: {choice.licence}. Its size is "
                    "shown before the first byte; the download runs in the background, then press Apply again.")
    else:
        question = (f"{choice.id} is not installed yet and is downloaded by hand. {choice.instructions} "
                    "Open the Import dialog now?")
    return ApplyOffer(choice.id, choice.action, question)


# ---- demo models on real images ------------------------------------------------------------------
#: The line the panel shows when a demo model meets an image that is not one of the project's phantoms.
DEMO_WARNING = "Demo model, synthetic training, not for clinical images."
#: A volume node attribute that marks an image as one of the project's phantoms (any value but "0"/"").
PHANTOM_ATTRIBUTE = "HNTumorSeg.Phantom"
#: The phantoms' size rule: every phantom generator (``HNTumorSegLib.phantoms``: MRI 96 x 96 in-plane,
#: PET/CT 128, registration pairs 112, the Sample Data cases 96) makes at most one axis longer than this;
#: head-and-neck CT and T2w MRI have 256 voxels or more on both in-plane axes.
PHANTOM_MAX_VOXELS = 128


def is_demo_model(text: str, task: Task | str, cache: str | Path | None = None,
                  catalogue: str | Path | None = None) -> bool:
    """True when the model's card says it was trained on phantoms (``training.phantom_seeds``, written by
    the demo trainer, ``training/hntumorseg_training/demo_model.py``); False for any other or unreadable model.

    Example:
        >>> is_demo_model("demo-midrt", "midrt"), is_demo_model("GradientSegHNTS", "midrt")
        (True, False)
    """
    from ..models.catalogue import installed_path

    try:
        choice = choose_model(text, task, cache, catalogue)
        folder = Path(choice.id) if choice.is_path else installed_path(choice.id, cache)
        if folder is None or not (folder / CARD_NAME).is_file():
            return False
        training = read_card(folder / CARD_NAME).extra.get("training")
    except InputError:
        return False
    return isinstance(training, dict) and bool(training.get("phantom_seeds"))


def is_project_phantom(volume_node) -> bool:
    """Whether a volume is one of the project's phantoms: marked (:data:`PHANTOM_ATTRIBUTE`), or within the
    phantoms' size rule (at most one axis longer than :data:`PHANTOM_MAX_VOXELS` voxels).

    The size rule needs no marker in the file, so the phantoms written as NIfTI, NRRD or DICOM by
    ``HNTumorSegLib.phantoms`` and the Sample Data cases all count, whatever their node names; a
    clinical head-and-neck CT or T2w MRI (256 voxels or more on both in-plane axes) never does.
    A real image cut down to 128 voxels or fewer would pass as a phantom: such exports are rare and
    a clinician contouring on one is told by the model card's own line (intended use) in the info line.
    """
    marker = (volume_node.GetAttribute(PHANTOM_ATTRIBUTE) or "").strip()
    if marker and marker != "0":
        return True
    image = volume_node.GetImageData()
    if image is None:
        return False
    dims = sorted(image.GetDimensions())
    return dims[1] <= PHANTOM_MAX_VOXELS


def demo_warning(text: str, task: Task | str, volume_node, cache: str | Path | None = None,
                 catalogue: str | Path | None = None) -> str:
    """:data:`DEMO_WARNING` when a demo model (:func:`is_demo_model`) is to run on, or ran on, a volume that
    is not a project phantom (:func:`is_project_phantom`); "" otherwise (or without a volume).

    Example (a 512 x 512 x 40 image, as a clinical T2w MRI, and a 96 x 96 x 32 phantom):
        >>> from HNTumorSegLib.image import Image
        >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
        >>> import numpy as np
        >>> scene = make_scene().scene
        >>> clinical = volume_node_from_image(scene, Image(np.zeros((40, 512, 512), np.int16), (0.5, 0.5, 3.0)), "T2")
        >>> demo_warning("demo-midrt", "midrt", clinical)
        'Demo model, synthetic training, not for clinical images.'
        >>> phantom = volume_node_from_image(scene, Image(np.zeros((32, 96, 96), np.int16), (0.9, 0.9, 3.0)), "T2")
        >>> demo_warning("demo-midrt", "midrt", phantom), demo_warning("GradientSegHNTS", "midrt", clinical)
        ('', '')
    """
    if volume_node is None or not is_demo_model(text, task, cache, catalogue):
        return ""
    return "" if is_project_phantom(volume_node) else DEMO_WARNING
