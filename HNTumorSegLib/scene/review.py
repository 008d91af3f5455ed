"""Review of a result as table nodes: volumes per segment, the lesion list, comparison with a reference.

The numbers come from the label map (:func:`~.segmentation_io.export_label_map`) and from
:mod:`HNTumorSegLib.metrics` (the one implementation of DSC, HD95, MSD and lesions), so the
module shows exactly what ``hntumorseg evaluate`` reports. The row computations are plain
functions returning lists of dicts (tested without MRML); :func:`table_node_from_rows` turns
them into ``vtkMRMLTableNode`` s (numbers as double columns, names as string columns).

* volumes: one row per label: ``segment``, ``voxels``, ``volume_ml``;
* lesions: one row per 26-connected component (the metrics' definition of a lesion), GTVp
  first, then by size: ``lesion`` (``GTVn-2``), ``label``, ``volume_ml``, ``centroid_R/A/S``
  (RAS mm, the voxel-centre mean, for "jump to");
* comparison: one row per label: ``DSC``, ``HD95_mm``, ``MSD_mm``, ``IoU``, ``volume_ml``,
  ``reference_volume_ml`` (the reference is resampled onto the result's grid with nearest
  neighbour when its grid differs, as ``evaluate`` does). Undefined values (both empty) are NaN.

Export's folder (:func:`export_folder`): the panel's folder field may be empty (``Path("")`` is the
working directory, so the files would land wherever Slicer was started) or name a file; both are
refused with one line before anything is written.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> scene, phantom = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2_node = volume_node_from_image(scene, phantom["midRT_T2"], "T2")
    >>> from HNTumorSegLib.scene.segmentation_io import export_label_map, import_label_map
    >>> seg_node = import_label_map(scene, phantom["midRT_mask"], t2_node, name="HNTumorSeg result")
    >>> labels = export_label_map(seg_node, t2_node)
    >>> table = table_node_from_rows(scene, lesion_rows(labels), "HNTumorSeg lesions")
    >>> table.GetName(), table.GetNumberOfRows()                  # one row per lesion
    ('HNTumorSeg lesions', 3)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..image import Image
from ..prompts.boxes import LABEL_NAMES

VOLUME_COLUMNS = ("segment", "voxels", "volume_ml")
LESION_COLUMNS = ("lesion", "label", "volume_ml", "centroid_R", "centroid_A", "centroid_S")
COMPARISON_COLUMNS = ("segment", "DSC", "HD95_mm", "MSD_mm", "IoU", "volume_ml", "reference_volume_ml")


def export_folder(folder: str | os.PathLike | None, absolute: bool = False) -> Path:
    """The folder Export writes to; an empty one (or, with ``absolute``, a relative one: the panel's
    field, where the working directory is Slicer's, not the user's) or a file is an InputError.

    Example:
        >>> export_folder("  ")
        Traceback (most recent call last):
        ...
        HNTumorSegLib.errors.InputError: no export folder chosen - choose the folder in the Export section ...
        >>> export_folder("out", absolute=True)
        Traceback (most recent call last):
        ...
        HNTumorSegLib.errors.InputError: out: the export folder is not a full path ...
    """
    text = os.fspath(folder) if folder is not None else ""
    if not str(text).strip():
        raise InputError("no export folder chosen", None,
                         "choose the folder in the Export section (its ... button) before pressing Export")
    path = Path(str(text).strip()).expanduser()
    if absolute and not path.is_absolute():
        raise InputError("the export folder is not a full path (it would be relative to where Slicer was started)",
                         path, "choose the folder with the Export section's ... button")
    if path.exists() and not path.is_dir():
        raise InputError("the export folder is a file", path, "choose a folder")
    return path


def volume_rows(labels: Image) -> list[dict]:
    """Voxel count and volume in mL (voxels x voxel volume / 1000) of each label."""
    from ..export.stats_csv import stats_rows

    return [{"segment": r["name"], "voxels": r["voxels"], "volume_ml": r["volume_ml"]}
            for r in stats_rows(labels) if r["kind"] == "segment"]


def lesion_rows(labels: Image) -> list[dict]:
    """One row per 26-connected lesion of each label, with its volume and RAS centroid.

    The same lesions, names and order as the statistics CSV (:mod:`HNTumorSegLib.export.stats_csv`).
    """
    from ..export.stats_csv import stats_rows

    return [{"lesion": r["name"], "label": r["label"], "volume_ml": r["volume_ml"],
             "centroid_R": r["centroid_R"], "centroid_A": r["centroid_A"], "centroid_S": r["centroid_S"]}
            for r in stats_rows(labels) if r["kind"] == "lesion"]


def comparison_rows(result: Image, reference: Image) -> list[dict]:
    """DSC, HD95, MSD (mm), IoU and volumes per label of ``result`` against ``reference``.

    Scored on the result's grid (the reference is what gets resampled: the user compares with
    a reference drawn maybe elsewhere, but reviews on the images he segmented).
    """
    from ..metrics import score_case

    metrics = score_case(reference, result, case_id="review").metrics  # ref plays "pred": result grid
    rows = []
    for name in LABEL_NAMES.values():
        m = metrics[name]
        # score_case(pred=reference, ref=result): swap the volumes back; DSC/HD95/MSD/IoU are symmetric
        rows.append({"segment": name, "DSC": m["DSC"], "HD95_mm": m["HD95"], "MSD_mm": m["MSD"], "IoU": m["IoU"],
                     "volume_ml": m["volume_ref_ml"], "reference_volume_ml": m["volume_pred_ml"]})
    return rows


def table_node_from_rows(scene, rows: list[dict], name: str, columns: Sequence[str] | None = None, node=None):
    """A ``vtkMRMLTableNode`` (new, or ``node`` refilled) with one row per dict.

    Columns holding only numbers (or None) become double columns (None -> NaN); others strings.
    """
    from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkTable

    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = vtkTable()
    for col in cols:
        values = [r.get(col) for r in rows]
        numeric = all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
                      for v in values)
        arr = vtkDoubleArray() if numeric else vtkStringArray()
        arr.SetName(col)
        for v in values:
            if numeric:
                arr.InsertNextValue(math.nan if v is None else float(v))
            else:
                arr.InsertNextValue("" if v is None else str(v))
        table.AddColumn(arr)
    node.SetAndObserveTable(table)
    node.Modified()
    return node


def rows_from_table_node(node) -> list[dict]:
    """The rows of a table node as dicts (numbers as float, NaN as None): the inverse, for tests and CSV."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, col in enumerate(names):
            arr = table.GetColumn(c)
            if arr.IsNumeric():
                v = float(arr.GetValue(r))
                row[col] = None if math.isnan(v) else v
            else:
                row[col] = arr.GetValue(r)
        rows.append(row)
    return rows
