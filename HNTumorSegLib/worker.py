"""The background worker: ``python -m HNTumorSegLib.worker request.json``.

Runs one segmentation request (docs/design.md "Worker protocol") and prints one JSON event per
line on stdout (:mod:`HNTumorSegLib.protocol`), flushed at once:

- ``progress``: stage (load, resample, prompts, inference, clean-up, write), the whole job's
  fraction, the stage's fraction, seconds elapsed and left. Messages are case-neutral
  ("fold 1/5, tile 3/8"): no names, no paths - a log may be shared.
- ``result``: output files and seconds per stage; exit code 0.
- ``error``: kind and a message a clinician can act on; exit code 2 for user-fixable kinds
  (bad_input, model, device), 1 otherwise. An unexpected exception gives kind ``internal``
  with no traceback on stdout; the traceback goes to stderr (the client keeps its last lines).

Only event lines reach stdout: the real stdout is kept for events and file descriptor 1 is
pointed at stderr, so a library that prints cannot corrupt the protocol.

Out of memory: a GPU OOM frees the cache and retries once in the pipeline's low-memory mode
(``run_segmentation(..., low_memory=True)``: the accumulators move to the CPU and the tiles
shrink to about half the patch per axis, so only small tiles need GPU memory); a second OOM
is reported as ``out_of_memory``. SIGTERM (the client's cancel) exits through ``finally``
blocks, so the pipeline's atomic writes leave nothing half-written. When the client dies the
worker publishes nothing more and is gone within 1 s (:func:`watch_parent`).

Example:
    $ python -m HNTumorSegLib.worker /tmp/hntumorseg-run-x/request.json
    {"event": "progress", "stage": "load", "fraction": 0.0, ...}
    {"event": "result", "files": {"labels": "/out/case.nii.gz"}, "timings": {"load": 0.4, ...}}
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, TextIO

from . import childproc
from .childproc import ParentWatch, event_stream, exit_on_sigterm
from .errors import (EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EnvironmentFault, InputError, OutOfMemory, WorkerFailed,
                     exit_for_signal)
from .fileio import STOP, os_error, remove_live_temps
from .progress import ProgressReporter
from .protocol import ErrorEvent, Event, ResultEvent


class EventWriter:
    """Writes events, one line each, flushed; thread-safe (the predictor may report from a thread)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        self.write_line(ev.to_json())

    def write_line(self, line: str) -> None:
        """One line as it is (the session's tagged events); dropped once the client is gone."""
        if _orphaned.is_set():  # the client is gone: its pipe may be dead, nothing to tell anymore
            return
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the client went away: nothing to tell anymore
                pass


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS out-of-memory errors and for host MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
        if oom is not None and isinstance(exc, oom):
            return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    import gc

    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # best effort; the retry reports the real failure if any
        pass


def load_request(path: str | os.PathLike) -> Any:
    """Read ``request.json`` into the pipeline's ``SegmentRequest``. Bad JSON or fields -> InputError."""
    from .fileio import read_json

    p = Path(path)
    if not p.exists():
        raise InputError("request file not found", path=p, fix="give the path of a request.json")
    data = read_json(p, "request", fix="write valid JSON (docs/design.md worker protocol)")  # depth-limited, strict
    if not isinstance(data, dict):
        raise InputError("the request is not a JSON object", path=p, fix="write an object with task, inputs, model ...")
    from .pipeline import SegmentRequest
    from .prompts.registration_job import RegisterRequest, is_register_request

    kind = RegisterRequest if is_register_request(data) else SegmentRequest   # "job": "register": Slicer's button
    try:
        return kind.from_dict(data)
    except InputError as exc:  # name the request file in the one-line message
        raise InputError(exc.problem, path=p, fix=exc.fix) from None


@contextlib.contextmanager
def read_inputs_ahead(request: Any) -> Iterator[None]:
    """While the worker imports torch and loads the model, its input files are decoded in threads.

    A new worker's first second and more goes to imports and the model; the images it is about
    to read (0.5 s for an 80 x 512 x 512 T2, 1.6 s for a 300 x 512 x 512 CT) are read meanwhile
    on the other core (:class:`~HNTumorSegLib.warm_cache.Handover`; issue 27). The PET is left to
    its own reader (units); DICOM folders to theirs. Nothing changes for what is read or checked.
    """
    from .dicom.read import input_image_name, read_ahead
    from .pipeline import SegmentRequest
    from .warm_cache import Handover

    if not isinstance(request, SegmentRequest):
        yield
        return
    handover = Handover()
    with handover.active():
        for name, path in request.input_paths.items():
            if name != "PET":
                read_ahead(handover, path, input_image_name(name))
        yield


def run_request(request: Any, emit: Callable[[Event], None], run: Callable[..., Any] | None = None) -> ResultEvent:
    """Run one request through the pipeline, emitting progress; retry once on out-of-memory.

    ``run``: what runs it (default :func:`~HNTumorSegLib.pipeline.run_segmentation`; a warm
    session passes its model cache or a refinement, same signature)."""
    from .pipeline import run_segmentation
    from .prompts.registration_job import STAGES, RegisterRequest, run_register

    if isinstance(request, RegisterRequest):   # pre-RT -> mid-RT registration (prompts.registration_job)
        return run_register(request, ProgressReporter(emit, stages=STAGES))
    run = run or run_segmentation

    from .inference.tiled import forward_seconds

    reporter = ProgressReporter(emit)
    retries = 0
    kwargs: dict[str, Any] = {}
    forward0 = forward_seconds()
    while True:
        try:
            result = run(request, progress=reporter, **kwargs)
            break
        except Exception as exc:
            if not is_out_of_memory(exc) or retries or isinstance(exc, MemoryError):
                raise
            print(f"worker: out of memory ({type(exc).__name__}); retrying once in low-memory mode", file=sys.stderr)
            _free_gpu_memory()
            retries += 1
            kwargs["low_memory"] = True
            reporter("inference", 0.0, "out of GPU memory: retrying once in low-memory mode")
    # The pipeline's own per-stage seconds are exact (it always keeps them, "total" included).
    reporter.finish()
    info: dict[str, Any] = {"oom_retries": retries}
    for key in ("device", "model_id", "n_tiles", "task"):
        v = getattr(result, key)
        if v is not None:
            info[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    info["volumes_ml"] = {str(k): float(v) for k, v in result.volumes_ml.items()}
    if getattr(result, "warnings", None):
        info["warnings"] = [str(w) for w in result.warnings]
    if getattr(result, "regions", None):   # seed 002's stage crops, shown in the QA report
        info["regions"] = [dict(r) for r in result.regions]
    if getattr(result, "alignment", None):   # the PET placed on the CT: gate, transform, overlaps (issue 24)
        info["alignment"] = dict(result.alignment)
    if getattr(result, "registration", None):   # --prior-image: the registration's quality (issue 23)
        info["registration"] = dict(result.registration)
    files = {str(k): str(v) for k, v in result.files.items() if v is not None}
    timings = {str(k): float(v) for k, v in result.timings.items()}
    timings.setdefault("forward", round(forward_seconds() - forward0, 3))   # network passes of our tiled predictor
    return ResultEvent(files=files, timings=timings, info=info)


def error_event(exc: BaseException) -> ErrorEvent:
    """Map an exception to the protocol's error kind and a message a clinician can act on."""
    if isinstance(exc, InputError):
        return ErrorEvent(exc.kind, exc.one_line())
    if isinstance(exc, OSError) and not isinstance(exc, (BrokenPipeError,)):
        exc = os_error(exc, doing="read or write")   # a path, its errno text, the fix: never "internal"
        if isinstance(exc, InputError):
            return ErrorEvent(InputError.kind, exc.one_line())
    if isinstance(exc, EnvironmentFault):
        return ErrorEvent(EnvironmentFault.kind, exc.one_line())
    if is_out_of_memory(exc):
        return ErrorEvent(OutOfMemory.kind, "the computer ran out of memory, also in low-memory mode - close other "
                                            "programs using the GPU, choose fewer folds or no test-time "
                                            "augmentation, or run on the CPU (device cpu)")
    return ErrorEvent(WorkerFailed.kind, f"internal error ({type(exc).__name__}) - this is a bug; please report it "
                                         "with the worker log (stderr)")


#: Seconds an orphaned worker gives its main thread to unwind (``finally`` blocks remove temp
#: files) before it exits hard. Noticing the client's death takes milliseconds through the
#: kernel's parent-death signal (at most 0.2 s by polling), so the worker is gone within 1 s.
ORPHAN_GRACE_S = 0.3
#: Seconds a parked main thread waits for the watcher's exit before it does the exit itself (a
#: last resort: the watcher thread is never seen to die, but a process must not hang forever).
PARK_LIMIT_S = 10.0
_orphaned = threading.Event()
_main_parked = threading.Event()   # the main thread has unwound and waits for the watcher's exit
_orphan_dirs: list[Path] = []   # temp folders of the dead client that nobody else will remove
_watch: ParentWatch | None = None   # this process's one watch (:func:`watch_parent`)
_exit_lock = threading.Lock()   # the orphan's exit runs once (:func:`_finish_orphaned`)


def orphaned() -> bool:
    """True once this worker's client has died (nothing is published or printed from then on)."""
    return _orphaned.is_set()


def watch_parent(request_path: str | None = None, temp_dir: str | os.PathLike | None = None,
                 require_env: bool = False) -> ParentWatch | None:
    """Stop this worker (or session) within 1 s when its client dies, e.g. SIGKILLed: it runs in
    its own session, so nothing else would stop it (:func:`HNTumorSegLib.childproc.watch_parent`:
    the kernel's parent-death signal, the thread caveat, the polling fallback).

    ``request_path``: the client's ``hntumorseg-run-*`` folder holding it is removed on the way
    out (the client cannot any more); so is ``temp_dir`` (a session's folder). ``require_env``:
    watch only a parent named by ``HNTUMORSEG_PARENT_PID`` (a session started by hand is not watched).
    A second call adds its folders to the first call's watch: two watchers would both stop the process.
    """
    global _watch
    if request_path:
        folder = Path(request_path).resolve().parent
        if folder.name.startswith("hntumorseg-run-"):
            _orphan_dirs.append(folder)
    if temp_dir:
        _orphan_dirs.append(Path(temp_dir))
    if _watch is None:   # once per process: ``hntumorseg session`` is watched by cli.main and by serve()
        _watch = childproc.watch_parent(_stop_orphaned, require_env=require_env)
        if _watch is not None:
            atexit.register(_exit_if_orphaned)
    return _watch


def _stop_orphaned() -> None:
    """The client died (watcher thread). Order matters (issue 11): first stop publishing
    (:data:`HNTumorSegLib.fileio.STOP`: an output the dead client never saw finished must not
    appear) and silence the event stream, then SIGTERM the children and this process (the main
    thread unwinds through its ``finally`` blocks and parks in :func:`exit_orphaned`), and after
    the main thread parked, or :data:`ORPHAN_GRACE_S` at most, exit from here. Nothing is
    written to stdout/stderr: the client's pipes may be dead, and a BrokenPipeError here would
    end the watcher before it kills."""
    STOP.set()
    _orphaned.set()
    childproc.signal_descendants(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    _main_parked.wait(ORPHAN_GRACE_S)  # finally-blocks had their chance
    _finish_orphaned()


def exit_orphaned() -> None:
    """The main thread's end once the client died (call it when :func:`orphaned`): it parks here
    and the watcher thread, :func:`_stop_orphaned`, removes the files and exits the process.

    Why the watcher and not the main thread (issue 22, the empty ``hntumorseg-session-*`` folder
    that outlived about 1 SIGKILLed batch client in 5): Python runs signal handlers in the main
    thread only, so the SIGTERM the watcher sends to unwind the main thread could arrive while the
    main thread was itself removing the folders, raise ``SystemExit`` in the middle, and end the
    interpreter with the exit lock held (the watcher then waited on it for ever) or before the
    watcher's grace was over (daemon threads die with the interpreter). The watcher thread
    cannot be interrupted that way. The parked main thread ignores SIGTERM from here on, and
    :func:`_exit_if_orphaned` (atexit) parks a main thread that a SIGTERM made leave by another way.
    """
    if threading.current_thread() is not threading.main_thread():
        _finish_orphaned()
    t_end = time.monotonic() + PARK_LIMIT_S
    while time.monotonic() < t_end:
        try:   # a signal still pending from before SIG_IGN may raise once more: park again
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _main_parked.set()
            time.sleep(0.05)   # the watcher's os._exit ends the process during this wait
        except BaseException:
            continue
    _finish_orphaned()   # the watcher never came (last resort; SIGTERM is ignored by now)


def _exit_if_orphaned() -> None:
    """atexit: a main thread that leaves by a way no ``finally`` checks (a SIGTERM between the
    check and the end) must not end the interpreter before the orphan's exit has run."""
    while _orphaned.is_set():
        try:   # a SIGTERM handled before the park began ends this call: park again
            exit_orphaned()
        except BaseException:
            continue


def _finish_orphaned() -> NoReturn:
    """The orphan's last step, run once: kill what is left below us, remove unpublished temp files
    (:func:`HNTumorSegLib.fileio.remove_live_temps`: the one clean-up registry, a download's
    ``.part`` included) and the dead client's temp folders, and exit at once - a normal
    interpreter shutdown with torch loaded costs seconds of CPU on a loaded machine, and the
    client is not there to care about anything it would flush. A second caller waits here for
    the first one's exit."""
    _exit_lock.acquire()   # never released: the holder exits the process
    try:
        childproc.kill_descendants()   # none still writes into a folder about to be removed
        remove_live_temps()  # unpublished temp files beside the outputs
        for folder in _orphan_dirs:
            _remove_folder(folder)
    finally:
        os._exit(exit_for_signal(signal.SIGTERM))


def _remove_folder(folder: Path, tries: int = 5) -> None:
    """``rmtree`` until the folder is gone: a thread of ours that was unwinding may still have
    been deleting (or closing) files in it during the first pass."""
    import shutil

    for _ in range(tries):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    emit = EventWriter(event_stream())
    exit_on_sigterm()   # not in the main thread (embedded use): the client's SIGKILL still works
    if len(argv) != 1:
        emit(ErrorEvent(InputError.kind, "usage: python -m HNTumorSegLib.worker request.json"))
        return EXIT_BAD_INPUT
    watch_parent(request_path=argv[0])
    t0 = time.monotonic()
    try:
        request = load_request(argv[0])
        with read_inputs_ahead(request):
            result = run_request(request, emit)
    except Exception as exc:  # every ending reports one event
        ev = error_event(exc)
        if ev.kind in (WorkerFailed.kind, OutOfMemory.kind) and not _orphaned.is_set():
            traceback.print_exc(file=sys.stderr)
        emit(ev)
        return EXIT_BAD_INPUT if ev.user_fixable else EXIT_INTERNAL
    finally:
        if _orphaned.is_set():
            exit_orphaned()
    result.timings.setdefault("worker_total", round(time.monotonic() - t0, 3))
    emit(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
