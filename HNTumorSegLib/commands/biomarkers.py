"""`hntumorseg biomarkers`: PET biomarkers of GTVp / GTVn (MTV, NTV, SUVmax, SUVmean, SUVpeak, TLG, NLG).

Definitions: :mod:`HNTumorSegLib.outcome.biomarkers`. PET: a NIfTI/NRRD file in SUV (HECKTOR
ships SUV; without ``--pet-units`` it must look like SUV, README "PET units"), or in Bq/mL with
``--pet-units BQML --suv-factor F``, or a DICOM PET folder (converted to SUVbw from its own tags,
vendor rules in :mod:`HNTumorSegLib.dicom.suv`). ``--ct`` (optional) is checked to cover the labels.
Bad input: one line on stderr, exit 2, no JSON written.

Example:
    $ hntumorseg biomarkers --pet CHUM-001__PT.nii.gz --labels CHUM-001.nii.gz --json bm.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dicom.contours_in import ContourOptions, add_contour_arguments, read_labels
from ..errors import InputError
from ..protect import check_outputs
from ..fileio import write_json_atomic
from ..image import check_overlap, read_image
from ..outcome.biomarkers import PET_UNITS, compute_biomarkers, format_biomarkers, read_pet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pet", required=True, help="PET image (SUV), or a DICOM PET series folder")
    parser.add_argument("--labels", required=True,
                        help="label map: 1 GTVp, 2 GTVn; or an RTSTRUCT or SEG file (--structures, --reference)")
    parser.add_argument("--ct", default=None, help="CT of the same study (checked to cover the labels)")
    parser.add_argument("--pet-units", default=None, type=str.upper, choices=PET_UNITS,
                        help="unit of an image-file PET; unstated: taken as SUV when it looks like SUV, else "
                             "refused (README 'PET units'); DICOM is converted from its tags")
    parser.add_argument("--suv-factor", type=float, default=None,
                        help="with --pet-units BQML: SUV = value x factor (body weight g / decay-corrected dose Bq)")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the biomarkers to this JSON file")
    add_contour_arguments(parser)


def check_json_target(path: Path, inputs: list[str], flag: str = "--json") -> None:
    """Refuse a folder, a path under a file, or one of the user's inputs as the output ``flag``
    (named in the message: ``outcome --plot`` checks its picture here too, issue 22)."""
    if path.is_dir():
        raise InputError(f"{flag} points to a folder", path, "give a file name such as result.json")
    if any(Path(i).resolve() == path.resolve() for i in inputs if i):
        raise InputError(f"{flag} would overwrite an input", path, "choose another output name")
    # hard links, symlinked outputs, other case on a case-insensitive disk, FIFO inputs (issue 11)
    check_outputs({flag: path}, {f"the input {i}": i for i in inputs if i})


def run(args: argparse.Namespace) -> int:
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        check_json_target(json_path, [args.pet, args.labels, args.ct])
    pet = read_pet(args.pet, args.pet_units, args.suv_factor)
    ct = read_image(args.ct, name="CT") if args.ct else None
    # an RTSTRUCT / SEG whose series is not beside it is read onto the CT's grid, else the PET's
    labels = read_labels(args.labels, "label map", ContourOptions.from_args(args), grid=ct if ct is not None else pet)
    check_overlap(labels, pet, "label map", "PET", args.pet)
    if ct is not None:
        check_overlap(labels, ct, "label map", "CT", args.ct)
    result = compute_biomarkers(pet, labels, args.labels)
    if json_path is not None:
        write_json_atomic(json_path, result)
    print(format_biomarkers(result))
    if json_path is not None:
        print(f"\nBiomarkers written to {json_path}")
    return 0
