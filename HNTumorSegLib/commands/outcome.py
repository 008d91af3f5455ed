"""`hntumorseg outcome`: RFS risk, interval survival and HPV probability of one PET/CT case (research only).

Seed 004's multimodal networks (:mod:`HNTumorSegLib.outcome`): ``--model`` is an outcome model
folder (``model.json`` of format ``hntumorseg-outcome/1``, made by
``python -m hntumorseg_training outcome-train``); ``--input CT=... --input PET=...`` the images,
``--labels`` the GTVp/GTVn label map (a `segment` result or a reference), ``--clinical`` a JSON
object or a CSV (with ``--patient ID`` when it holds several patients). The research-use
warning is printed first and stored in the JSON.

Example:
    $ hntumorseg outcome --model models/outcome --input CT=ct.nii.gz --input PET=pet.nii.gz \\
          --labels labels.nii.gz --clinical ehr.json --json outcome.json --plot outcome.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dicom.contours_in import ContourOptions, add_contour_arguments, read_labels
from ..errors import InputError
from ..fileio import write_json_atomic
from ..image import check_overlap, read_image
from ..outcome.biomarkers import PET_UNITS, read_pet
from ..outcome.clinical import read_clinical_record
from .biomarkers import check_json_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="outcome model folder (model.json + fold weights)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                        help="CT=PATH and PET=PATH (PET in SUV, or a DICOM PET folder)")
    parser.add_argument("--labels", required=True,
                        help="label map: 1 GTVp, 2 GTVn; or an RTSTRUCT or SEG file (--structures, --reference)")
    parser.add_argument("--clinical", required=True, help="clinical values: JSON object or CSV")
    parser.add_argument("--patient", default=None, help="patient id to pick from a CSV of several patients")
    parser.add_argument("--pet-units", default=None, type=str.upper, choices=PET_UNITS,
                        help="unit of an image-file PET (unstated: SUV when it looks like SUV; README 'PET units')")
    parser.add_argument("--suv-factor", type=float, default=None, help="with --pet-units BQML")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the prediction to this JSON file")
    parser.add_argument("--plot", metavar="PNG", default=None, help="draw the survival curve and HPV probability")
    add_contour_arguments(parser)


def parse_inputs(items: list[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip().upper()
        if not sep or not path or name not in ("CT", "PET", "PT"):
            raise InputError(f"--input {item!r} is not CT=PATH or PET=PATH", None, "give --input CT=ct.nii.gz --input PET=pet.nii.gz")
        inputs["PET" if name == "PT" else name] = path
    for need in ("CT", "PET"):
        if need not in inputs:
            raise InputError(f"no --input {need}=PATH given", None, "an outcome model needs CT and PET")
    return inputs


def run(args: argparse.Namespace) -> int:
    from ..outcome.predictor import OutcomePredictor, format_prediction

    inputs = parse_inputs(args.input)
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        check_json_target(json_path, [inputs["CT"], inputs["PET"], args.labels, args.clinical])
    if args.plot:
        check_json_target(Path(args.plot), [inputs["CT"], inputs["PET"], args.labels, args.clinical], flag="--plot")
        if json_path is not None and json_path.resolve() == Path(args.plot).resolve():
            raise InputError("--json and --plot name the same file", json_path, "give each output its own name")
    clinical = read_clinical_record(args.clinical, args.patient)
    ct = read_image(inputs["CT"], name="CT")
    pet = read_pet(inputs["PET"], args.pet_units, args.suv_factor)
    labels = read_labels(args.labels, "label map", ContourOptions.from_args(args), grid=ct)   # or RTSTRUCT / SEG
    check_overlap(labels, ct, "label map", "CT", inputs["CT"])
    check_overlap(labels, pet, "label map", "PET", inputs["PET"])
    predictor = OutcomePredictor(args.model, device=args.device)
    result = predictor.predict(ct, pet, labels, clinical)
    if json_path is not None:
        write_json_atomic(json_path, result)
    if args.plot:
        from ..outcome.plot import write_prediction_plot

        write_prediction_plot(result, args.plot)
    print(format_prediction(result))
    if json_path is not None:
        print(f"\nPrediction written to {json_path}")
    return 0
