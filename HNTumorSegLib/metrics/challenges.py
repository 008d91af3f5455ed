"""The ranking metrics of each challenge, and nothing else: ``evaluate --challenge NAME``.

A challenge ranks on a few cohort numbers; everything else ``evaluate`` prints (per-case
HD95, sensitivity, ...) is context. ``--challenge`` prints exactly the numbers the
challenge ranks on, so a result can be compared with its leaderboard at a glance:

* ``hntsmrg2024`` (HNTS-MRG 2024, tasks 1 and 2): ``DSCagg`` of GTVp, of GTVn, and their
  mean ``DSCagg_mean``, the single ranking number (hntsmrg24.grand-challenge.org,
  "Tasks and Evaluation").
* ``hecktor2025`` (HECKTOR 2025 task 1): GTVp **mean per-patient DSC** (``DSC_mean``),
  GTVn ``DSCagg`` and GTVn ``F1agg`` (lesions detected at IoU > 0.3); the final rank is a
  Borda count of the GTVp rank and the GTVn rank, itself a Borda count of the two GTVn
  numbers (hecktor25.grand-challenge.org, "Tasks & Evaluation"). How cases without a
  reference GTVp enter ``DSC_mean``: :mod:`.aggregate`.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> from HNTumorSegLib.metrics import evaluate_pairs
    >>> ref = np.zeros((6, 10, 10), np.uint8); ref[2:4, 2:6, 2:6] = 1; ref[2:4, 7:9, 7:9] = 2
    >>> pred = ref.copy(); pred[2:4, 2:6, 5] = 0            # the prediction misses one column of GTVp
    >>> result = evaluate_pairs([("1", Image(pred, (1.0, 1.0, 3.0)), Image(ref, (1.0, 1.0, 3.0)))])
    >>> print(format_challenge(result, Challenge.parse("hecktor2025")))
    HECKTOR 2025 ranking metrics over 1 case:
      GTVp DSC mean  0.8571   (mean per-patient DSC, 1 cases with a reference GTVp)
      GTVn DSCagg    1.0000   (aggregated DSC)
      GTVn F1agg     1.0000   (aggregated lesion F1, IoU > 0.3)
"""

from __future__ import annotations

import math

from ..vocab import Challenge


# (label in the table, path in result["aggregate"], what it is)
RANKING_METRICS: dict[Challenge, list[tuple[str, tuple[str, ...], str]]] = {
    Challenge.HNTSMRG2024: [
        ("GTVp DSCagg", ("GTVp", "DSCagg"), "aggregated DSC"),
        ("GTVn DSCagg", ("GTVn", "DSCagg"), "aggregated DSC"),
        ("DSCagg mean", ("DSCagg_mean",), "the ranking number: mean of the two"),
    ],
    Challenge.HECKTOR2025: [
        ("GTVp DSC mean", ("GTVp", "DSC_mean"), "mean per-patient DSC"),
        ("GTVn DSCagg", ("GTVn", "DSCagg"), "aggregated DSC"),
        ("GTVn F1agg", ("GTVn", "F1agg"), "aggregated lesion F1, IoU > 0.3"),
    ],
}
TITLES = {Challenge.HNTSMRG2024: "HNTS-MRG 2024", Challenge.HECKTOR2025: "HECKTOR 2025"}


def ranking_values(result: dict, challenge: Challenge) -> dict[str, float | None]:
    """``{table label: value}`` of ``challenge``'s ranking metrics (``None`` when undefined)."""
    values: dict[str, float | None] = {}
    for label, path, _ in RANKING_METRICS[challenge]:
        node = result.get("aggregate", {})
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        values[label] = None if node is None or (isinstance(node, float) and not math.isfinite(node)) else node
    return values


def format_challenge(result: dict, challenge: Challenge) -> str:
    """The challenge's ranking metrics, one per line (``n/a`` when undefined)."""
    n = len(result.get("cases", {}))
    lines = [f"{TITLES[challenge]} ranking metrics over {n} case{'s' if n != 1 else ''}:"]
    values = ranking_values(result, challenge)
    width = max(len(label) for label in values)
    for label, path, what in RANKING_METRICS[challenge]:
        value = values[label]
        shown = "n/a" if value is None else f"{value:.4f}"
        if path == ("GTVp", "DSC_mean"):
            what += f", {result.get('aggregate', {}).get('GTVp', {}).get('DSC_mean_n', 0)} cases with a reference GTVp"
        lines.append(f"  {label.ljust(width)}  {shown}   ({what})")
    return "\n".join(lines)
