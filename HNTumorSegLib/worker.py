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
blocks, so the pipeline's atomic writes leave nothing half-written.

Example:
    $ python -m HNTumorSegLib.worker /tmp/hntumorseg-run-x/request.json
    {"event": "progress", "stage": "load", "fraction": 0.0, ...}
    {"event": "result", "files": {"labels": "/out/case.nii.gz"}, "timings": {"load": 0.4, ...}}
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, TextIO

from .errors import EXIT_BAD_INPUT, EnvironmentFault, InputError
from .fileio import STOP, os_error, remove_live_temps
from .progress import ProgressReporter
from .protocol import ErrorEvent, Event, ResultEvent


class EventWriter:
    """Writes events, one line each, flushed; thread-safe (the predictor may report from a thread)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        line = ev.to_json() + "\n"
        if _orphaned.is_set():  # the client is gone: its pipe may be dead, nothing to tell anymore
            return
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the client went away: nothing to tell anymore
                pass


def _protocol_stream() -> TextIO:
    """Keep the real stdout for events; send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    event_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return io.TextIOWrapper(os.fdopen(event_fd, "wb", buffering=0), encoding="utf-8", line_buffering=True,
                            write_through=True)


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
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("request file not found", path=p, fix="give the path of a request.json") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the request ({exc})", path=p, fix="write valid JSON (docs/design.md worker protocol)") from None
    if not isinstance(data, dict):
        raise InputError("the request is not a JSON object", path=p, fix="write an object with task, inputs, model ...")
    from .pipeline import SegmentRequest

    try:
        return SegmentRequest.from_dict(data)
    except InputError as exc:  # name the request file in the one-line message
        raise InputError(exc.problem, path=p, fix=exc.fix) from None


def run_request(request: Any, emit: Callable[[Event], None], run: Callable[..., Any] | None = None) -> ResultEvent:
    """Run one request through the pipeline, emitting progress; retry once on out-of-memory.

    ``run``: what runs it (default :func:`~HNTumorSegLib.pipeline.run_segmentation`; a warm
    session passes its model cache or a refinement, same signature)."""
    from .pipeline import run_segmentation

    run = run or run_segmentation

    reporter = ProgressReporter(emit)
    retries = 0
    kwargs: dict[str, Any] = {}
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
    files = {str(k): str(v) for k, v in result.files.items() if v is not None}
    return ResultEvent(files=files, timings={str(k): float(v) for k, v in result.timings.items()}, info=info)


def error_event(exc: BaseException) -> ErrorEvent:
    """Map an exception to the protocol's error kind and a message a clinician can act on."""
    if isinstance(exc, InputError):
        return ErrorEvent(getattr(exc, "kind", "bad_input"), exc.one_line())
    if isinstance(exc, OSError) and not isinstance(exc, (BrokenPipeError,)):
        exc = os_error(exc, doing="read or write")   # a path, its errno text, the fix: never "internal"
        if isinstance(exc, InputError):
            return ErrorEvent("bad_input", exc.one_line())
    if isinstance(exc, EnvironmentFault):
        return ErrorEvent("environment", exc.one_line())
    if is_out_of_memory(exc):
        return ErrorEvent("out_of_memory", "the computer ran out of memory, also in low-memory mode - close other "
                                           "programs using the GPU, choose fewer folds or no test-time augmentation, "
                                           "or run on the CPU (device cpu)")
    return ErrorEvent("internal", f"internal error ({type(exc).__name__}) - this is a bug; please report it "
                                  "with the worker log (stderr)")


PARENT_ENV = "HNTUMORSEG_PARENT_PID"
_orphaned = threading.Event()


def _kill_children(sig: int) -> None:
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(sig)
            except psutil.Error:
                pass
    except Exception:  # best effort: psutil missing or the process table changing under us
        pass


def _watch_parent(expected_ppid: int, interval_s: float = 0.2, grace_s: float = 1.2,
                  request_path: str | None = None) -> None:
    """End this worker when its client dies (e.g. SIGKILLed): the worker runs in its own session,
    so nothing else would stop it. Polling ``getppid`` works on every OS and, unlike
    PR_SET_PDEATHSIG, does not depend on which thread of the client started us.

    Order matters (issue 11): first stop publishing (:data:`HNTumorSegLib.fileio.STOP`: an
    output the dead client never saw finished must not appear) and silence the event stream,
    then kill - SIGTERM to itself (``finally`` blocks remove temp files) and its children - and
    after ``grace_s`` exit hard. Nothing is written to stdout/stderr: the client's pipes may be
    dead, and a BrokenPipeError here would end the watcher before it kills. Within
    ``interval_s + grace_s`` (< 2 s) of the client's death the worker is gone.
    """
    while True:
        time.sleep(interval_s)
        if os.getppid() != expected_ppid:
            STOP.set()
            _orphaned.set()
            _kill_children(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace_s)  # finally-blocks had their chance
            _kill_children(signal.SIGKILL)
            remove_live_temps()  # unpublished temp files beside the outputs
            if request_path:
                _remove_own_temp(request_path)
            os._exit(128 + signal.SIGTERM)


def _remove_own_temp(request_path: str) -> None:
    """After the client died, remove the client's temp folder (it cannot any more)."""
    import shutil

    folder = Path(request_path).resolve().parent
    if folder.name.startswith("hntumorseg-run-"):
        shutil.rmtree(folder, ignore_errors=True)


def _on_sigterm(signum, frame):  # noqa: ARG001
    # Raise SystemExit in the main thread so finally-blocks (atomic writes, temp files) run.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stream = _protocol_stream()
    emit = EventWriter(stream)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not in the main thread (embedded use): the client's SIGKILL still works
        pass
    if len(argv) != 1:
        emit(ErrorEvent("bad_input", "usage: python -m HNTumorSegLib.worker request.json"))
        return EXIT_BAD_INPUT
    parent = os.environ.get(PARENT_ENV)
    expected = int(parent) if parent and parent.isdigit() else os.getppid()
    if os.getppid() == expected:
        threading.Thread(target=_watch_parent, args=(expected,), kwargs={"request_path": argv[0]}, daemon=True,
                         name="parent-watch").start()
    t0 = time.monotonic()
    try:
        request = load_request(argv[0])
        result = run_request(request, emit)
    except Exception as exc:  # every ending reports one event
        ev = error_event(exc)
        if (ev.kind == "internal" or ev.kind == "out_of_memory") and not _orphaned.is_set():
            traceback.print_exc(file=sys.stderr)
        emit(ev)
        return EXIT_BAD_INPUT if ev.user_fixable else 1
    finally:
        if _orphaned.is_set():
            _remove_own_temp(argv[0])
    result.timings.setdefault("worker_total", round(time.monotonic() - t0, 3))
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
