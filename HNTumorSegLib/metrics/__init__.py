"""Challenge metrics: HNTS-MRG 2024 DSCagg, MedPy HD95 / MSD, HECKTOR 2025 GTVn F1agg.

One implementation, used by ``hntumorseg evaluate``, batch reports, the Slicer module and
training alike. Modules: :mod:`.overlap` (DSC, IoU, sensitivity, specificity, volumes),
:mod:`.distances` (HD95, MSD in mm), :mod:`.lesions` (26-connected lesions, F1 counts),
:mod:`.aggregate` (per case and cohort), :mod:`.report` (table, JSON), :mod:`.challenges`
(each challenge's ranking metrics).

Example:
    >>> from HNTumorSegLib.metrics import evaluate_pairs, format_table
    >>> result = evaluate_pairs([("1", pred_image, ref_image)])
    >>> print(format_table(result))
"""

from .aggregate import CohortScorer, evaluate_pairs, on_reference_grid, score_case, warn_to_stderr
from .challenges import Challenge, format_challenge, ranking_values
from .distances import directed_surface_distances, hd95, hd95_and_msd, hd_percentile, msd, surface_scores
from .lesions import IOU_THRESHOLD, LesionCounts, f1_aggregate, label_lesions, lesion_f1_counts
from .overlap import OverlapCounts, dsc, iou, volume_ml
from .report import format_table, to_jsonable, write_json

__all__ = [
    "CohortScorer", "evaluate_pairs", "on_reference_grid", "score_case", "warn_to_stderr",
    "Challenge", "format_challenge", "ranking_values",
    "directed_surface_distances", "hd95", "hd95_and_msd", "hd_percentile", "msd", "surface_scores",
    "IOU_THRESHOLD", "LesionCounts", "f1_aggregate", "label_lesions", "lesion_f1_counts",
    "OverlapCounts", "dsc", "iou", "volume_ml",
    "format_table", "to_jsonable", "write_json",
]
