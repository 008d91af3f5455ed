"""The session's lines: commands in (stdin), the worker protocol's events out (stdout), tagged by id.

In (one JSON object per line):

* ``{"id": "r1", "request": {...request.json fields...}}`` runs a request; with
  ``"refine": {"base_labels_path": PATH, "boxes": ["GTVn-2"]}`` inside the request object it
  refines those boxes of the label map at ``base_labels_path``
  (:class:`HNTumorSegLib.pipeline.refine.RefineSpec`; the older key ``base_labels`` is still read);
  with ``"box_only": true`` the output holds only the crop over the edited boxes (placed by its
  origin) and ``base_labels_path`` may be left out;
* ``{"id": "c1", "cancel": "r1"}`` cancels request r1 (running or queued);
* ``{"id": "s1", "status": true}`` asks for a ``session`` event;
* ``{"shutdown": true}`` (or the end of input) ends the session once the requests sent
  before it have ended (cancel them first to end sooner).

Out: the worker protocol's events (:mod:`HNTumorSegLib.protocol`) with the request's ``"id"``
added right after ``"event"``, plus one event of the session's own,
``{"event": "session", "id": ..., "state": "ready"|"idle"|"busy", "model_loads": n,
"requests": n, "pid": n, "rss_mb": x}`` (at start, and for each status command). Every request
ends with exactly one ``result`` or ``error`` event carrying its id; a line that is not a
command gets an ``error`` with ``"id": null``.

Example:
    >>> from HNTumorSegLib.protocol import ErrorEvent
    >>> tag_event(ErrorEvent("bad_input", "no T2"), "r1")
    '{"event": "error", "id": "r1", "kind": "bad_input", "message": "no T2"}'
    >>> split_tagged('{"event": "error", "id": "r1", "kind": "bad_input", "message": "no T2"}')[0]
    'r1'
"""

from __future__ import annotations

import json
from typing import Any

from ..protocol import Event, event_from_dict, event_object

SESSION_EVENT = "session"


def _dumps(d: dict) -> str:
    return json.dumps(d, separators=(", ", ": "), allow_nan=False)


def tag_event(ev: Event, job_id: str | None) -> str:
    """The event's JSON line with ``"id"`` added (second key, easy to read in a log)."""
    d = json.loads(ev.to_json())
    out = {"event": d.pop("event"), "id": job_id}
    out.update(d)
    return _dumps(out)


def session_event(job_id: str | None, **fields: Any) -> str:
    """A ``session`` event line (state, counters)."""
    out = {"event": SESSION_EVENT, "id": job_id}
    out.update(fields)
    return _dumps(out)


def split_tagged(line: str) -> tuple[str | None, Event | dict]:
    """``(id, event)`` of one session stdout line: a protocol :data:`Event`, or the dict of a
    ``session`` event. Raises :class:`ProtocolError` for anything else."""
    d = event_object(line)
    job_id = d.pop("id", None)
    if d.get("event") == SESSION_EVENT:
        return job_id, d
    return job_id, event_from_dict(d, line)


def command_line(**fields: Any) -> str:
    """One command line for the session's stdin (``command_line(id="r1", request={...})``); strict
    JSON like every line we write (the session refuses ``NaN``)."""
    return _dumps(fields) + "\n"
