"""The ``hntumorseg`` command (also ``python -m HNTumorSegLib``).

Subcommands (docs/design.md, the table SUBCOMMANDS below): ``demo``, ``segment``, ``evaluate``, ``batch``,
``models``, ``export``, ``biomarkers``, ``outcome``, ``evaluate-outcome``, ``session``.
Each lives in ``HNTumorSegLib/commands/<name>.py``. A user mistake (:class:`InputError`)
becomes one line on stderr and exit code 2, never a traceback; a fault of the machine (full
disk, I/O error: :class:`EnvironmentFault`, or any other ``OSError``) one line and exit 1;
SIGTERM, SIGHUP and SIGINT cancel the running worker(s) and exit 128 + the signal number
(README "Exit codes"). Started by one of our processes (``HNTUMORSEG_PARENT_PID`` set), the
command stops within 1 s when that client dies (:func:`HNTumorSegLib.worker.watch_parent`).

Example:
    $ hntumorseg evaluate --pred preds/ --ref labels/ --json scores.json
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from . import __version__, worker
from .errors import (EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_OK, EnvironmentFault, InputError,
                     WorkerFailed, exit_for_signal)
from .fileio import PublishingStopped, os_error

SUBCOMMANDS = {
    "demo": "Segment a synthetic case with the bundled demo model (offline); writes labels, overlay and metrics.",
    "segment": "Segment one case (pre-RT MRI, mid-RT MRI or PET/CT; NIfTI or DICOM in, NIfTI and DICOM out) with a model or an ensemble.",
    "evaluate": "Score predictions against references: DSC, DSCagg, DSC_mean, HD95/HD99.9/HD100, MSD, volumes, GTVn F1agg.",
    "batch": "Segment a whole cohort (HNTS-MRG, HECKTOR, DICOM or plain layout), evaluate, and write a QA report.",
    "models": "List, show, fetch, import and verify models (catalogue, Hugging Face, downloaded releases).",
    "export": "Write a label map as DICOM RTSTRUCT and/or SEG on its source series; optionally send them (C-STORE).",
    "biomarkers": "PET biomarkers of GTVp/GTVn: MTV, NTV, SUVmax, SUVmean, SUVpeak, TLG, NLG (patient and lesions).",
    "outcome": "Research only: recurrence-free survival risk and HPV probability of a PET/CT case (seed 004).",
    "evaluate-outcome": "Score RFS risks (Harrell C-index) and HPV probabilities (balanced accuracy, AUC) against the truth.",
    "session": "Warm session: keep the model loaded and serve requests (and one-box refinements) as JSON lines on stdin.",
    "register": "Register the pre-RT T2 (and its contours) onto the mid-RT T2: rigid, affine or deformable; quality JSON and picture.",
    "serve": "Segmentation server: an HTTPS API (token, TLS, limits) running jobs on this machine's warm sessions (GPU).",
}


def _load(name: str):
    return importlib.import_module(f"HNTumorSegLib.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hntumorseg",
        description="Head-and-neck GTVp (label 1) / GTVn (label 2) segmentation for radiotherapy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        _load(name).add_arguments(p)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or SIGINT, raised as an interrupt so every ``with``/``finally`` block on the
    way out runs: a :class:`~HNTumorSegLib.runner.WorkerRun` cancels and reaps its worker tree,
    atomic writes remove their temp files. ``timeout``, Slurm, systemd and ``kill`` send SIGTERM;
    a closed terminal sends SIGHUP."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


CANCEL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


def _on_cancel_signal(signum, frame):  # noqa: ARG001
    for sig in CANCEL_SIGNALS:  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _install_signal_handlers() -> dict:
    """Install the cancel handlers (main thread only); returns the previous ones to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in CANCEL_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, _on_cancel_signal)
        except (ValueError, OSError):
            pass
    return previous


def _fail(command: str, exc: BaseException) -> int:
    """One line on stderr for a known failure; its exit code (docs/design.md "Exit codes")."""
    if isinstance(exc, OSError):   # never a traceback: the path and the errno text
        exc = os_error(exc, doing="read or write")
    if isinstance(exc, InputError):
        print(f"hntumorseg {command}: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, EnvironmentFault):
        print(f"hntumorseg {command}: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    print(f"hntumorseg {command}: {exc}", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = _install_signal_handlers()
    # A command that one of our processes started (outcome prediction, model download / import:
    # childproc sets HNTUMORSEG_PARENT_PID) stops within 1 s when that client dies, as a worker
    # does: it runs in its own session, so nothing else would stop it, and it would go on writing
    # files nobody asked for. A command typed in a terminal is not watched (require_env).
    worker.watch_parent(require_env=True)
    try:
        return int(_load(args.command).run(args) or EXIT_OK)
    except (InputError, EnvironmentFault, WorkerFailed, PublishingStopped, OSError) as exc:
        return _fail(args.command, exc)
    except KeyboardInterrupt as exc:
        if worker.orphaned():   # our client died: nobody to tell; remove temp files and go, now
            worker.exit_orphaned()
        signum = getattr(exc, "signum", signal.SIGINT)
        name = signal.Signals(signum).name if signum != signal.SIGINT else "interrupted"
        try:
            print(f"hntumorseg {args.command}: {'interrupted' if name == 'interrupted' else 'stopped by ' + name}"
                  "; the worker was stopped, no partial output was left", file=sys.stderr)
        except OSError:  # the terminal is gone (SIGHUP): nothing to tell
            pass
        return exit_for_signal(signum)
    finally:
        if worker.orphaned():
            worker.exit_orphaned()
        for sig, handler in previous.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, TypeError):
                pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
