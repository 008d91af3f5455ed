"""`hntumorseg segment`: segment one case with a model (docs/design.md "Command line").

    hntumorseg segment --task midrt --model demo-midrt --input T2=mid_T2.nii.gz \\
        --prior pre_mask_registered.nii.gz --output labels.nii.gz [--device auto|cpu|cuda|mps] \\
        [--folds all|first|fold_all|0,1] [--tta/--no-tta] [--progress json|bar|none] \\
        [--probabilities P.nii.gz] [--uncertainty U.nii.gz] [--save-boxes boxes.json]

Inputs are named ``T2`` (prert, midrt), ``CT`` and ``PET`` (petct), or by an nnU-Net folder's
``channel_names``. The label map (0 background, 1 GTVp, 2 GTVn) lies on the first input's grid.
Any mistake in the inputs is one line on stderr, exit code 2, and no output file.

``--progress json`` prints the worker protocol's events on stdout, one JSON object per line
(``{"event": "progress", "stage": ..., "fraction": ..., "message": ...}``, then one
``result``); ``bar`` draws a bar on stderr; ``none`` is silent. Without ``json`` a one-line
summary is printed at the end.

The run goes through the background worker (:mod:`HNTumorSegLib.worker_cli`), the same child
process the Slicer module and batch runs use: one path, and Ctrl-C ends the whole tree.

``--task``, ``--device``, ``--folds`` and ``--progress`` are read as text and converted by
:class:`~HNTumorSegLib.pipeline.request.SegmentRequest` (:mod:`HNTumorSegLib.vocab`,
:mod:`HNTumorSegLib.folds`) rather than by argparse ``choices``: a typo is then one line with
a "did you mean" (``unknown task 'mdrt' (did you mean midrt?)``), exit code 2, like every
other input mistake, instead of argparse's usage block.
"""

from __future__ import annotations

import argparse

from ..folds import ACCEPTED_FORMS
from ..pipeline.request import SegmentRequest
from ..vocab import Device, ProgressMode, Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", metavar="{" + ",".join(Task.values()) + "}", default=None,
                        help="prert (pre-RT T2), midrt (mid-RT T2 + registered pre-RT mask), petct (CT + PET); "
                             "optional when the model names its task")
    parser.add_argument("--model", required=True, metavar="ID_OR_PATH",
                        help="catalogue id (hntumorseg models list) or model folder (model.json, or an nnU-Net results folder)")
    parser.add_argument("--input", action="append", metavar="NAME=PATH",
                        help="an input image, repeatable: T2=..., or CT=... and PET=..., or nnU-Net channel names")
    parser.add_argument("--prior", metavar="PATH", help="midrt: the pre-RT mask registered to the mid-RT T2")
    parser.add_argument("--boxes", metavar="BOXES_JSON", help="lesion boxes (RAS mm, docs/design.md 'Boxes')")
    parser.add_argument("--output", required=True, metavar="OUT.nii.gz", help="label map to write")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(Device.values())} (or cuda:N); default auto")
    parser.add_argument("--folds", default=None, help=f"{ACCEPTED_FORMS}; default all")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="mirroring test-time augmentation (8 passes; off by default: costly on a CPU)")
    parser.add_argument("--progress", metavar="{" + ",".join(ProgressMode.values()) + "}", default="bar",
                        help="json: worker-protocol events on stdout; bar: a bar on stderr; none")
    parser.add_argument("--probabilities", metavar="PATH", help="also write class probabilities (4D image)")
    parser.add_argument("--uncertainty", metavar="PATH", help="also write a per-voxel uncertainty map (entropy, 0..1)")
    parser.add_argument("--save-boxes", metavar="PATH", help="also write the lesion boxes used (boxes.json)")


def run(args: argparse.Namespace) -> int:
    from ..worker_cli import run_in_worker

    request = SegmentRequest.from_args(args)
    return run_in_worker(request, ProgressMode.parse(args.progress, "--progress"))
