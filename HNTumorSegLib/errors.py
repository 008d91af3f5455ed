"""Errors a user can act on, the error kinds they are reported as, and the exit codes.

Every mistake a user can make (a missing file, a 2D image, a label outside {0,1,2},
boxes outside the image ...) raises :class:`InputError`. The command line turns it
into one line on stderr and exit code 2, the worker into an ``error`` event of kind
``bad_input``, the Slicer module into a message box. The message always says what is
wrong, which file, and what to do.

Each class here has a ``kind``: the word its ``error`` event carries (docs/design.md "Worker
protocol"). These classes are the only definition of those words: :class:`HNTumorSegLib.vocab.ErrorKind`
is built from them (:func:`error_kinds`), and the protocol accepts exactly that set, so a kind
cannot be raised that the protocol would reject. A kind that only the client sees (the worker
``crashed``, a ``timeout``) has its class here too, so that it has a place to be defined.

Example:
    >>> str(InputError("is not a 3D image (it has 2 dimensions)", path="ct.nii.gz", fix="give a 3D volume"))
    'ct.nii.gz: is not a 3D image (it has 2 dimensions) - give a 3D volume'
    >>> InputError.kind, SendError.kind, WorkerFailed.kind
    ('bad_input', 'send', 'internal')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

#: Exit codes of every command (docs/design.md "Exit codes"): success; an environment fault or
#: an internal error; a problem the user can fix; 128 + the signal number when cancelled.
EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SIGNAL_BASE = 128
#: ``batch``: one or more cases failed; the others were written (README section 4).
EXIT_SOME_FAILED = 1


#: Longest path (characters) a message prints whole (Linux's PATH_MAX is 4096, real paths far shorter).
MESSAGE_PATH_MAX = 512


def short_path(path: str | Path, limit: int = MESSAGE_PATH_MAX) -> str:
    """``path`` as text, its middle replaced by "..." when longer than ``limit`` (head and tail kept).

    Why (issue 22): a 50 MB path given by mistake was echoed whole in the one-line error. Every
    error's :meth:`InputError.one_line` passes its words through here, so one rule holds for
    every message that prints a path.
    """
    text = str(path)
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"


def exit_for_signal(signum: int) -> int:
    """The exit code of a command stopped by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return EXIT_SIGNAL_BASE + int(signum)


class HNTumorSegError(Exception):
    """Base class of the errors this package raises on purpose. Every subclass has a ``kind``
    (see the module docstring); the base has none, so that each word is written once."""

    kind: ClassVar[str]


class _OneLine(Exception):
    """An error told as one line, ``path: problem - fix`` (what, which file, what to do); shared by
    :class:`InputError` and :class:`EnvironmentFault`."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f" - {self.fix}"
        return " ".join(short_path(word) for word in text.split())


class InputError(_OneLine, HNTumorSegError, ValueError):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""

    kind = "bad_input"


class ModelError(InputError):
    """A model folder or checkpoint that cannot be used (missing fold, bad card ...)."""

    kind = "model"


class DeviceError(InputError):
    """A device was asked for explicitly and is not present."""

    kind = "device"


class SendError(InputError):
    """The DICOM node could not be reached or refused what we sent (exit 2 on the command line;
    raised by :mod:`HNTumorSegLib.dicom.send`)."""

    kind = "send"


class WorkerFailed(HNTumorSegError):
    """The background worker failed in a way the inputs cannot fix (out_of_memory, internal,
    crashed, timeout, cancelled): reported as one line and exit code 1."""

    kind = "internal"


class OutOfMemory(WorkerFailed):
    """The computer ran out of memory, also in the pipeline's low-memory retry."""

    kind = "out_of_memory"


class WorkerCrashed(WorkerFailed):
    """The worker died without reporting (killed, segfault, could not start): the client's word."""

    kind = "crashed"


class WorkerTimedOut(WorkerFailed):
    """The worker ran past its time limit and was stopped: the client's word."""

    kind = "timeout"


class Cancelled(WorkerFailed):
    """The job was cancelled (by the user, or its client went away): nothing was published."""

    kind = "cancelled"


class EnvironmentFault(_OneLine, HNTumorSegError):
    """The machine, not the user's input, stopped the job: a full disk, a quota, an I/O error, a
    file system that does not answer. One line naming the path (and the free space for a full
    disk), exit code 1, and no partial output (:mod:`HNTumorSegLib.fileio`)."""

    kind = "environment"


def error_classes() -> tuple[type[HNTumorSegError], ...]:
    """Every error class of this module that has a kind, in definition order."""
    return tuple(v for v in globals().values() if isinstance(v, type) and issubclass(v, HNTumorSegError)
                 and v.__module__ == __name__ and v is not HNTumorSegError)


def error_kinds() -> tuple[str, ...]:
    """Every ``kind`` of :func:`error_classes`, once each, in definition order: the source of
    :class:`HNTumorSegLib.vocab.ErrorKind`."""
    return tuple(dict.fromkeys(cls.kind for cls in error_classes()))


def error_class(kind: str) -> type[HNTumorSegError]:
    """The class that defines ``kind``: how the client turns a worker's ``error`` event back
    into an exception. ``KeyError`` for a word no class defines."""
    for cls in error_classes():
        if cls.__dict__.get("kind") == kind:
            return cls
    raise KeyError(kind)


def exit_code_for(kind: str) -> int:
    """The command's exit code for an error of ``kind``: 2 when the user can fix it, else 1."""
    return EXIT_BAD_INPUT if issubclass(error_class(kind), InputError) else EXIT_INTERNAL
