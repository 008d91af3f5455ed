"""The fixed words of HNTumorSeg, defined once (docs/design.md "Rules of the house").

Every closed set of values a user or a file can name - the task, the device, the progress
mode, what the pipeline writes, the Slicer quality - is one ``StrEnum`` here. Values are
converted where they enter (command line ``type=``, ``request.json``, ``model.json``, the
Slicer parameter node) with ``Enum.parse(text)``, which gives one :class:`InputError` line
with a "did you mean" on a typo. Past that point the code compares enum members, which are
also plain strings (``Task.MIDRT == "midrt"``), so JSON and f-strings need no conversion.

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
from typing import Any, TypeVar

from .errors import InputError

try:  # Python >= 3.11
    from enum import StrEnum as _StrEnumBase
except ImportError:  # pragma: no cover - Python 3.10 (older Slicer builds)
    class _StrEnumBase(str, Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)

E = TypeVar("E", bound="VocabEnum")

# The word each vocabulary is called in messages (a class attribute would become an enum member).
_WHAT = {"ProgressMode": "progress mode", "OutputKind": "output kind", "NetworkOutput": "model output"}


def did_you_mean(text: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean midrt?)`` when ``text`` is close to one of ``choices``, else ``""``."""
    close = difflib.get_close_matches(str(text).strip().lower(), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


class VocabEnum(_StrEnumBase):
    """A StrEnum with :meth:`parse` (case-insensitive, "did you mean" on a typo)."""

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
        if isinstance(text, cls):
            return text
        word = what or cls.what()
        key = str(text).strip().lower() if text is not None else ""
        for member in cls:
            if member.value == key:
                return member
        choices = cls.values()
        raise InputError(f"unknown {word} {text!r}{did_you_mean(key, choices)}", None,
                         f"use one of {', '.join(choices)}")

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


class NetworkOutput(VocabEnum):
    """How a model's output channels are read (``model.json`` ``output``): one softmax over the
    labels, or two sigmoid maps (GTVp, GTVn) fused as in seed 002."""

    SOFTMAX = "softmax"
    SIGMOID_REGIONS = "sigmoid_regions"



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


__all__ = ["VocabEnum", "Task", "MRI_TASKS", "Device", "ProgressMode", "OutputKind", "Quality", "NetworkOutput",
           "HoleStyle", "Challenge", "parse_device", "did_you_mean"]


class Challenge(VocabEnum):
    """The challenges whose ranking metrics ``evaluate --challenge`` prints (:mod:`HNTumorSegLib.metrics.challenges`)."""

    HNTSMRG2024 = "hntsmrg2024"
    HECKTOR2025 = "hecktor2025"


class HoleStyle(VocabEnum):
    """How RTSTRUCT writes a hole in a contour (:mod:`HNTumorSegLib.export.contours`)."""

    NESTED = "nested"  # outer and inner contours, read with the even-odd rule (default)
    KEYHOLE = "keyhole"  # one contour per island, the hole joined by a zero-width cut
