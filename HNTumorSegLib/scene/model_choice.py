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
        return ModelBoxState("", NO_MODEL_TEXT, False, False, False)
    try:
        choice = choose_model(model, task, cache, catalogue)
    except InputError as exc:
        return ModelBoxState(model, str(exc), False, False, False)
    ready = choice.is_path or choice.installed
    return ModelBoxState(model, choice.info_text(), not ready and choice.action == "download",
                         not ready and choice.action == "import", ready)
