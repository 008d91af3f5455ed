"""Per-case scores and the challenges' cohort aggregates.

Per case and per label (GTVp = 1, GTVn = 2), on the **reference grid**: ``DSC``, ``HD95``,
``HD99_9``, ``HD100``, ``MSD`` (mm), ``IoU``, ``sensitivity``, ``specificity``, ``volume_pred_ml``, ``volume_ref_ml``,
``n_lesions_pred``, ``n_lesions_ref`` (26-connected components); GTVn also ``TP``, ``FP``,
``FN`` lesions. See :mod:`.overlap`, :mod:`.distances`, :mod:`.lesions` for definitions and
for when a score is undefined (``None``, JSON ``null``).

Cohort (``"aggregate"``), as the challenges' own scoring code:

* DSCagg (HNTS-MRG 2024) per label = Σ 2|A∩B| / Σ (|A| + |B|), every volume in **mm³**
  (voxel count x the case's voxel volume), so a case of larger voxels weighs more.
  Cases empty in both add 0 to both sums and so change nothing; a label absent from every
  prediction and every reference gives ``None`` (undefined);
* DSCagg_mean = mean of the GTVp and GTVn DSCagg; ``None`` when either is undefined
  (the official script yields NaN there);
* F1agg (HECKTOR 2025) for GTVn = 2ΣTP / (2ΣTP + ΣFP + ΣFN);
* DSC_mean (HECKTOR 2025 ranks GTVp by "the mean DSC across all patients") = the mean of the
  per-case DSC over the cases whose **reference** holds the label. A case without that label
  in its reference is left out of the mean, whatever the prediction (so a case empty in both
  counts neither 1 nor 0). The organisers publish no scoring code for 2025; this is what
  their own published baseline computes (BioMedIA-MBZUAI/HECKTOR2025 ``Task1/scripts/train.py``:
  MONAI ``DiceMetric(include_background=False, reduction="mean")``, whose default
  ``ignore_empty=True`` makes an empty-reference case NaN and the mean skip it), and it keeps
  a correct "no tumour" answer from scoring 0. ``DSC_mean_n`` says how many cases were
  averaged. An empty prediction against a non-empty reference counts 0 (as in the organisers'
  HECKTOR 2021 evaluator, voreille/hecktor ``segmentation_metrics.py``).

A prediction on another grid than its reference is first resampled onto the reference
grid with nearest neighbour, as the HNTS-MRG scoring script does, and a warning is given.

Example:
    >>> ref = np.zeros((6, 10, 10), np.uint8); ref[2:4, 2:6, 2:6] = 1; ref[2:4, 7:9, 7:9] = 2
    >>> pred = ref.copy(); pred[2:4, 2:6, 5] = 0            # the prediction misses one column of GTVp
    >>> result = evaluate_pairs([("case_1", Image(pred, (1.0, 1.0, 3.0)), Image(ref, (1.0, 1.0, 3.0)))])
    >>> round(result["aggregate"]["DSCagg_mean"], 4)        # (12/14 + 1) / 2
    0.9286
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .. import LABEL_NAMES
from ..errors import InputError
from ..image import Image, check_labels, physical_overlap_fraction, resample_to
from .distances import bounding_box, surface_scores
from .lesions import f1_aggregate, lesion_f1_counts
from .overlap import OverlapCounts, volume_ml

Warn = Callable[[str], None]
DETECTION_LABELS = ("GTVn",)  # HECKTOR 2025 scores lesion detection on the nodes only


def warn_to_stderr(message: str) -> None:
    """Default warning sink: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class LabelTotals:
    """What one label adds to the cohort sums."""

    intersection_mm3: float = 0.0
    sum_mm3: float = 0.0  # |A| + |B| in mm³
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dsc_sum: float = 0.0  # per-case DSC summed over the cases whose reference holds the label
    dsc_n: int = 0

    def add(self, other: "LabelTotals") -> None:
        self.intersection_mm3 += other.intersection_mm3
        self.sum_mm3 += other.sum_mm3
        self.dsc_sum += other.dsc_sum
        self.dsc_n += other.dsc_n
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def dsc_agg(self) -> float | None:
        return None if self.sum_mm3 == 0 else 2.0 * self.intersection_mm3 / self.sum_mm3

    def dsc_mean(self) -> float | None:
        """Mean per-case DSC over the cases with the label in the reference (HECKTOR 2025 GTVp)."""
        return None if self.dsc_n == 0 else self.dsc_sum / self.dsc_n


@dataclass
class CaseScore:
    """Scores of one case: the JSON-ready ``metrics`` and the ``totals`` for the cohort sums."""

    metrics: dict[str, dict]
    totals: dict[str, LabelTotals]


def on_reference_grid(pred: Image, ref: Image, case_id: str = "case", warn: Warn | None = None) -> Image:
    """``pred`` itself when it lies on ``ref``'s grid, else resampled onto it (nearest) with a warning."""
    if pred.same_grid(ref):
        return pred
    covered = physical_overlap_fraction(ref, pred)
    # a prediction that misses most of the reference's extent is usually a wrong pairing or a lost origin
    coverage = f"; it covers only {covered:.0%} of the reference's extent" if covered < 0.99 else ""
    (warn or warn_to_stderr)(
        f"case {case_id}: prediction grid (size {pred.shape_xyz}, spacing "
        f"{tuple(round(s, 4) for s in pred.spacing)}) differs from the reference grid (size {ref.shape_xyz}, "
        f"spacing {tuple(round(s, 4) for s in ref.spacing)}){coverage}; resampled onto it with nearest neighbour"
    )
    return resample_to(pred, ref, label=True)


def score_case(pred: Image, ref: Image, case_id: str = "case", warn: Warn | None = None,
               check: bool = True) -> CaseScore:
    """All per-case scores of ``pred`` against ``ref`` (labels {0, 1, 2}) on the reference grid.

    ``check=False`` skips the label check when the caller has already made it (with file paths).
    """
    if check:
        check_labels(ref, name=f"reference of case {case_id}")
        check_labels(pred, name=f"prediction of case {case_id}")
    pred = on_reference_grid(pred, ref, case_id, warn)
    voxel_mm3 = ref.voxel_volume_mm3
    spacing_zyx = tuple(ref.spacing[::-1])
    total = int(ref.array.size)
    # every score below only needs the box holding both masks: crop once (large volumes stay fast)
    box = bounding_box((pred.array > 0) | (ref.array > 0))
    pred_arr, ref_arr = pred.array[box], ref.array[box]

    metrics: dict[str, dict] = {}
    totals: dict[str, LabelTotals] = {}
    for value, name in LABEL_NAMES.items():
        p, r = pred_arr == value, ref_arr == value
        counts = OverlapCounts.from_masks(p, r)
        counts = OverlapCounts(counts.intersection, counts.pred, counts.ref, total)
        surface = surface_scores(p, r, spacing_zyx)
        lesions = lesion_f1_counts(p, r)
        entry = {
            "DSC": counts.dsc(),
            "HD95": surface["HD95"],
            "HD99_9": surface["HD99_9"],
            "HD100": surface["HD100"],
            "MSD": surface["MSD"],
            "IoU": counts.iou(),
            "sensitivity": counts.sensitivity(),
            "specificity": counts.specificity(),
            "volume_pred_ml": volume_ml(counts.pred, voxel_mm3),
            "volume_ref_ml": volume_ml(counts.ref, voxel_mm3),
            "n_lesions_pred": lesions.n_pred,
            "n_lesions_ref": lesions.n_ref,
        }
        label_totals = LabelTotals(
            intersection_mm3=counts.intersection * voxel_mm3,
            sum_mm3=(counts.pred + counts.ref) * voxel_mm3,
        )
        if counts.ref > 0:  # only cases with the label in the reference enter DSC_mean
            label_totals.dsc_sum, label_totals.dsc_n = float(counts.dsc() or 0.0), 1
        if name in DETECTION_LABELS:
            entry.update({"TP": lesions.tp, "FP": lesions.fp, "FN": lesions.fn})
            label_totals.tp, label_totals.fp, label_totals.fn = lesions.tp, lesions.fp, lesions.fn
        metrics[name] = entry
        totals[name] = label_totals
    return CaseScore(metrics=metrics, totals=totals)


@dataclass
class CohortScorer:
    """Accumulates cases one at a time, so a cohort never has to sit in memory.

    Example:
        >>> scorer = CohortScorer()
        >>> labels = np.zeros((4, 8, 8), np.uint8); labels[1:3, 2:6, 2:6] = 1
        >>> scorer.add("1", Image(labels, (1.0, 1.0, 2.0)), Image(labels, (1.0, 1.0, 2.0)))["GTVp"]["DSC"]
        1.0
        >>> result = scorer.result()
        >>> result["aggregate"]["GTVp"]["DSCagg"]
        1.0
    """

    warn: Warn | None = None
    cases: dict[str, dict] = field(default_factory=dict)
    totals: dict[str, LabelTotals] = field(
        default_factory=lambda: {name: LabelTotals() for name in LABEL_NAMES.values()})

    def add(self, case_id: str, pred: Image, ref: Image, check: bool = True) -> dict:
        if case_id in self.cases:
            raise InputError(f"case id {case_id!r} appears twice", fix="give each case once")
        score = score_case(pred, ref, case_id, self.warn, check=check)
        self.cases[case_id] = score.metrics
        for name, label_totals in score.totals.items():
            self.totals[name].add(label_totals)
        return score.metrics

    def aggregate(self) -> dict:
        gtvp = self.totals["GTVp"].dsc_agg()
        gtvn = self.totals["GTVn"].dsc_agg()
        nodes = self.totals["GTVn"]
        primary = self.totals["GTVp"]
        return {
            "GTVp": {"DSCagg": gtvp, "DSC_mean": primary.dsc_mean(), "DSC_mean_n": primary.dsc_n},
            "GTVn": {"DSCagg": gtvn, "F1agg": f1_aggregate(nodes.tp, nodes.fp, nodes.fn)},
            "DSCagg_mean": None if gtvp is None or gtvn is None else (gtvp + gtvn) / 2.0,
        }

    def result(self) -> dict:
        """``{"aggregate": {...}, "cases": {id: {"GTVp": {...}, "GTVn": {...}}}}``."""
        return {"aggregate": self.aggregate(), "cases": dict(self.cases)}


#: How many missing ids a one-line error lists before "and N more".
MISSING_SHOWN = 10


def missing_predictions_error(ids: list[str], what: str, path, modes: str, other_fix: str = "") -> InputError:
    """The one-line error for truth ``ids`` (cases or patients) without a prediction (issue 22).

    Strict scoring is the default: a left-out case inflates a challenge score, so the user must
    say how to count it (``--allow-missing``: ``modes``). The list is cut after
    :data:`MISSING_SHOWN` ids so that a whole missing cohort stays one readable line.
    """
    shown = ", ".join(str(i)[:60] for i in ids[:MISSING_SHOWN])
    more = f" and {len(ids) - MISSING_SHOWN} more" if len(ids) > MISSING_SHOWN else ""
    many = len(ids) != 1
    return InputError(f"{len(ids)} {what}{'s' if many else ''} of the truth ha{'ve' if many else 's'} "
                      f"no prediction: {shown}{more}", path,
                      f"predict them{other_fix}, or say how to count them with --allow-missing {modes}")


def empty_prediction(ref: Image) -> Image:
    """An all-background prediction on ``ref``'s grid: how ``--allow-missing empty`` scores a missing case
    (the challenges' convention: a case without a submitted mask scores as an empty one)."""
    return ref.with_array(np.zeros(ref.array.shape, np.uint8))


def evaluate_pairs(pairs: Iterable[tuple[str, Image, Image]], warn: Warn | None = None) -> dict:
    """Score ``(case_id, prediction, reference)`` triples; returns the JSON-ready result dict."""
    scorer = CohortScorer(warn=warn)
    for case_id, pred, ref in pairs:
        scorer.add(str(case_id), pred, ref)
    return scorer.result()
