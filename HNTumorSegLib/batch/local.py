"""Run a cohort over N local worker processes.

Each worker is one warm session child (:class:`HNTumorSegLib.session.SessionClient`, issue 17)
that serves all its cases: Python, torch and the model load once per worker, not once per case.
A session that crashes or runs out of memory fails its case only; the next case gets a fresh
session, and cancel (Ctrl-C) ends every child's process tree. ``use_sessions=False`` runs one
worker process per case (:class:`HNTumorSegLib.runner.WorkerRun`), the earlier way, kept for
comparison (``bench/bench_session.py``). The parent only schedules: it keeps up to ``workers`` children
running, polls them every 0.1 s, and writes a case's done-marker the moment its result
arrives (so a run killed at any point resumes where it stopped).

CPU threads: with N workers on C usable cores each child gets ``max(1, C // N)`` torch/OpenMP
threads (``OMP_NUM_THREADS``), so two workers do not fight over the same cores; an
``OMP_NUM_THREADS`` set by the user wins.

Example:
    >>> from HNTumorSegLib.batch.resume import fingerprint
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> phantom = make_midrt_case(seed=0)
    >>> _ = write_image(phantom["midRT_T2"], "t2.nii.gz"), write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, prior_path="prior.nii.gz",
    ...                          output_path="preds/case_01.nii.gz")
    >>> jobs, out_dir = [Job("case_01", request, request.output_path, fingerprint(request))], "preds"
    >>> outcomes = run_local(jobs, out_dir, workers=2)          # one worker per job, at most 2 at once
    >>> outcomes["case_01"].final.event, outcomes["case_01"].final.files
    ('result', {'labels': 'preds/case_01.nii.gz'})
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..pipeline.request import SegmentRequest
from ..protocol import ErrorEvent, ProgressEvent, ResultEvent
from ..runner import WorkerRun
from ..session import SessionClient
from .resume import mark_done


@dataclass
class Job:
    """One case to segment: its request and where its prediction will lie."""

    case_id: str
    request: SegmentRequest
    prediction_path: str
    fingerprint: str


@dataclass
class Outcome:
    """How one case ended: ``final`` is the worker's result or error event."""

    case_id: str
    final: ResultEvent | ErrorEvent
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return isinstance(self.final, ResultEvent)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_env(workers: int) -> dict[str, str]:
    """CPU threads per worker: the user's ``OMP_NUM_THREADS`` when set, else cores // workers."""
    n = os.environ.get("OMP_NUM_THREADS") or str(max(1, usable_cores() // max(1, workers)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def log_line(case_id: str, text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {case_id}: {text}", file=sys.stderr, flush=True)


def _terminate_all(sessions: list) -> None:
    """SIGTERM every session's process group together, then reap each (SIGKILL after a short grace)."""
    import signal

    procs = [s.proc for s in sessions if getattr(s, "proc", None) is not None]
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM) if os.name != "nt" else proc.terminate()
            except (ProcessLookupError, PermissionError, OSError):
                pass
    for session in sessions:
        session.stop_process()


def run_local(jobs: list[Job], out_dir: str | os.PathLike, workers: int = 1, python: str | None = None,
              timeout_s: float | None = None, on_event: Callable[[str, Any], None] | None = None,
              poll_s: float = 0.1, use_sessions: bool = True) -> dict[str, Outcome]:
    """Segment ``jobs`` with up to ``workers`` worker processes at once; returns {case: Outcome}.

    ``on_event(case_id, event)`` sees every event (default: a one-line log per stage change).
    On KeyboardInterrupt every running worker is cancelled (its tree ended, its temp folder
    removed) before the interrupt propagates.
    """
    workers = max(1, int(workers))
    env = thread_env(workers)
    pending = list(jobs)
    running: dict[str, tuple[Job, Any, float, SessionClient | None]] = {}
    idle: list[SessionClient] = []     # sessions between cases (one per worker, reused)
    outcomes: dict[str, Outcome] = {}
    last_stage: dict[str, str] = {}

    def default_on_event(case_id: str, ev: Any) -> None:
        if isinstance(ev, ProgressEvent) and last_stage.get(case_id) != ev.stage:
            last_stage[case_id] = ev.stage
            log_line(case_id, f"{ev.stage} ({100 * ev.fraction:.0f}%)")

    report = on_event or default_on_event
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                if use_sessions:
                    session = idle.pop() if idle else SessionClient(python=python, env=env)
                    run = session.submit(job.request, timeout_s=timeout_s)
                else:
                    session, run = None, WorkerRun(python=python, timeout_s=timeout_s, env=env).start(job.request)
                running[job.case_id] = (job, run, time.monotonic(), session)
            for case_id in list(running):
                job, run, t0, session = running[case_id]
                for ev in run.poll():
                    report(case_id, ev)
                if run.done:
                    del running[case_id]
                    if session is not None:
                        idle.append(session)    # a crashed session restarts with its next case
                    final = run.final or ErrorEvent("crashed", "the worker ended without a result")
                    outcome = Outcome(case_id, final, time.monotonic() - t0,
                                      dict(final.timings) if isinstance(final, ResultEvent) else {})
                    outcomes[case_id] = outcome
                    if outcome.ok:
                        mark_done(out_dir, case_id, job.prediction_path, job.fingerprint, outcome.timings)
                        log_line(case_id, f"done in {outcome.seconds:.1f} s")
                    else:
                        log_line(case_id, f"FAILED ({final.kind}): {final.message}")
            time.sleep(poll_s)
    except BaseException:
        # Cancelled (SIGTERM/SIGHUP/Ctrl-C, cli.Terminated) or failed: end every worker tree at once,
        # not one polite shutdown after another - the whole batch is gone within ~1 s (issue 11).
        _terminate_all([session for _job, _run, _t0, session in running.values() if session is not None] + idle)
        raise
    finally:
        for _job, run, _t0, session in running.values():
            run.close()
            if session is not None:
                idle.append(session)
        for session in idle:
            session.close()
    return outcomes
