"""The evaluation result as a readable table and as a JSON file.

Undefined scores (``None`` or NaN) print as ``n/a`` and are written as JSON ``null``
(never the non-standard ``NaN`` token). The JSON file is written atomically: a temporary
file in the same folder, then a rename, so a failed run leaves nothing at the path.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> from HNTumorSegLib.metrics import evaluate_pairs
    >>> labels = np.zeros((4, 8, 8), np.uint8); labels[1:3, 2:6, 2:6] = 1
    >>> result = evaluate_pairs([("1", Image(labels, (1.0, 1.0, 2.0)), Image(labels, (1.0, 1.0, 2.0)))])
    >>> print(format_table(result))
    case  label     DSC  HD95 mm ...
    1     GTVp   1.0000     0.00 ...
    >>> write_json(result, "scores.json")
    PosixPath('scores.json')
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .. import LABEL_NAMES
from ..fileio import write_json_atomic

_COLUMNS = [  # (header, key, format)
    ("DSC", "DSC", "{:.4f}"),
    ("HD95 mm", "HD95", "{:.2f}"),
    ("HD99.9 mm", "HD99_9", "{:.2f}"),
    ("HD100 mm", "HD100", "{:.2f}"),
    ("MSD mm", "MSD", "{:.2f}"),
    ("IoU", "IoU", "{:.4f}"),
    ("Sens", "sensitivity", "{:.4f}"),
    ("Spec", "specificity", "{:.4f}"),
    ("Vpred mL", "volume_pred_ml", "{:.3f}"),
    ("Vref mL", "volume_ref_ml", "{:.3f}"),
    ("Les p/r", None, None),
    ("TP/FP/FN", None, None),
]


def to_jsonable(value):
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return pattern.format(value)


def _row(case_id: str, label: str, entry: dict) -> list[str]:
    cells = [case_id, label]
    for _, key, pattern in _COLUMNS:
        if key is not None:
            cells.append(_fmt(entry.get(key), pattern))
    cells.append(f"{entry.get('n_lesions_pred', 'n/a')}/{entry.get('n_lesions_ref', 'n/a')}")
    if "TP" in entry:
        cells.append(f"{entry['TP']}/{entry['FP']}/{entry['FN']}")
    else:
        cells.append("")
    return cells


def format_table(result: dict) -> str:
    """Per-case rows (one per label) followed by the cohort aggregates."""
    header = ["case", "label"] + [h for h, _, _ in _COLUMNS]
    rows = [
        _row(case_id, name, labels.get(name, {}))
        for case_id, labels in result.get("cases", {}).items()
        for name in LABEL_NAMES.values()
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    agg = result.get("aggregate", {})
    n = len(result.get("cases", {}))
    lines += [
        "",
        f"Aggregate over {n} case{'s' if n != 1 else ''}:",
        f"  GTVp DSCagg  {_fmt(agg.get('GTVp', {}).get('DSCagg'), '{:.4f}')}",
        f"  GTVp DSC mean {_fmt(agg.get('GTVp', {}).get('DSC_mean'), '{:.4f}')}  (HECKTOR 2025, over "
        f"{agg.get('GTVp', {}).get('DSC_mean_n', 0)} cases with a reference GTVp)",
        f"  GTVn DSCagg  {_fmt(agg.get('GTVn', {}).get('DSCagg'), '{:.4f}')}",
        f"  DSCagg mean  {_fmt(agg.get('DSCagg_mean'), '{:.4f}')}   (HNTS-MRG 2024)",
        f"  GTVn F1agg   {_fmt(agg.get('GTVn', {}).get('F1agg'), '{:.4f}')}   (HECKTOR 2025, lesion IoU > 0.3)",
    ]
    return "\n".join(lines)


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` as indented JSON atomically (temporary file + rename)."""
    return write_json_atomic(path, to_jsonable(result), allow_nan=False)
