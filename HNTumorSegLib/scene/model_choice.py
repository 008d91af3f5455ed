"""What the panel's model box offers and accepts: catalogue models for the task, or a typed/browsed folder.

The model box is editable: it lists the catalogue's models *for the chosen task* that can run
(bundled, installed, or downloadable with a published checksum; source-only entries publish no
weights and are left out), and the user may type or browse to a model folder (a model card
folder or an nnU-Net results folder). Whatever is chosen, the panel shows its licence and
source next to it, because a model's licence must be seen before it is used.

:func:`models_for_task` gives the list; :func:`choose_model` turns the box's text into a
:class:`ModelChoice` (or an :class:`~HNTumorSegLib.errors.InputError` saying what to do), without
loading any weights, so it can run on every keystroke.

Example:
    >>> [c.id for c in models_for_task("midrt")]
    ['demo-midrt']
    >>> choose_model("demo-midrt", "midrt").licence
    'Apache-2.0'
    >>> choose_model("/data/results/Dataset501_midRT", "midrt").is_path  # an existing folder
    True
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..models.card import CARD_NAME, read_card
from ..models.catalogue import CatalogueEntry, is_installed, read_catalogue
from ..vocab import Task

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

    @property
    def status(self) -> str:
        if self.is_path or self.installed:
            return ""
        return f"not installed yet: hntumorseg models fetch {self.id}"

    def info_text(self) -> str:
        """The line shown under the model box."""
        parts = [f"Licence: {self.licence}", f"Source: {self.source}"]
        if self.status:
            parts.append(self.status)
        return " | ".join(parts)


def _entry_choice(entry: CatalogueEntry, cache: str | Path | None) -> ModelChoice:
    source = entry.homepage or entry.url or entry.citation
    return ModelChoice(entry.id, entry.title, Task.parse(entry.task), entry.licence, source,
                       is_installed(entry, cache))


def _runnable(entry: CatalogueEntry, cache: str | Path | None) -> bool:
    """Source-only entries publish no weights; one without a published checksum is listed once
    the user has fetched it (``models fetch ID --url ... --sha256 ...``), not before."""
    return entry.kind != "source-only" and (entry.bundled or bool(entry.sha256) or is_installed(entry, cache))


def models_for_task(task: Task | str, cache: str | Path | None = None,
                    catalogue: str | Path | None = None) -> list[ModelChoice]:
    """Catalogue models for ``task`` that can run: bundled first, then installed, then fetchable."""
    task = Task.parse(task)
    choices = [_entry_choice(e, cache) for e in read_catalogue(catalogue)
               if Task.parse(e.task) is task and _runnable(e, cache)]
    return sorted(choices, key=lambda c: (not c.installed, c.id))


def _folder_choice(path: Path) -> ModelChoice:
    card_path = path / CARD_NAME if path.is_dir() else path
    if card_path.name == CARD_NAME and card_path.is_file():
        card = read_card(card_path)  # ModelError (an InputError) naming the field when the card is bad
        task = Task.parse(card.task) if card.task else None
        return ModelChoice(str(path), card.title or path.name, task, card.licence or LICENCE_UNKNOWN,
                           card.source or card.citation or str(path), True, is_path=True)
    return ModelChoice(str(path), f"model folder {path.name}", None, LICENCE_UNKNOWN, str(path), True, is_path=True)


def choose_model(text: str, task: Task | str, cache: str | Path | None = None,
                 catalogue: str | Path | None = None) -> ModelChoice:
    """The model the box's ``text`` names for ``task``: a catalogue id or an existing folder.

    Raises :class:`InputError` for an empty box, an id of another task, a source-only id, or a
    name that is neither an id nor an existing path (with the closest ids of this task).
    """
    task = Task.parse(task)
    text = (text or "").strip()
    if not text:
        raise InputError("no model selected", None, "choose a model in the list, or type / browse a model folder")
    entries = {e.id: e for e in read_catalogue(catalogue)}
    entry = entries.get(text)
    if entry is not None:
        if Task.parse(entry.task) is not task:
            raise InputError(f"model {text!r} is for the {entry.task} task, not {task}", None,
                             f"choose a {task} model, or switch the task to {entry.task}")
        if entry.kind == "source-only":
            raise InputError(f"model {text!r} publishes code, not weights", None,
                             f"train it ({entry.homepage or entry.url}) and browse to the results folder")
        return _entry_choice(entry, cache)
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
