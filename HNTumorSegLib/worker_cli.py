"""Run one request through the background worker from the command line, showing its progress.

``hntumorseg segment`` uses this so that the command line, the Slicer module and batch runs
share one path (the worker child process). ``progress_mode``:

- ``"bar"``: a text progress bar on stderr with stage, percent and time left;
- ``"json"``: every event, one JSON line each, on stdout (for scripts and other GUIs);
- ``"none"``: quiet.

A user-fixable failure (kinds bad_input, model, device) is raised as the matching
:class:`~HNTumorSegLib.errors.InputError` subclass, so the command line prints one line and
exits 2; other failures (out_of_memory, internal, crashed, timeout) print one line on stderr
and give exit code 1. Ctrl-C cancels the worker's whole tree before it propagates.

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "t2.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> code = run_in_worker(SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, device="cpu",
    ...                                     prior_path="prior.nii.gz", output_path="labels.nii.gz"),
    ...                      "none")       # "bar": a progress bar on stderr meanwhile
    wrote labels.nii.gz: GTVp ... mL, GTVn ... mL (... s on cpu)
    >>> code
    0
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from .errors import EXIT_INTERNAL, EXIT_OK, WorkerCrashed, WorkerFailed, error_class
from .progress import TextProgressBar
from .protocol import ErrorEvent, ProgressEvent, ResultEvent
from .runner import WorkerRun
from .vocab import ProgressMode

if TYPE_CHECKING:
    from .pipeline.request import SegmentRequest
    from .protocol import RunHandle


def run_worker(request: "SegmentRequest", progress_mode: str | ProgressMode = "bar", python: str | None = None,
               timeout_s: float | None = None, out: TextIO | None = None,
               err: TextIO | None = None, handle: "RunHandle | None" = None) -> ResultEvent | ErrorEvent:
    """Run the request in a worker, render its events; return the final event (never raises for failures).

    ``handle``: a run handle in state ``created`` to use instead of a new worker (``segment --server``:
    a :class:`~HNTumorSegLib.server.client.RemoteJob`); it is closed (cancelled on Ctrl-C) the same way."""
    progress_mode = ProgressMode.parse(progress_mode)
    out = out or sys.stdout
    bar = TextProgressBar(err or sys.stderr) if progress_mode is ProgressMode.BAR else None
    with (handle if handle is not None else WorkerRun(python=python, timeout_s=timeout_s)) as run:
        run.start(request)
        try:
            while True:
                for ev in run.poll():
                    if progress_mode is ProgressMode.JSON:
                        out.write(ev.to_json() + "\n")
                        out.flush()
                    elif bar is not None and isinstance(ev, ProgressEvent) and ev.stage != "load":
                        # Nothing drawn while inputs are checked (load): a user mistake stays one line.
                        bar.update(ev)
                if run.done:
                    break
                time.sleep(0.05)
        finally:
            if bar is not None:
                bar.close()
    return run.final or ErrorEvent("crashed", "the worker ended without a result")


def summary(result: ResultEvent) -> str:
    """``wrote labels.nii.gz: GTVp 12.30 mL, GTVn 4.50 mL (8.1 s on cpu)``."""
    vols = ", ".join(f"{name} {ml:.2f} mL" for name, ml in (result.info.get("volumes_ml") or {}).items())
    total = result.timings.get("total", result.timings.get("worker_total", 0.0))
    where = result.info.get("device", "?")
    return f"wrote {result.files.get('labels', '?')}: {vols} ({total:.1f} s on {where})"


def run_in_worker(request: "SegmentRequest", progress_mode: str | ProgressMode = "bar", python: str | None = None,
                  timeout_s: float | None = None, handle: "RunHandle | None" = None) -> int:
    """Run ``request`` in a worker; 0 on success, 1 on a failure the user cannot fix by changing inputs.

    Raises InputError / ModelError / DeviceError for the user-fixable kinds (exit 2 via the CLI).
    """
    progress_mode = ProgressMode.parse(progress_mode)
    final = run_worker(request, progress_mode, python=python, timeout_s=timeout_s, handle=handle)
    try:
        result = raise_for_failure(final)
    except WorkerFailed as exc:
        if progress_mode is not ProgressMode.JSON:  # in json mode the error event itself was printed
            print(f"hntumorseg: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    if progress_mode is not ProgressMode.JSON:   # in json mode they came as "warning: ..." progress events
        for warning in result.info.get("warnings") or []:
            print(f"hntumorseg: warning: {warning}", file=sys.stderr)
        if result.info.get("registration"):   # --prior-image (issue 23): the registration's quality, one line
            from .pipeline.prior_registration import summary_line

            print(summary_line(result.info["registration"]))
        print(summary(result))
    return EXIT_OK


def raise_for_failure(final: ResultEvent | ErrorEvent) -> ResultEvent:
    """Return the result event; raise InputError (and subclasses) for user-fixable kinds, else WorkerFailed."""
    if isinstance(final, ResultEvent):
        return final
    if final.user_fixable:   # InputError or the subclass that defines the kind (errors.py)
        # The worker's message is already "path: problem - fix"; keep it as is.
        raise error_class(final.kind)(final.message)
    if final.kind == "environment":   # full disk, I/O error: the message names the path and the free space
        raise WorkerFailed(f"error: {final.message}")
    if final.kind == WorkerCrashed.kind:   # the message says it: "the worker crashed (SIGSEGV) during prompts ..." (issue 25)
        raise WorkerFailed(final.message)
    raise WorkerFailed(f"{final.kind.replace('_', ' ')}: {final.message}")
