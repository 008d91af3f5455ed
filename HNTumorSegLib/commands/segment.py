"""`hntumorseg segment`: segment one case with a model (DESIGN.md "Command line").

    hntumorseg segment --task midrt --model demo-midrt --input T2=mid_T2.nii.gz \\
        --prior pre_mask_registered.nii.gz --output labels.nii.gz [--device auto|cpu|cuda|mps] \\
        [--folds all|0,1] [--tta/--no-tta] [--progress json|bar|none] \\
        [--probabilities P.nii.gz] [--uncertainty U.nii.gz] [--save-boxes boxes.json]

Inputs are named ``T2`` (prert, midrt), ``CT`` and ``PET`` (petct), or by an nnU-Net folder's
``channel_names``. The label map (0 background, 1 GTVp, 2 GTVn) lies on the first input's grid.
Any mistake in the inputs is one line on stderr, exit code 2, and no output file.

``--progress json`` prints the worker protocol's events on stdout, one JSON object per line
(``{"event": "progress", "stage": ..., "fraction": ..., "message": ...}``, then one
``result``); ``bar`` draws a bar on stderr; ``none`` is silent. Without ``json`` a one-line
summary is printed at the end.

The run goes through :func:`execute` so the in-process call can be swapped for the background
worker (:mod:`HNTumorSegLib.runner`) without touching the command line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..pipeline.request import DEVICES, PROGRESS_MODES, TASKS, SegmentRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default=None,
                        help="prert (pre-RT T2), midrt (mid-RT T2 + registered pre-RT mask), petct (CT + PET); "
                             "optional when the model names its task")
    parser.add_argument("--model", required=True, metavar="ID_OR_PATH",
                        help="catalogue id (hntumorseg models list) or model folder (model.json, or an nnU-Net results folder)")
    parser.add_argument("--input", action="append", metavar="NAME=PATH",
                        help="an input image, repeatable: T2=..., or CT=... and PET=..., or nnU-Net channel names")
    parser.add_argument("--prior", metavar="PATH", help="midrt: the pre-RT mask registered to the mid-RT T2")
    parser.add_argument("--boxes", metavar="BOXES_JSON", help="lesion boxes (RAS mm, DESIGN.md 'Boxes')")
    parser.add_argument("--output", required=True, metavar="OUT.nii.gz", help="label map to write")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} (or cuda:N); default auto")
    parser.add_argument("--folds", default=None, help="all (default) or a list like 0,1")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="mirroring test-time augmentation (8 passes; off by default: costly on a CPU)")
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                        help="json: worker-protocol events on stdout; bar: a bar on stderr; none")
    parser.add_argument("--probabilities", metavar="PATH", help="also write class probabilities (4D image)")
    parser.add_argument("--uncertainty", metavar="PATH", help="also write a per-voxel uncertainty map (entropy, 0..1)")
    parser.add_argument("--save-boxes", metavar="PATH", help="also write the lesion boxes used (boxes.json)")


def execute(request: SegmentRequest, progress: Callable[[str, float, str], None] | None):
    """Run one request. In-process today; the single place to switch to the background worker."""
    from ..pipeline import run_segmentation

    return run_segmentation(request, progress=progress)


def summary(result) -> str:
    """``labels.nii.gz: GTVp 12.3 mL, GTVn 4.5 mL (8.1 s on cpu)``."""
    vols = ", ".join(f"{name} {ml:.2f} mL" for name, ml in result.volumes_ml.items())
    return (f"wrote {result.files['labels']}: {vols} "
            f"({result.timings.get('total', 0.0):.1f} s on {result.device})")


def run_request(request: SegmentRequest, mode: str, stdout=None, stderr=None, print_summary: bool = True):
    """Run with the chosen progress display (json / bar / none); returns the SegmentResult."""
    from ..progress import ProgressReporter, TextProgressBar
    from ..protocol import ResultEvent

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if mode == "json":
        def emit(ev):
            stdout.write(ev.to_json() + "\n")
            stdout.flush()
        reporter = ProgressReporter(emit)
        result = execute(request, reporter)
        timings = reporter.finish()
        timings.update({f"pipeline.{k}": v for k, v in result.timings.items()})
        emit(ResultEvent(files=dict(result.files), timings=timings,
                         info={"device": result.device, "model_id": result.model_id, "n_tiles": result.n_tiles,
                               "volumes_ml": result.volumes_ml}))
        return result
    if mode == "bar":
        bar = TextProgressBar(stderr)

        def draw(ev):
            # The load stage is where every input is checked: drawing nothing there keeps a
            # user mistake to exactly one line on stderr (the error itself).
            if ev.stage != "load":
                bar.update(ev)
        reporter = ProgressReporter(draw)
        try:
            result = execute(request, reporter)
        finally:
            bar.close()
    else:
        result = execute(request, None)
    if print_summary:
        print(summary(result), file=stdout)
    return result


def run(args: argparse.Namespace) -> int:
    request = SegmentRequest.from_args(args)
    run_request(request, args.progress)
    return 0
