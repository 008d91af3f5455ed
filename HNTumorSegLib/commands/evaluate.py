"""`hntumorseg evaluate`: score predictions against references (HNTS-MRG and HECKTOR metrics).

``--pred`` and ``--ref`` are label files or folders; cases are paired by id
(:mod:`HNTumorSegLib.caseids`). A single file may also be a DICOM RTSTRUCT or SEG, read onto the
series it references (``--reference``, else beside it, else the other file's grid) with its
structures named by ``--structures`` or recognised (:mod:`HNTumorSegLib.dicom.contours_in`).
Per case and label: DSC, HD95, MSD, IoU, sensitivity, specificity, volumes (mL), lesion counts,
HD99.9 and HD100; per cohort: DSCagg per label and their mean (HNTS-MRG 2024), GTVp mean
per-patient DSC and GTVn F1agg (HECKTOR 2025).
``--challenge hntsmrg2024|hecktor2025`` prints only that challenge's ranking metrics.
Definitions: :mod:`HNTumorSegLib.metrics`.

Scoring is strict (issue 22): a reference case without a prediction is an error (exit 2,
listing them), since leaving it out would inflate the cohort score. ``--allow-missing empty``
scores each such case as an empty prediction (the challenges' convention: a missing
submission counts as an empty mask), ``--allow-missing skip`` leaves it out with a warning.

Bad input (missing path, no matching case, a reference case without a prediction, labels
outside {0,1,2}, unreadable file) ends with one line on stderr and exit code 2, and no JSON is
written: the JSON file is written atomically once every case has been scored. Warnings (a
prediction resampled onto its reference grid, predictions without a reference, skipped
cases) are printed on stderr after a successful run.

Example:
    $ hntumorseg evaluate --pred preds/ --ref HNTSMRG24/ --timepoint midRT --json scores.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..caseids import TIMEPOINTS, match_cases
from ..dicom.contours_in import ContourOptions, add_contour_arguments, is_contour_file, read_labels
from ..errors import InputError
from ..protect import check_outputs
from ..metrics import (Challenge, CohortScorer, empty_prediction, format_challenge, format_table,
                       missing_predictions_error, write_json)
from ..vocab import AllowMissing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="P",
                        help="prediction label map (or an RTSTRUCT or SEG file), or a folder of label maps "
                             "(searched recursively)")
    parser.add_argument("--ref", required=True, metavar="R",
                        help="reference label map (or an RTSTRUCT or SEG file), or a folder (HNTS-MRG, HECKTOR "
                             "or plain <id>.nii.gz layout)")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="write per-case and aggregate scores to this JSON file")
    parser.add_argument("--timepoint", choices=TIMEPOINTS, default=None,
                        help="HNTS-MRG: which reference mask to score against when a case has both")
    parser.add_argument("--challenge", default=None,
                        metavar="|".join(Challenge.values()),
                        help="print only that challenge's ranking metrics (hntsmrg2024: DSCagg GTVp, GTVn, mean; "
                             "hecktor2025: GTVp mean per-patient DSC, GTVn DSCagg, GTVn F1agg); "
                             "the JSON keeps every score")
    parser.add_argument("--allow-missing", default=None, metavar="|".join(AllowMissing.values()),
                        help="how to count a reference case without a prediction (default: an error): "
                             "empty = score it as an empty prediction (the challenges' convention), "
                             "skip = leave it out with a warning")
    add_contour_arguments(parser)


def _check_json_target(path: Path) -> None:
    if path.is_dir():
        raise InputError("--json points to a folder", path, "give a file name such as scores.json")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError("--json lies under a file, not a folder", path, "give a path in a folder")


def read_case(pred_path, ref_path, case_id: str, options: ContourOptions):
    """(prediction, reference) label maps of one case; an RTSTRUCT or SEG whose series is not found
    is read onto the other one's grid (README "Contours in")."""
    pred_name, ref_name = f"prediction of case {case_id}", f"reference of case {case_id}"
    if is_contour_file(pred_path) and not is_contour_file(ref_path):
        ref = read_labels(ref_path, ref_name, options)
        return read_labels(pred_path, pred_name, options, grid=ref), ref
    pred = read_labels(pred_path, pred_name, options)
    return pred, read_labels(ref_path, ref_name, options, grid=pred)


def run(args: argparse.Namespace) -> int:
    options = ContourOptions.from_args(args)
    json_path = Path(args.json) if args.json else None
    challenge = Challenge.parse_optional(getattr(args, "challenge", None), "--challenge")
    allow_missing = AllowMissing.parse_optional(getattr(args, "allow_missing", None), "--allow-missing mode")
    if json_path is not None:
        _check_json_target(json_path)
    matched = match_cases(args.pred, args.ref, timepoint=args.timepoint)
    if json_path is not None:   # protected paths (issue 11): --json is never a prediction or a reference
        inputs = {"--pred": args.pred, "--ref": args.ref}
        for item in [*matched.unmatched_pred, *matched.unmatched_ref]:
            inputs[f"the file {item.path}"] = item.path
        for pair in matched.pairs:
            inputs[f"the prediction of case {pair.case_id}"] = pair.pred.path
            inputs[f"the reference of case {pair.case_id}"] = pair.ref.path
        check_outputs({"--json": json_path}, inputs)

    warnings: list[str] = []
    for p in matched.unmatched_pred:
        warnings.append(f"prediction {p.path} has no reference with case id {p.display}; skipped")
    if matched.unmatched_ref and allow_missing is None:   # strict by default: before any case is read
        other_timepoint = args.timepoint is None and any(r.timepoint for r in matched.unmatched_ref)
        raise missing_predictions_error([r.display for r in matched.unmatched_ref], "reference case", args.pred,
                                        "|".join(AllowMissing.values()),
                                        " (or score one timepoint: --timepoint midRT)" if other_timepoint else "")
    if allow_missing == AllowMissing.SKIP:
        for r in matched.unmatched_ref:
            warnings.append(f"reference {r.path} (case {r.display}) has no prediction; skipped (--allow-missing skip)")

    scorer = CohortScorer(warn=warnings.append)
    for pair in matched.pairs:
        # read one case at a time: a cohort never sits in memory; labels checked by the reader
        pred, ref = read_case(pair.pred.path, pair.ref.path, pair.case_id, options)
        scorer.add(pair.case_id, pred, ref, check=False)  # labels checked above, with paths
    if allow_missing == AllowMissing.EMPTY:
        for r in matched.unmatched_ref:
            ref = read_labels(r.path, f"reference of case {r.display}", options)
            key = r.case_id if r.case_id not in scorer.cases else r.display
            scorer.add(key, empty_prediction(ref), ref, check=False)
            warnings.append(f"reference {r.path} (case {r.display}) has no prediction; scored as an empty "
                            "prediction (--allow-missing empty)")
    result = scorer.result()

    if json_path is not None:
        write_json(result, json_path)
    for message in warnings:
        print(f"hntumorseg evaluate: warning: {message}", file=sys.stderr)
    print(format_challenge(result, challenge) if challenge is not None else format_table(result))
    if json_path is not None:
        print(f"\nScores written to {json_path}")
    return 0
