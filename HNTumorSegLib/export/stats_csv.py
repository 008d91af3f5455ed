"""Segment statistics as CSV: one row per segment, then one per lesion.

Columns: ``kind`` (segment / lesion), ``name``, ``label``, ``voxels``, ``volume_ml``,
``centroid_R``, ``centroid_A``, ``centroid_S`` (RAS mm; empty for an empty segment), and the
``min_R..max_S`` RAS extent of the voxels (their edges). Comma-separated, ``.`` decimals, one
header line: what spreadsheet programs and pandas read without options.

Example:
    >>> labels = Image(np.zeros((4, 8, 8), np.uint8), spacing=(1.0, 1.0, 2.0))
    >>> labels.array[1:3, 2:5, 2:5] = 1; labels.array[1, 6, 6] = 2        # a GTVp and a one-voxel GTVn
    >>> write_stats_csv(labels, "out/case1_stats.csv")
    PosixPath('out/case1_stats.csv')
    >>> print(Path("out/case1_stats.csv").read_text())
    kind,name,label,voxels,volume_ml,centroid_R,...
    segment,GTVp,1,18,0.036,...
    segment,GTVn,2,1,0.002,...
    lesion,GTVp-1,1,18,0.036,...
    lesion,GTVn-1,2,1,0.002,...
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .. import LABEL_NAMES
from ..image import Image, check_labels, index_box_to_ras, lps_to_ras

COLUMNS = ("kind", "name", "label", "voxels", "volume_ml", "centroid_R", "centroid_A", "centroid_S",
           "min_R", "min_A", "min_S", "max_R", "max_A", "max_S")


def _stats(mask: np.ndarray, image: Image) -> dict:
    idx = np.argwhere(mask)
    n = len(idx)
    row = {"voxels": n, "volume_ml": n * image.voxel_volume_mm3 / 1000.0}
    if n:
        centre = lps_to_ras(image.index_to_physical(idx.mean(axis=0)[::-1]))
        lo, hi = index_box_to_ras(image, idx.min(axis=0)[::-1], idx.max(axis=0)[::-1])
        row.update(zip(("centroid_R", "centroid_A", "centroid_S"), centre))
        row.update(zip(("min_R", "min_A", "min_S"), lo))
        row.update(zip(("max_R", "max_A", "max_S"), hi))
    return row


def stats_rows(labels: Image) -> list[dict]:
    """The rows written to the CSV (segments first, then lesions in the order of every lesion list:
    :func:`HNTumorSegLib.metrics.lesions.lesions_by_size`)."""
    from ..metrics.lesions import lesions_by_size

    check_labels(labels)
    rows = [{"kind": "segment", "name": name, "label": value, **_stats(labels.array == value, labels)}
            for value, name in LABEL_NAMES.items()]
    for value, name in LABEL_NAMES.items():
        for i, (box, inside) in enumerate(lesions_by_size(labels.array == value), start=1):
            mask = np.zeros(labels.array.shape, bool)
            mask[box] = inside
            rows.append({"kind": "lesion", "name": f"{name}-{i}", "label": value, **_stats(mask, labels)})
    return rows


def write_stats_csv(labels: Image, path: str | os.PathLike) -> Path:
    """Write :func:`stats_rows` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for row in stats_rows(labels):
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return Path(path)
