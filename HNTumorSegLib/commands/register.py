"""`hntumorseg register`: the pre-RT T2 (and its contours) registered onto the mid-RT T2 (issue 23).

Rigid, then deformable by default (``--mode rigid|affine|deformable``); the method, the library
choice and the determinism are in :mod:`HNTumorSegLib.prompts.registration`, the quality
figures in :mod:`HNTumorSegLib.prompts.registration_quality`. Writes the registered image on
the mid-RT grid, optionally the registered label map (``--labels`` -> ``--output-labels``), the
transform (``--transform``: ``.h5``/``.tfm``, fixed -> moving as ITK and Slicer read it) and the
quality JSON (``--json``) with its checkerboard picture (``--picture``; by default beside the
JSON as ``<name>.png``). Images may be files or DICOM series folders.

Every output is checked before any work (not an input, not a folder, a known suffix) and
written atomically; a bad input is one line and exit 2, with nothing written.

Example:
    $ hntumorseg register --fixed mid_T2.nii.gz --moving pre_T2.nii.gz --labels pre_mask.nii.gz \\
        --output-image pre_on_mid.nii.gz --output-labels prior.nii.gz --transform pre_to_mid.h5 --json reg.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import LABEL_NAMES
from ..dicom.read import read_volume
from ..errors import InputError
from ..fileio import write_json_atomic
from ..dicom.contours_in import ContourOptions, add_contour_arguments, read_labels
from ..image import IMAGE_SUFFIXES, check_overlap, write_image
from ..progress import ProgressReporter, TextProgressBar
from ..prompts.registration import (TRANSFORM_SUFFIXES, RegistrationSettings, register,
                                    warp_image, warp_labels, write_transform, WORK_UNITS, SAMPLING_SEED,
                                    REGISTRATION_THREADS)
from ..prompts.registration_quality import format_quality, jacobian_range, render_checkerboard, similarity
from ..protect import check_outputs
from ..vocab import ProgressMode, RegistrationMode

#: Stage weights of the progress bar (measured on the phantom pair: the B-spline dominates).
STAGES = (("load", 0.05), ("rigid", 0.15), ("affine", 0.0), ("deformable", 0.6), ("warp", 0.1),
          ("quality", 0.05), ("write", 0.05))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fixed", required=True, metavar="MID_T2", help="mid-RT T2 (image file or DICOM series folder): the grid of every output")
    parser.add_argument("--moving", required=True, metavar="PRE_T2", help="pre-RT T2 (image file or DICOM series folder)")
    parser.add_argument("--labels", default=None, metavar="PRE_CONTOURS",
                        help="pre-RT contours: a label map (1 GTVp, 2 GTVn), an RTSTRUCT or a SEG on the pre-RT scan")
    parser.add_argument("--output-image", required=True, metavar="OUT", help="the registered pre-RT T2 (.nii.gz, .nrrd, .mha)")
    parser.add_argument("--output-labels", default=None, metavar="OUT", help="the registered label map (needs --labels)")
    parser.add_argument("--transform", default=None, metavar="OUT", help="the transform, mid-RT -> pre-RT points (.h5 or .tfm)")
    parser.add_argument("--mode", default=RegistrationMode.DEFORMABLE.value, metavar="{" + ",".join(RegistrationMode.values()) + "}",
                        help="rigid, affine (rigid then affine) or deformable (rigid then B-spline; default)")
    parser.add_argument("--json", default=None, metavar="QUALITY", help="write the quality figures to this JSON file")
    parser.add_argument("--picture", default=None, metavar="PNG", help="checkerboard picture (default with --json: beside it, .png)")
    add_contour_arguments(parser)
    parser.add_argument("--progress", default="bar", metavar="{" + ",".join(ProgressMode.values()) + "}",
                        help="bar (stderr, default), json (event lines on stdout) or none")


def _image_path(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not p.name.lower().endswith(IMAGE_SUFFIXES):
        raise InputError(f"{flag} needs an image file name ({', '.join(IMAGE_SUFFIXES)})", p, "e.g. registered.nii.gz")
    return p


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Every output, named by its flag; checked against the inputs and each other before any work."""
    if args.output_labels and not args.labels:
        raise InputError("--output-labels needs --labels (the pre-RT label map to carry over)", None,
                         "add --labels PRE_LABELS or drop --output-labels")
    if args.labels and not args.output_labels:
        raise InputError("--labels is given but not --output-labels", None, "add --output-labels OUT.nii.gz")
    found: dict[str, Path | None] = {"--output-image": _image_path(args.output_image, "--output-image"),
                                     "--output-labels": _image_path(args.output_labels, "--output-labels")}
    if args.transform:
        t = Path(args.transform)
        if not t.name.lower().endswith(TRANSFORM_SUFFIXES):
            raise InputError("--transform needs a .h5 or .tfm file name", t, "e.g. pre_to_mid.h5")
        found["--transform"] = t
    if args.json:
        found["--json"] = Path(args.json)
    picture = args.picture or (str(Path(args.json).with_suffix("")) + ".png" if args.json else None)
    if picture:
        if not picture.lower().endswith(".png"):
            raise InputError("--picture needs a .png file name", picture, "e.g. registration.png")
        found["--picture"] = Path(picture)
    outputs = {k: v for k, v in found.items() if v is not None}
    inputs = {f"the input {flag}": path for flag, path in (("--fixed", args.fixed), ("--moving", args.moving),
                                                           ("--labels", args.labels)) if path}
    check_outputs(outputs, inputs)
    return outputs


def _reporter(mode: ProgressMode):
    bar = TextProgressBar() if mode is ProgressMode.BAR else None

    def emit(ev) -> None:
        if mode is ProgressMode.JSON:
            print(ev.to_json(), flush=True)
        elif bar is not None and ev.stage != "load":
            bar.update(ev)

    return ProgressReporter(emit, stages=STAGES), bar


def _volumes_ml(labels, voxel_ml: float) -> dict:
    counts = np.bincount(labels.array.ravel(), minlength=3)
    return {LABEL_NAMES[v]: float(counts[v]) * voxel_ml for v in (1, 2)}


def run(args: argparse.Namespace) -> int:
    mode = RegistrationMode.parse(args.mode, "--mode")
    progress_mode = ProgressMode.parse(args.progress, "--progress")
    outputs = _outputs(args)
    t0 = time.monotonic()
    progress, bar = _reporter(progress_mode)
    try:
        progress("load", 0.0, "reading the images")
        fixed = read_volume(args.fixed, name="mid-RT image (--fixed)", prefer_modality="MR")
        moving = read_volume(args.moving, name="pre-RT image (--moving)", prefer_modality="MR")
        labels = None
        if args.labels:
            # a label map, an RTSTRUCT or a SEG (drawn on the pre-RT series: that is the grid it lands on)
            labels = read_labels(args.labels, "pre-RT label map (--labels)", ContourOptions.from_args(args), grid=moving)
            if not labels.array.any():
                raise InputError("the pre-RT label map holds no GTVp or GTVn voxel", args.labels,
                                 "give the pre-RT contours (1 GTVp, 2 GTVn)")
            check_overlap(labels, moving, "pre-RT label map", "pre-RT image", args.moving)
        progress("load", 1.0, "images read")
        reg = register(fixed, moving, RegistrationSettings(mode=mode), progress)
        progress("warp", 0.0, "resampling onto the mid-RT grid")
        warped = warp_image(moving, reg, fixed)
        moved_labels = warp_labels(labels, reg, fixed) if labels is not None else None
        if labels is not None and moved_labels is not None and not moved_labels.array.any():
            raise InputError("the pre-RT contours land outside the mid-RT image after registration", args.labels,
                             "check the two scans show the same region (or try --mode rigid)")
        progress("quality", 0.0, "similarity, Jacobian")
        quality: dict[str, Any] = {"mode": mode.value, "fixed": str(args.fixed), "moving": str(args.moving),
                   "similarity": similarity(reg, fixed, moving), "jacobian": jacobian_range(reg, fixed),
                   "rigid": reg.rigid_parameters,
                   "stages": [{k: v for k, v in st.items() if "parameters" not in k} for st in reg.stages],
                   "determinism": {"seed": SAMPLING_SEED, "work_units": WORK_UNITS, "threads": REGISTRATION_THREADS,
                                   "working_grid_bins_xyz": list(reg.work_factors)}}
        if labels is not None and moved_labels is not None:
            before = _volumes_ml(labels, labels.voxel_volume_mm3 / 1000.0)
            after = _volumes_ml(moved_labels, fixed.voxel_volume_mm3 / 1000.0)
            quality["labels"] = {name: {"before_ml": round(before[name], 3), "after_ml": round(after[name], 3)}
                                 for name in before}
        progress("write", 0.0, "writing")
        write_image(warped, outputs["--output-image"])
        if moved_labels is not None:
            write_image(moved_labels, outputs["--output-labels"])
        if "--transform" in outputs:
            write_transform(reg.transform, outputs["--transform"])
        if "--picture" in outputs:
            render_checkerboard(fixed, warped, outputs["--picture"], moved_labels,
                                title=f"{mode.value} registration: MI {quality['similarity']['mutual_information']['after']:.3f}")
        quality["outputs"] = {flag.lstrip("-"): str(path) for flag, path in outputs.items() if flag != "--json"}
        quality["seconds"] = round(time.monotonic() - t0, 2)
        if "--json" in outputs:
            write_json_atomic(outputs["--json"], quality)
        progress("write", 1.0, "done")
    finally:
        if bar is not None:
            bar.close()
    if progress_mode is not ProgressMode.JSON:
        print(format_quality(quality))
        print("wrote " + ", ".join(str(p) for p in outputs.values()) + f" ({quality['seconds']:.1f} s)")
    return 0
