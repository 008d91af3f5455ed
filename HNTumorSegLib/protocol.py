"""Worker protocol: the events the background worker prints, one JSON object per line.

docs/design.md "Worker protocol": the parent writes ``request.json``; the child prints
``{"event": "progress", ...}``, ``{"event": "result", ...}`` or ``{"event": "error", ...}``
lines on stdout. This module is the single definition of those lines (their error kinds are
:class:`~HNTumorSegLib.vocab.ErrorKind`), used by the worker
(:mod:`HNTumorSegLib.worker`), its client (:mod:`HNTumorSegLib.runner`), the command line
and the Slicer module. It imports nothing heavy.

Example:
    >>> line = ProgressEvent("inference", 0.42, "fold 1/5, tile 3/8", eta_s=12.0).to_json()
    >>> parse_event(line).fraction
    0.42
    >>> parse_event('{"event": "error", "kind": "bad_input", "message": "no T2"}').kind
    'bad_input'
"""

from __future__ import annotations

import json
import math
import queue
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .errors import InputError
from .fileio import loads_json
from .vocab import ErrorKind, did_you_mean

#: The error kinds an ``error`` event may carry: :class:`~HNTumorSegLib.vocab.ErrorKind`, which is
#: built from the exception classes of :mod:`HNTumorSegLib.errors` (the only place the words are written).
ERROR_KINDS: tuple[str, ...] = ErrorKind.values()
#: Kinds a user can fix by changing the inputs, the model, the device or the DICOM node (exit code 2).
USER_ERROR_KINDS: tuple[str, ...] = tuple(k.value for k in ErrorKind if k.user_fixable)


class ProtocolError(ValueError):
    """A line on the worker's stdout that is not a valid event."""


@dataclass
class ProgressEvent:
    """Where the worker is.

    ``fraction`` is the whole job's fraction in [0, 1] and never decreases within a run;
    ``stage_fraction`` is the fraction of the current stage; ``eta_s`` the estimated seconds
    left (None until it can be estimated). ``message`` is case-neutral (no names, no paths).
    """

    stage: str
    fraction: float
    message: str = ""
    eta_s: float | None = None
    elapsed_s: float = 0.0
    stage_fraction: float | None = None
    event: str = field(default="progress", init=False)

    def to_json(self) -> str:
        return _dumps(self)


@dataclass
class ResultEvent:
    """The job finished: ``files`` maps a role (``labels``, ``probabilities`` ...) to a path;
    ``timings`` maps a stage to seconds; ``info`` holds anything else (model id, device, retries)."""

    files: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    event: str = field(default="result", init=False)

    def to_json(self) -> str:
        return _dumps(self)


@dataclass
class ErrorEvent:
    """The job failed. ``kind`` is one of :data:`ERROR_KINDS`; ``message`` is one line a
    clinician can act on (what is wrong, which file, what to do)."""

    kind: str
    message: str
    event: str = field(default="error", init=False)

    def __post_init__(self) -> None:
        if self.kind not in ERROR_KINDS:
            raise ProtocolError(f"unknown error kind {self.kind!r}{did_you_mean(self.kind, ERROR_KINDS)} "
                                f"(expected one of {', '.join(ERROR_KINDS)})")

    @property
    def user_fixable(self) -> bool:
        return ErrorKind(self.kind).user_fixable

    def to_json(self) -> str:
        return _dumps(self)


Event = Union[ProgressEvent, ResultEvent, ErrorEvent]


def _finite(x: float | None) -> float | None:
    # JSON has no NaN/inf; an ETA that cannot be estimated is null.
    if x is None or not math.isfinite(float(x)):
        return None
    return float(x)


def _dumps(ev: Event) -> str:
    d = asdict(ev)
    if isinstance(ev, ProgressEvent):
        d["fraction"] = round(min(1.0, max(0.0, float(ev.fraction))), 4)
        d["eta_s"] = None if _finite(ev.eta_s) is None else round(float(ev.eta_s), 1)
        d["elapsed_s"] = round(float(ev.elapsed_s), 2)
        if ev.stage_fraction is not None:
            d["stage_fraction"] = round(min(1.0, max(0.0, float(ev.stage_fraction))), 4)
    # "event" first: easy to read in a log.
    ordered = {"event": d.pop("event")}
    ordered.update(d)
    return json.dumps(ordered, separators=(", ", ": "), allow_nan=False)


def event_object(line: str) -> dict:
    """The JSON object of one event line (``"event"`` key present); :class:`ProtocolError` otherwise.

    Read with the one depth-limited reader (:func:`HNTumorSegLib.fileio.loads_json`): a child's
    stdout may carry a line a library printed, and a deeply nested one must be a stray line, not a
    RecursionError that ends the client's reader thread."""
    try:
        d = loads_json(line, "event line")
    except InputError as exc:
        raise ProtocolError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(d, dict) or "event" not in d:
        raise ProtocolError(f"not an event object: {line[:80]!r}")
    return d


def parse_event(line: str) -> Event:
    """Parse one stdout line of the worker. Raises :class:`ProtocolError` if it is not an event."""
    return event_from_dict(event_object(line), line)


def event_from_dict(d: dict, line: str = "") -> Event:
    """The :data:`Event` of an already parsed event object (``line`` only for messages): a session's
    tagged line is parsed once, not dumped and parsed again."""
    d = dict(d)
    kind = d.pop("event")
    try:
        if kind == "progress":
            return ProgressEvent(
                stage=str(d["stage"]), fraction=float(d["fraction"]), message=str(d.get("message", "")),
                eta_s=_finite(d.get("eta_s")), elapsed_s=float(d.get("elapsed_s", 0.0)),
                stage_fraction=None if d.get("stage_fraction") is None else float(d["stage_fraction"]),
            )
        if kind == "result":
            return ResultEvent(files=dict(d["files"]), timings=dict(d.get("timings", {})), info=dict(d.get("info", {})))
        if kind == "error":
            return ErrorEvent(kind=str(d["kind"]), message=str(d["message"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad {kind} event: {exc}: {line[:80]!r}") from exc
    raise ProtocolError(f"unknown event type {kind!r}")


def drain_events(q: "queue.Queue", marker: Any = None) -> tuple[list, Any]:
    """What a handle's reader thread queued since the last poll, without blocking: ``(events, last)``,
    where ``last`` is the first final event (``result``/``error``, not in ``events``) or ``marker``
    (a handle's own "the channel died" object), at which draining stops; ``None`` when neither came.
    One loop for :class:`~HNTumorSegLib.session.client.SessionJob` and the server's ``RemoteJob``."""
    out: list = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return out, None
        if (marker is not None and item is marker) or isinstance(item, (ResultEvent, ErrorEvent)):
            return out, item
        out.append(item)


class RunHandle:
    """What a client's handle on one run shares, whether a one-shot worker
    (:class:`HNTumorSegLib.runner.WorkerRun`) or a request in a warm session
    (:class:`HNTumorSegLib.session.client.SessionJob`): ``events`` seen so far, ``state``,
    ``cancel()``, and removal of its temp folder; usable as a context manager that cancels and
    cleans up on exit.
    """

    events: list
    state: str
    final: "ResultEvent | ErrorEvent | None"
    poll_interval_s: float = 0.05

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def done(self) -> bool:
        return self.state not in ("created", "running")

    def poll(self) -> list:  # pragma: no cover - each handle has its own
        raise NotImplementedError

    def cancel(self) -> None:  # pragma: no cover - each handle has its own
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> "ResultEvent | ErrorEvent | None":
        """Block until the run ends (or ``timeout`` seconds pass); returns the final event."""
        import time

        t_end = None if timeout is None else time.monotonic() + timeout
        while self.running and (t_end is None or time.monotonic() < t_end):
            self.poll()
            time.sleep(self.poll_interval_s)
        return self.final

    def _cleanup_temp(self) -> None:  # pragma: no cover - each handle has its own
        raise NotImplementedError

    def close(self) -> None:
        """Cancel if still running, and remove the temp folder. Safe to call twice."""
        if self.state in ("created", "running"):
            self.cancel()
        self._cleanup_temp()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def progress(self) -> "ProgressEvent | None":
        """The last progress event seen."""
        for ev in reversed(self.events):
            if isinstance(ev, ProgressEvent):
                return ev
        return None
