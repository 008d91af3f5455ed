"""`hntumorseg evaluate-outcome`: C-index of RFS risks and HPV metrics against the truth (HECKTOR 2025 tasks 2, 3).

``--pred`` CSV: ``PatientID``, ``risk`` (higher = earlier relapse) and/or ``hpv_probability``.
``--truth`` CSV: ``PatientID``, ``RFS`` (days), ``Relapse`` (1 relapse, 0 censored) and/or
``HPV`` (0/1); every column name can be changed with its option. JSON::

    {"RFS": {"C_index": x, "n": n, "events": e},
     "HPV": {"balanced_accuracy", "specificity", "sensitivity", "AUC", "threshold", "n", "positives"}}

Definitions: :mod:`HNTumorSegLib.outcome.metrics`. Every predicted patient must be in the
truth, and (issue 22) every truth patient must have a prediction: a left-out patient inflates
a challenge score, so that is an error listing them unless ``--allow-missing skip`` leaves
them out with a warning (``empty`` has no meaning for a risk or a probability). Bad input
(unknown patient, a column that is not there - with a "did you mean" -, a non-numeric or
non-finite value, RFS below 0, HPV not 0/1, a risk or probability that is not finite): one
line naming the patient and column, exit 2, no JSON.

Example:
    $ hntumorseg evaluate-outcome --pred pred.csv --truth HECKTOR_2025_Training_Task_2.csv --json scores.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import InputError
from ..metrics import missing_predictions_error
from ..fileio import write_json_atomic
from ..outcome.clinical import read_clinical_table, to_float
from ..outcome.metrics import harrell_c_index, hpv_metrics
from ..vocab import AllowMissing, did_you_mean
from .biomarkers import check_json_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="CSV: PatientID, risk and/or hpv_probability")
    parser.add_argument("--truth", required=True, help="CSV: PatientID, RFS, Relapse and/or HPV")
    parser.add_argument("--json", metavar="OUT", default=None)
    parser.add_argument("--threshold", type=float, default=0.5, help="HPV positive when probability >= this (0.5)")
    parser.add_argument("--id-column", default="PatientID")
    parser.add_argument("--risk-column", default="risk")
    parser.add_argument("--prob-column", default="hpv_probability")
    parser.add_argument("--time-column", default="RFS")
    parser.add_argument("--event-column", default="Relapse")
    parser.add_argument("--hpv-column", default="HPV")
    parser.add_argument("--allow-missing", default=None, metavar=AllowMissing.SKIP.value,
                        help="skip = leave truth patients without a prediction out, with a warning "
                             "(default: they are an error)")


def _columns(table: dict) -> list[str]:
    return list(next(iter(table.values()))) if table else []


def _check_column(table: dict, column: str, option: str, path: str) -> None:
    """InputError (with a "did you mean") when ``column`` is not a header of ``table``."""
    if column not in _columns(table):
        headers = [c for c in _columns(table) if c]
        raise InputError(f"no column {column!r}{did_you_mean(column, headers)} (columns: {', '.join(headers)[:200]})",
                         path, f"add it or name the column with {option}")


def _numbers(table: dict, ids: list[str], column: str, path: str, minimum: float | None = None) -> list[float]:
    """Finite numbers of ``column`` for ``ids`` (>= ``minimum`` when given); one line naming the patient otherwise."""
    out = []
    for pid in ids:
        row = table[pid]
        if column not in row:
            raise InputError(f"no column {column!r}", path, "add it or name the column with its option")
        try:
            value = to_float(row[column])
        except (ValueError, OverflowError):
            raise InputError(f"patient {pid}: {column} value {str(row[column])[:40]!r} is not a finite number", path,
                             f"fix the {column} column") from None
        if value is not None and minimum is not None and value < minimum:
            raise InputError(f"patient {pid}: {column} value {value:g} is below {minimum:g}", path,
                             f"fix the {column} column (days from the end of treatment, not negative)")
        if value is None:
            raise InputError(f"patient {pid}: {column} is empty", path, f"fill in {column} or remove the patient")
        out.append(value)
    return out


def _has(table: dict, column: str) -> bool:
    return bool(table) and column in next(iter(table.values()))


def run(args: argparse.Namespace) -> int:
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        check_json_target(json_path, [args.pred, args.truth])
    allow_missing = AllowMissing.parse_optional(getattr(args, "allow_missing", None), "--allow-missing mode")
    if allow_missing == AllowMissing.EMPTY:
        raise InputError("--allow-missing empty has no meaning for outcome scores", None,
                         "use --allow-missing skip, or predict every patient")
    if not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise InputError(f"--threshold {args.threshold} is not in [0, 1]", None, "give a probability")
    pred = read_clinical_table(args.pred, id_column=args.id_column)
    truth = read_clinical_table(args.truth, id_column=args.id_column)
    unknown = [p for p in pred if p not in truth]
    if unknown:
        raise InputError(f"patient {unknown[0]} of the predictions is not in the truth"
                         f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}", args.pred,
                         "check the patient ids")
    ids = list(pred)
    if not ids:
        raise InputError("prediction table holds no patient", args.pred, "give at least one row")
    # a column named on the command line must exist (issue 22: `--risk-column nope` left RFS unscored)
    for option, column, default in (("--risk-column", args.risk_column, "risk"),
                                    ("--prob-column", args.prob_column, "hpv_probability")):
        if column != default:
            _check_column(pred, column, option, args.pred)
    result: dict = {}
    did = False
    if _has(pred, args.risk_column):
        _check_column(truth, args.time_column, "--time-column", args.truth)
        _check_column(truth, args.event_column, "--event-column", args.truth)
        times = _numbers(truth, ids, args.time_column, args.truth, minimum=0.0)
        events = _numbers(truth, ids, args.event_column, args.truth)
        if any(e not in (0.0, 1.0) for e in events):
            raise InputError(f"{args.event_column} must be 1 (relapse) or 0 (censored)", args.truth, "fix the column")
        risk = _numbers(pred, ids, args.risk_column, args.pred)
        result["RFS"] = {"C_index": harrell_c_index(times, events, risk), "n": len(ids), "events": int(sum(events))}
        did = True
    if _has(pred, args.prob_column):
        _check_column(truth, args.hpv_column, "--hpv-column", args.truth)
        labels = _numbers(truth, ids, args.hpv_column, args.truth)
        if any(v not in (0.0, 1.0) for v in labels):
            raise InputError(f"{args.hpv_column} must be 0 or 1", args.truth, "fix the column")
        prob = _numbers(pred, ids, args.prob_column, args.pred)
        if any(not 0.0 <= p <= 1.0 for p in prob):
            raise InputError(f"{args.prob_column} values must lie in [0, 1]", args.pred, "give probabilities")
        result["HPV"] = hpv_metrics([int(v) for v in labels], prob, args.threshold)
        did = True
    if not did:
        raise InputError(f"prediction table has neither {args.risk_column!r} nor {args.prob_column!r}", args.pred,
                         "add a risk and/or hpv_probability column (or name them with --risk-column/--prob-column)")
    missing = [p for p in truth if p not in pred]
    if missing and allow_missing is None:   # strict by default (after the checks of the values themselves)
        raise missing_predictions_error(missing, "patient", args.pred, AllowMissing.SKIP.value)
    if json_path is not None:
        write_json_atomic(json_path, result)
    if missing:
        print(f"hntumorseg evaluate-outcome: warning: {len(missing)} patient(s) of the truth have no prediction; "
              "left out (--allow-missing skip)", file=sys.stderr)
    if "RFS" in result:
        r = result["RFS"]
        c = "n/a (no comparable pair)" if r["C_index"] is None else f"{r['C_index']:.4f}"
        print(f"RFS  C-index {c}  (n={r['n']}, events={r['events']})")
    if "HPV" in result:
        h = result["HPV"]
        def f(v):
            return "n/a" if v is None else f"{v:.4f}"
        print(f"HPV  balanced accuracy {f(h['balanced_accuracy'])}  sensitivity {f(h['sensitivity'])}  "
              f"specificity {f(h['specificity'])}  AUC {f(h['AUC'])}  (threshold {h['threshold']:g}, n={h['n']})")
    if json_path is not None:
        print(f"\nScores written to {json_path}")
    return 0
