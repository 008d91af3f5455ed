"""The ``hntumorseg`` command (also ``python -m HNTumorSegLib``).

Subcommands (DESIGN.md): ``demo``, ``segment``, ``evaluate``, ``batch``, ``models``.
Each lives in ``HNTumorSegLib/commands/<name>.py``. A user mistake (:class:`InputError`)
becomes one line on stderr and exit code 2, never a traceback.

Example:
    $ hntumorseg evaluate --pred preds/ --ref labels/ --json scores.json
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import EXIT_BAD_INPUT, InputError, WorkerFailed

SUBCOMMANDS = {
    "demo": "Segment a synthetic case with the bundled demo model (offline); writes labels, overlay and metrics.",
    "segment": "Segment one case (pre-RT MRI, mid-RT MRI or PET/CT) with a model.",
    "evaluate": "Score predictions against references: DSC, DSCagg, HD95, MSD, volumes, GTVn F1agg.",
    "batch": "Segment a whole cohort (HNTS-MRG, HECKTOR or plain layout), evaluate, and write a QA report.",
    "models": "List, show, fetch and verify the models of the catalogue.",
    "export": "Write a label map as DICOM RTSTRUCT and/or SEG on its source series; optionally send them (C-STORE).",
    "biomarkers": "PET biomarkers of GTVp/GTVn: MTV, NTV, SUVmax, SUVmean, SUVpeak, TLG, NLG (patient and lesions).",
    "outcome": "Research only: recurrence-free survival risk and HPV probability of a PET/CT case (seed 004).",
    "evaluate-outcome": "Score RFS risks (Harrell C-index) and HPV probabilities (balanced accuracy, AUC) against the truth.",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(_load(args.command).run(args) or 0)
    except InputError as exc:
        print(f"hntumorseg {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WorkerFailed as exc:
        print(f"hntumorseg {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hntumorseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
