"""Challenge metrics: HNTS-MRG 2024 DSCagg, MedPy HD95 / MSD, HECKTOR 2025 GTVn F1agg.

One implementation, used by ``hntumorseg evaluate``, batch reports, the Slicer module and
training alike. Modules: :mod:`.overlap` (DSC, IoU, sensitivity, specificity, volumes),
:mod:`.distances` (HD95, MSD in mm), :mod:`.lesions` (26-connected lesions, F1 counts),
:mod:`.aggregate` (per case and cohort), :mod:`.report` (table, JSON), :mod:`.challenges`
(each challenge's ranking metrics).

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> from HNTumorSegLib.metrics import evaluate_pairs, format_table
    >>> ref = np.zeros((6, 10, 10), np.uint8); ref[2:4, 2:6, 2:6] = 1; ref[2:4, 7:9, 7:9] = 2
    >>> pred = ref.copy(); pred[2:4, 2:6, 5] = 0            # the prediction misses one column of GTVp
    >>> result = evaluate_pairs([("1", Image(pred, (1.0, 1.0, 3.0)), Image(ref, (1.0, 1.0, 3.0)))])
    >>> print(format_table(result))
    case  label     DSC  HD95 mm  HD99.9 mm  HD100 mm  MSD mm ...
    1     GTVp   0.8571     1.00       1.00      1.00    0.14 ...
    1     GTVn   1.0000     0.00       0.00      0.00    0.00 ...
      DSCagg mean  0.9286   (HNTS-MRG 2024)
      GTVn F1agg   1.0000   (HECKTOR 2025, lesion IoU > 0.3)
"""

from .aggregate import (CohortScorer, empty_prediction, evaluate_pairs, missing_predictions_error, on_reference_grid,
                        score_case, warn_to_stderr)
from .challenges import Challenge, format_challenge, ranking_values
from .distances import directed_surface_distances, hd95, hd95_and_msd, hd_percentile, msd, surface_scores
from .lesions import IOU_THRESHOLD, LesionCounts, f1_aggregate, label_lesions, lesion_f1_counts
from .overlap import OverlapCounts, dsc, iou, volume_ml
from .report import format_table, to_jsonable, write_json

__all__ = [
    "CohortScorer", "empty_prediction", "evaluate_pairs", "missing_predictions_error", "on_reference_grid",
    "score_case", "warn_to_stderr",
    "Challenge", "format_challenge", "ranking_values",
    "directed_surface_distances", "hd95", "hd95_and_msd", "hd_percentile", "msd", "surface_scores",
    "IOU_THRESHOLD", "LesionCounts", "f1_aggregate", "label_lesions", "lesion_f1_counts",
    "OverlapCounts", "dsc", "iou", "volume_ml",
    "format_table", "to_jsonable", "write_json",
]
