"""`hntumorseg segment`: segment one case with a model (docs/design.md "Command line").

    hntumorseg segment --task midrt --model demo-midrt --input T2=mid_T2.nii.gz \\
        --prior pre_mask_registered.nii.gz --output labels.nii.gz [--device auto|cpu|cuda|mps] \\
        [--prior-image PRE_T2 [--registration rigid|affine|deformable] [--save-registered DIR]] \\
        [--folds all|first|fold_all|0,1] [--tta/--no-tta] [--progress json|bar|none] \\
        [--probabilities P.nii.gz] [--uncertainty U.nii.gz] [--save-boxes boxes.json] [--restrict-to-boxes]
        [--series UID|NAME=UID] [--rtstruct RT.dcm] [--seg SEG.dcm] [--holes nested|keyhole]
        [--align-pet auto|off|force] [--server URL --token-file F [--ca-cert C]]

Inputs are named ``T2`` (prert, midrt), ``CT`` and ``PET`` (petct), or by an nnU-Net folder's
``channel_names``. The label map (0 background, 1 GTVp, 2 GTVn) lies on the first input's grid.
An input may be a DICOM folder (``--series`` when it holds several series); with the CT or T2
given so, ``--rtstruct``/``--seg`` also write DICOM objects on that series
(:class:`HNTumorSegLib.commands.export.DicomOutputs`), checked before the run starts.
Any mistake in the inputs is one line on stderr, exit code 2, and no output file.

``--progress json`` prints the worker protocol's events on stdout, one JSON object per line
(``{"event": "progress", "stage": ..., "fraction": ..., "message": ...}``, then one
``result``); ``bar`` draws a bar on stderr; ``none`` is silent. Without ``json`` a one-line
summary is printed at the end.

The run goes through the background worker (:mod:`HNTumorSegLib.worker_cli`), the same child
process the Slicer module and batch runs use: one path, and Ctrl-C ends the whole tree.
With ``--server`` the same loop runs a :class:`~HNTumorSegLib.server.client.RemoteJob` instead
(issue 29): the inputs are uploaded, the label map downloaded and published here all or nothing,
Ctrl-C cancels the job on the server, a lost connection is one line (exit 1), nothing written.

``--task``, ``--device``, ``--folds`` and ``--progress`` are read as text and converted by
:class:`~HNTumorSegLib.pipeline.request.SegmentRequest` (:mod:`HNTumorSegLib.vocab`,
:mod:`HNTumorSegLib.folds`) rather than by argparse ``choices``: a typo is then one line with
a "did you mean" (``unknown task 'mdrt' (did you mean midrt?)``), exit code 2, like every
other input mistake, instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
import tempfile

from ..dicom.contours_in import add_contour_arguments
from ..errors import InputError
from ..folds import ACCEPTED_FORMS
from ..pipeline.request import SegmentRequest
from ..protect import check_request
from ..vocab import AlignPet, Checkpoint, Device, PetUnit, ProgressMode, RegistrationMode, Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", metavar="{" + ",".join(Task.values()) + "}", default=None,
                        help="prert (pre-RT T2), midrt (mid-RT T2 + registered pre-RT mask), petct (CT + PET); "
                             "optional when the model names its task")
    parser.add_argument("--model", required=True, metavar="ID_OR_PATH", action="append",
                        help="a model folder (model.json, an nnU-Net results folder, or ensemble.json) or a catalogue id "
                             "(hntumorseg models list); text with a / or starting with ./ or ~ is a path; a bare name is a "
                             "catalogue id first, then a folder of that name here (write ./NAME for the folder). Repeat it "
                             "to run several models as one ensemble (each with its own preprocessing, probabilities averaged)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                        help="with several --model: one weight per model (default equal)")
    parser.add_argument("--input", action="append", metavar="NAME=PATH",
                        help="an input image, repeatable: T2=..., or CT=... and PET=..., or nnU-Net channel names")
    parser.add_argument("--prior", metavar="PATH", help="midrt: the pre-RT mask registered to the mid-RT T2 "
                        "(a label map, or an RTSTRUCT or SEG on the mid-RT series: --structures, --reference)")
    parser.add_argument("--prior-image", metavar="PRE_T2",
                        help="midrt: the pre-RT T2 (file or DICOM folder) --prior is drawn on; it is registered onto the "
                             "mid-RT T2 first (as `register`) and the prior carried over (issue 23)")
    parser.add_argument("--registration", metavar="{" + ",".join(RegistrationMode.values()) + "}", default=None,
                        help="with --prior-image: rigid, affine or deformable (default: deformable, as `register`)")
    parser.add_argument("--save-registered", metavar="DIR",
                        help="with --prior-image: also write the registered pre-RT T2 and prior, the transform and "
                             "registration.json (similarity, Jacobian, fold) into DIR")
    parser.add_argument("--boxes", metavar="BOXES_JSON", help="lesion boxes (RAS mm, docs/design.md 'Boxes')")
    parser.add_argument("--output", required=True, metavar="OUT.nii.gz", help="label map to write")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(Device.values())} (or cuda:N); default auto")
    parser.add_argument("--folds", default=None, help=f"{ACCEPTED_FORMS}; default all")
    add_checkpoint_argument(parser)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirroring test-time augmentation, 8 passes: about 8x the inference time on a CPU. "
                             "Default: the model's - on where its seed ran it (nnU-Net folders, seed 004), "
                             "off otherwise (seed 002 disabled it; the demo models)")
    parser.add_argument("--progress", metavar="{" + ",".join(ProgressMode.values()) + "}", default="bar",
                        help="json: worker-protocol events on stdout; bar: a bar on stderr; none")
    parser.add_argument("--probabilities", metavar="PATH", help="also write class probabilities (4D image)")
    parser.add_argument("--uncertainty", metavar="PATH", help="also write a per-voxel uncertainty map (entropy, 0..1)")
    parser.add_argument("--save-boxes", metavar="PATH", help="also write the lesion boxes used (boxes.json)")
    parser.add_argument("--series", action="append", metavar="UID|NAME=UID",
                        help="for an input given as a DICOM folder holding several series: the SeriesInstanceUID "
                             "(UID alone: the first input's; NAME=UID for others, repeatable)")
    parser.add_argument("--rtstruct", metavar="OUT.dcm",
                        help="also write a DICOM RTSTRUCT on the source series (CT or T2 given as a DICOM folder)")
    parser.add_argument("--seg", metavar="OUT.dcm", help="also write a DICOM SEG on the source series")
    parser.add_argument("--holes", default="nested", metavar="nested|keyhole",
                        help="RTSTRUCT holes: nested contours (even-odd, default) or keyhole")
    parser.add_argument("--restrict-to-boxes", action="store_true",
                        help="prert, midrt: segment only within the lesion boxes (from --prior or --boxes) plus 5 mm: "
                             "faster on a CPU, but lesions outside the boxes are lost. Default: the whole image, "
                             "as the seeds ran. (petct: --boxes already replace the head crop by the boxes + 20 mm)")
    add_align_pet_argument(parser)
    parser.add_argument("--pet-units", default=None, metavar="{" + ",".join(PetUnit.values()) + "}",
                        help="unit of a PET given as an image file: SUV, or BQML with --suv-factor; unstated: the "
                             "model's (SUV), and a PET that does not look like SUV is refused (README 'PET units'). "
                             "A DICOM PET is converted by its header")
    parser.add_argument("--suv-factor", type=float, default=None,
                        help="with --pet-units BQML: SUV = value x factor (body weight g / decay-corrected dose Bq)")
    add_contour_arguments(parser)
    add_server_arguments(parser)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server URL --token-file F [--ca-cert C]``: run on a segmentation server (issue 29)."""
    parser.add_argument("--server", metavar="URL", help="run on a segmentation server (hntumorseg serve) at URL, e.g. "
                        "https://gpu-server:8765: the inputs are uploaded, the outputs written here as by a local run")
    parser.add_argument("--token-file", metavar="F", help="with --server: the file holding the server's token "
                        "(readable by you only: chmod 600)")
    parser.add_argument("--ca-cert", metavar="C", help="with --server https://...: the CA certificate (PEM) that "
                        "signed the server's certificate, when it is not in the system's store")


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (segment, batch): which checkpoint each nnU-Net fold runs (issue 28)."""
    parser.add_argument("--checkpoint", metavar="{" + ",".join(Checkpoint.values()) + "}", default=None,
                        help="nnU-Net folders (an ensemble's members and stages too): the fold checkpoint to run. "
                             "Default: the model's - an ensemble card's \"checkpoint\" (seed 002: checkpoint_best, "
                             "as its released code loads), else checkpoint_final; a fold folder lacking the chosen "
                             "file is exit 2")


def add_align_pet_argument(parser: argparse.ArgumentParser) -> None:
    """``--align-pet`` (segment, batch): when a PET is registered to its CT (issue 24)."""
    parser.add_argument("--align-pet", metavar="{" + ",".join(AlignPet.values()) + "}", default=AlignPet.AUTO.value,
                        help="petct: auto (default) registers a PET whose header places it off the CT and applies it "
                             "only when the alignment gate passes (else exit 2); off never registers (a PET off its CT "
                             "is refused); force always registers and applies, gate or not (README 'PET/CT alignment')")


def run(args: argparse.Namespace) -> int:
    models = list(args.model) if isinstance(args.model, (list, tuple)) else [args.model]
    if len(models) == 1:
        if args.weights:
            raise InputError("--weights needs several --model", None, "give one --model per weight, or drop --weights")
        args.model = models[0]
        return _run(args)
    from ..models.ensemble_card import ad_hoc_ensemble

    with tempfile.TemporaryDirectory(prefix="hntumorseg-ensemble-") as folder:
        args.model = str(ad_hoc_ensemble(folder, models, args.weights))
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..worker_cli import run_in_worker

    from .export import DicomOutputs

    request = SegmentRequest.from_args(args)
    check_request(request)   # before the worker starts: a FIFO input or an output onto an input -> exit 2 now
    dicom = DicomOutputs.plan(request, args.rtstruct, args.seg, args.holes)  # DICOM source checked before any work
    code = run_in_worker(request, ProgressMode.parse(args.progress, "--progress"), handle=_remote_job(args))
    if code == 0 and dicom is not None:
        dicom.write(request.output_path)
    return code


def _remote_job(args: argparse.Namespace):
    """A :class:`~HNTumorSegLib.server.client.RemoteJob` for ``--server`` (None: run here)."""
    server, token_file, ca_cert = (getattr(args, k, None) for k in ("server", "token_file", "ca_cert"))
    if not server:
        if token_file or ca_cert:
            raise InputError("--token-file and --ca-cert go with --server", None, "add --server URL or drop them")
        return None
    if not token_file:
        raise InputError("--server needs --token-file", None, "give the file holding the server's token")
    from ..server.client import RemoteClient

    return RemoteClient.from_token_file(server, token_file, ca_cert, delete_after=True).new_job()
