"""What the Slicer panel's Download and Import buttons do (no Qt here; the widget only shows it).

* :func:`install_plan` - for the selected model: which button applies (``download`` for Hugging
  Face / URL entries, ``import`` for releases downloaded by hand, none for bundled or installed
  ones), the licence text and whether it needs the licence dialog (non-commercial, unstated),
  whether a commit must be typed (Hugging Face entries the catalogue pins none for), and what to
  click (a missing model says what to click, not which command to run);
* :class:`InstallJob` - runs ``hntumorseg models fetch|import ... --progress json`` in a child
  process (the Slicer module never imports torch, and a download must not freeze the UI; the
  child is ``PythonSlicer`` inside Slicer, :func:`~HNTumorSegLib.childproc.default_python`,
  started like every child by :func:`~HNTumorSegLib.childproc.start`); the
  widget polls it from a timer: ``poll()`` gives the latest stage, fraction and message, then
  ``done`` with the return code and the error line (exit 2: the reason, e.g. a changed byte);
* :func:`configurations_in` - the nnU-Net results folders of a downloaded zip or folder, read
  without unpacking, so the panel can ask which one before Import starts (the command would stop).

The licence is the caller's to ask: a plan with ``needs_acceptance`` starts no job until the
dialog was accepted (``accepted=True``); a refusal starts nothing and writes nothing.

Example (an empty cache in the working folder; the zip was not downloaded, so the child stops with exit 2):
    >>> import time
    >>> plan = install_plan("HECKTOR2025-MEDAI", cache="cache")
    >>> plan.action, plan.needs_acceptance
    ('import', True)
    >>> InstallJob.import_(plan, "medai.zip", cache="cache")        # the licence dialog was not accepted
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.InputError: HECKTOR2025-MEDAI: its licence (CC-BY-NC-4.0 ...) was not accepted ...
    >>> job = InstallJob.import_(plan, "medai.zip", accepted=True, cache="cache").start()
    >>> while not job.poll().done: time.sleep(0.2)
    >>> state = job.poll()
    >>> state.returncode, state.stage_text()       # the panel shows the child's error line
    (2, 'hntumorseg models: error: medai.zip: not found - give the folder or zip you downloaded')

Testing/test_models_panel_install.py imports a real zip and downloads from a local hub this way.
"""

from __future__ import annotations

import re
import threading
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..childproc import Child, default_python, start
from ..errors import InputError
from ..models.catalogue import is_installed, manual_instructions, read_catalogue


@dataclass(frozen=True)
class InstallPlan:
    """The buttons' state for one catalogue model."""

    model_id: str
    action: str               # "download", "import", "" (nothing to do) or "train" (code only)
    licence: str
    needs_acceptance: bool
    needs_revision: bool
    instructions: str         # what to click, in the panel's words

    def licence_dialog_text(self) -> str:
        """The text of the licence dialog (shown before Download / Import when ``needs_acceptance``)."""
        return (f"{self.model_id} is licensed: {self.licence}.\n\nBy accepting you confirm that your use "
                "complies with this licence (non-commercial licences: research and other non-commercial use "
                "only; an unstated licence: ask the authors before any use beyond research).")


def install_plan(model_id: str, cache: str | Path | None = None, catalogue: str | Path | None = None) -> InstallPlan:
    """The plan for ``model_id`` (InputError for an unknown id)."""
    entry = next((e for e in read_catalogue(catalogue) if e.id == model_id), None)
    if entry is None:
        raise InputError(f"no catalogue model named {model_id!r}", None, "choose a model in the list")
    common: dict[str, Any] = dict(model_id=entry.id, licence=entry.licence, needs_acceptance=entry.needs_acceptance)
    if entry.kind == "source-only":
        return InstallPlan(action="train", needs_revision=False,
                           instructions=f"This model publishes code, not weights ({entry.homepage or entry.url}): "
                                        "train it, then press Browse... and choose the results folder.", **common)
    if entry.bundled or is_installed(entry, cache):
        return InstallPlan(action="", needs_revision=False, instructions="Installed.", **common)
    if entry.manual:
        return InstallPlan(action="import", needs_revision=False,
                           instructions=f"Not installed. {manual_instructions(entry).split(', then run:')[0]}, "
                                        "then press Import and choose the downloaded zip or folder.", **common)
    if not entry.hub and not (entry.url and entry.download_sha256):   # no verifiable download: by hand, then Import
        return InstallPlan(action="import", needs_revision=False,
                           instructions=f"Not installed. Download the weights from {entry.homepage or entry.url} "
                                        "(no checksum is published: check the file with the authors), then press "
                                        "Import and choose the downloaded zip or folder.", **common)
    needs_revision = bool(entry.hub) and not (entry.hub or {}).get("revision")
    what = ("press Download and type the commit hash you checked on the model's Hugging Face page"
            if needs_revision else "press Download")
    return InstallPlan(action="download", needs_revision=needs_revision,
                       instructions=f"Not installed: {what}.", **common)


@dataclass
class JobState:
    """What :meth:`InstallJob.poll` reports."""

    stage: str = "start"
    fraction: float = 0.0
    message: str = ""
    done: bool = False
    returncode: int | None = None
    error: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def percent(self) -> int:
        """For the progress bar (0-100)."""
        return max(0, min(100, round(100 * self.fraction)))

    @property
    def ok(self) -> bool:
        return self.done and self.returncode == 0

    def stage_text(self) -> str:
        """For the stage label: ``download: 12 of 40 MB`` while running; the result or the error line when done."""
        if self.done:
            if self.ok:
                return "Installed: press Apply to run it."
            return self.error or f"failed (exit {self.returncode})"
        return f"{self.stage}: {self.message}" if self.message else self.stage


class InstallJob:
    """A ``models fetch`` / ``models import`` child process with JSON progress (module docstring)."""

    def __init__(self, argv: list[str], python: str | None = None, env: dict | None = None):
        self.argv = [python or default_python(), "-m", "HNTumorSegLib", *argv, "--progress", "json"]
        self.env = env
        self.state = JobState()
        self._child: Child | None = None
        self._lock = threading.Lock()

    @classmethod
    def download(cls, plan: InstallPlan, revision: str | None = None, accepted: bool = False,
                 cache: str | None = None, **kwargs) -> "InstallJob":
        _check(plan, "download", accepted)
        revision = (revision or "").strip() or None
        if plan.needs_revision and not (revision and _COMMIT.fullmatch(revision)):
            problem = f"{revision!r} is not a commit" if revision else "no commit given"
            raise InputError(f"{plan.model_id}: {problem}", None,
                             "type the full 40-character commit hash from the model's Hugging Face page")
        argv = ["models", "fetch", plan.model_id] + (["--revision", revision] if revision else [])
        return cls(argv + _common(accepted, cache), **kwargs)

    @classmethod
    def import_(cls, plan: InstallPlan, source: str | Path, accepted: bool = False, configuration: str | None = None,
                cache: str | None = None, **kwargs) -> "InstallJob":
        _check(plan, "import", accepted)
        argv = ["models", "import", str(source), "--id", plan.model_id]
        argv += ["--configuration", configuration] if configuration else []
        return cls(argv + _common(accepted, cache), **kwargs)

    def start(self) -> "InstallJob":
        """Start the child (its own process group, this very HNTumorSegLib on its path) and its reader."""
        self._child = start(self.argv, env=self.env, name="install")
        threading.Thread(target=self._read, daemon=True, name="hntumorseg-install-read").start()
        return self

    def _read(self) -> None:
        from ..protocol import ProgressEvent

        child = self._child
        assert child is not None
        while not child.eof:
            for line in child.read(timeout=None):
                event = child.parse(line)
                if event is None:
                    with self._lock:
                        self.state.lines.append(line.rstrip())
                elif isinstance(event, ProgressEvent):
                    with self._lock:
                        self.state.stage, self.state.fraction, self.state.message = \
                            event.stage, event.fraction, event.message
        code = child.wait()
        last = next((ln.strip() for ln in reversed(child.stderr_tail) if ln.strip()), "")
        with self._lock:
            self.state.returncode, self.state.done = code, True
            self.state.error = last if code else ""

    def poll(self) -> JobState:
        with self._lock:
            return replace(self.state, lines=list(self.state.lines))   # a copy: the reader thread goes on

    def cancel(self) -> None:
        """End the child's whole tree (SIGTERM, SIGKILL after 1 s) without blocking the caller (a GUI)."""
        child = self._child
        if child is not None and child.alive:
            threading.Thread(target=child.kill_tree, args=(1.0,), daemon=True, name="hntumorseg-install-cancel").start()


_COMMIT = re.compile(r"[0-9a-fA-F]{40}")


def configurations_in(source: str | Path) -> list[str]:
    """Names of the nnU-Net results folders (``plans.json`` + ``dataset.json`` + ``fold_N/``) in a zip or folder.

    Read from the zip's member list or the folder's files (nothing unpacked or imported); more
    than one: the panel asks which to import (``--configuration``). Example: a MEDAI-style export
    zip holding ``Dataset*/nnUNetTrainer__nnUNetPlans__3d_fullres/`` and ``.../3d_lowres/`` gives both names.
    """
    source = Path(source).expanduser()
    if source.is_file() and source.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(source) as zf:
                names = [n.rstrip("/") for n in zf.namelist()]
        except (zipfile.BadZipFile, OSError):
            return []   # the import itself then says what is wrong with the file, in one line
    elif source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*")]
    else:
        return []
    parts: dict[str, set[str]] = {}
    for name in names:
        bits = name.split("/")
        parts.setdefault("/".join(bits[:-1]), set()).add(bits[-1])
        for i, bit in enumerate(bits[:-1]):   # zips need not list their folders: fold_N from any member below it
            if bit.startswith("fold_"):
                parts.setdefault("/".join(bits[:i]), set()).add("fold_")
    found = [d for d, leaves in parts.items() if {"plans.json", "dataset.json", "fold_"} <= leaves]
    return sorted(d.rpartition("/")[2] or source.stem for d in found)


def _check(plan: InstallPlan, action: str, accepted: bool) -> None:
    if plan.action != action:
        raise InputError(f"{plan.model_id} cannot be installed with {action.capitalize()}", None, plan.instructions)
    if plan.needs_acceptance and not accepted:
        raise InputError(f"{plan.model_id}: its licence ({plan.licence}) was not accepted", None,
                         "accept the licence in the dialog to continue")


def _common(accepted: bool, cache: str | None) -> list[str]:
    return (["--accept-licence"] if accepted else []) + (["--cache", str(cache)] if cache else [])
