"""What the Slicer panel's Download and Import buttons do (no Qt here; the widget only shows it).

* :func:`install_plan` - for the selected model: which button applies (``download`` for Hugging
  Face / URL entries, ``import`` for releases downloaded by hand, none for bundled or installed
  ones), the licence text and whether it needs the licence dialog (non-commercial, unstated),
  whether a commit must be typed (Hugging Face entries the catalogue pins none for), and what to
  click (a missing model says what to click, not which command to run);
* :class:`InstallJob` - runs ``hntumorseg models fetch|import ... --progress json`` in a child
  process (the Slicer module never imports torch, and a download must not freeze the UI); the
  widget polls it from a timer: ``poll()`` gives the latest stage, fraction and message, then
  ``done`` with the return code and the error line (exit 2: the reason, e.g. a changed byte).

Example:
    >>> plan = install_plan("HECKTOR2025-MEDAI")
    >>> plan.action, plan.needs_acceptance
    ('import', True)
    >>> job = InstallJob.import_(plan, "/home/me/Downloads/medai.zip", accepted=True).start()
    >>> while not job.poll().done: time.sleep(0.2)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

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
    common = dict(model_id=entry.id, licence=entry.licence, needs_acceptance=entry.needs_acceptance)
    if entry.kind == "source-only":
        return InstallPlan(action="train", needs_revision=False,
                           instructions=f"This model publishes code, not weights ({entry.homepage or entry.url}): "
                                        "train it and browse to the results folder.", **common)
    if entry.bundled or is_installed(entry, cache):
        return InstallPlan(action="", needs_revision=False, instructions="Installed.", **common)
    if entry.manual:
        return InstallPlan(action="import", needs_revision=False,
                           instructions=f"Not installed. {manual_instructions(entry).split(', then run:')[0]}, "
                                        "then press Import and choose the downloaded zip or folder.", **common)
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


class InstallJob:
    """A ``models fetch`` / ``models import`` child process with JSON progress (module docstring)."""

    def __init__(self, argv: list[str], python: str | None = None, env: dict | None = None):
        self.argv = [python or sys.executable, "-m", "HNTumorSegLib", *argv, "--progress", "json"]
        self.env = env
        self.state = JobState()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @classmethod
    def download(cls, plan: InstallPlan, revision: str | None = None, accepted: bool = False,
                 cache: str | None = None, **kwargs) -> "InstallJob":
        _check(plan, "download", accepted)
        if plan.needs_revision and not revision:
            raise InputError(f"{plan.model_id}: no commit given", None,
                             "type the 40-character commit hash from the model's Hugging Face page")
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
        env = {**os.environ, **(self.env or {})}
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        from ..protocol import ProgressEvent, ProtocolError, parse_event

        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                event = parse_event(line.strip())
            except ProtocolError:
                with self._lock:
                    self.state.lines.append(line.rstrip())
                continue
            if isinstance(event, ProgressEvent):
                with self._lock:
                    self.state.stage, self.state.fraction, self.state.message = \
                        event.stage, event.fraction, event.message
        err = self._proc.stderr.read() if self._proc.stderr else ""
        code = self._proc.wait()
        with self._lock:
            self.state.returncode, self.state.done = code, True
            self.state.error = err.strip().splitlines()[-1] if code and err.strip() else ""

    def poll(self) -> JobState:
        with self._lock:
            return JobState(**{k: (list(v) if isinstance(v, list) else v) for k, v in self.state.__dict__.items()})

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()


def _check(plan: InstallPlan, action: str, accepted: bool) -> None:
    if plan.action != action:
        raise InputError(f"{plan.model_id} cannot be installed with {action.capitalize()}", None, plan.instructions)
    if plan.needs_acceptance and not accepted:
        raise InputError(f"{plan.model_id}: its licence ({plan.licence}) was not accepted", None,
                         "accept the licence in the dialog to continue")


def _common(accepted: bool, cache: str | None) -> list[str]:
    return (["--accept-licence"] if accepted else []) + (["--cache", str(cache)] if cache else [])
