"""Errors a user can act on.

Every mistake a user can make (a missing file, a 2D image, a label outside {0,1,2},
boxes outside the image ...) raises :class:`InputError`. The command line turns it
into one line on stderr and exit code 2, the worker into an ``error`` event of kind
``bad_input``, the Slicer module into a message box. The message always says what is
wrong, which file, and what to do.

Example:
    >>> raise InputError("is not a 3D image (it has 2 dimensions)",
    ...                  path="ct.nii.gz", fix="give a 3D volume")
"""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2


class HNTumorSegError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(HNTumorSegError, ValueError):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""

    kind = "bad_input"

    def __init__(self, problem: str, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f" - {self.fix}"
        return " ".join(text.split())


class ModelError(InputError):
    """A model folder or checkpoint that cannot be used (missing fold, bad card ...)."""

    kind = "model"


class DeviceError(InputError):
    """A device was asked for explicitly and is not present."""

    kind = "device"


class WorkerFailed(HNTumorSegError):
    """The background worker failed in a way the inputs cannot fix (out_of_memory, internal,
    crashed, timeout): reported as one line and exit code 1."""


EXIT_ENVIRONMENT = 1


class EnvironmentFault(HNTumorSegError):
    """The machine, not the user's input, stopped the job: a full disk, a quota, an I/O error, a
    file system that does not answer. One line naming the path (and the free space for a full
    disk), exit code 1, and no partial output (:mod:`HNTumorSegLib.fileio`)."""

    kind = "environment"

    def __init__(self, problem: str, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    one_line = InputError.one_line
