"""PET/CT review in the scene: the PET biomarker table, and the research-only outcome prediction.

**Which PET values.** Biomarkers need SUV (body weight). Where a PET volume node came from
decides how it gets there (:func:`pet_suv_image`):

* loaded from DICOM, it has source files: Slicer's DICOM module sets the attribute
  ``DICOM.instanceUIDs`` (SOP Instance UIDs, space-separated) and the files are found through
  the DICOM database (``slicer.dicomDatabase.fileForInstance``, passed in as
  ``file_for_instance``); our own folder loading (:func:`.inputs.load_image_node`) sets
  ``HNTumorSeg.SourceFiles`` (``|``-separated paths). Then the SUV values are read from the
  files by the DICOM SUV conversion (:func:`HNTumorSegLib.dicom.suv.to_suv`), never from the
  node's voxels: Slicer's DICOM reader gives Bq/mL (and may treat per-slice rescale slopes
  differently), the SUV needs each slice's header. The SUV slices are put on the node's grid
  (slice order matched by position, so a reversed order is fine) and take the node's *world*
  geometry, so a PET registered with a linear transform is read where the user put it. A node
  whose own grid no longer matches its series (resampled, cropped) is refused: its SUV cannot
  be known.
* no DICOM source (NIfTI, NRRD): the voxels are taken as SUV, as HECKTOR distributes them
  (the command line's default ``--pet-units SUV``).

**Biomarker table** (:func:`biomarker_review`): the result segmentation is exported on its
reference volume's grid (:func:`.segmentation_io.export_label_map`), the biomarkers are computed
(:func:`HNTumorSegLib.outcome.biomarkers.compute_biomarkers`: PET values on the PET's own grid)
and shown as :func:`.biomarkers_table.biomarker_table_node` (refilled on a second press, not
duplicated).

**Outcome prediction** (:func:`start_outcome`, :func:`show_outcome`): torch never enters the
caller's process; :class:`HNTumorSegLib.outcome.child_run.OutcomeRun` runs
``hntumorseg outcome --json`` in a child. The result becomes the small survival chart of
:func:`.biomarkers_table.survival_chart_nodes` (titled research-only) in a plot view node the
panel shows, and a few lines of text (:func:`outcome_summary`) led by the research-use warning.

Example:
    >>> table = biomarker_review(scene, seg_node, ct_node, pet_node, slicer.dicomDatabase.fileForInstance)
    >>> run = start_outcome(scene, seg_node, ct_node, ct_node, pet_node, "models/outcome", "ehr.json")
    >>> run.wait(); nodes = show_outcome(scene, run.result)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..image import Image, check_overlap
from .biomarkers_table import TABLE_NAME, biomarker_table_node, survival_chart_nodes
from .mrml import image_from_volume_node
from .segmentation_io import export_label_map

SOURCE_FILES_ATTRIBUTE = "HNTumorSeg.SourceFiles"  # set by .inputs.load_image_node
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"     # set by Slicer's DICOM plugins
ROLE_ATTRIBUTE = "HNTumorSeg.Role"
BIOMARKER_ROLE = "biomarkers"
OUTCOME_ROLE = "outcome"

FileForInstance = Callable[[str], str]


def dicom_source_files(node, file_for_instance: FileForInstance | None = None) -> list[str] | None:
    """The DICOM files a volume node was loaded from, or None when it was not loaded from DICOM.

    ``HNTumorSeg.SourceFiles`` first (our folder loading), else ``DICOM.instanceUIDs`` looked up
    with ``file_for_instance`` (in Slicer ``slicer.dicomDatabase.fileForInstance``). A node from
    DICOM whose files cannot be found is an :class:`InputError`: guessing "not DICOM" would read
    Bq/mL as SUV.
    """
    attr = node.GetAttribute(SOURCE_FILES_ATTRIBUTE)
    if attr:
        return attr.split("|")
    uids = (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    fix = "open the DICOM database that holds the series (DICOM module), or load the PET in SUV as NIfTI"
    if file_for_instance is None:
        raise InputError(f"volume {node.GetName()!r} was loaded from DICOM but no DICOM database is open", None, fix)
    files = [file_for_instance(uid) for uid in uids]
    missing = [uid for uid, f in zip(uids, files) if not f or not Path(f).is_file()]
    if missing:
        raise InputError(f"{len(missing)} of the {len(uids)} DICOM files of volume {node.GetName()!r} are not in "
                         f"the DICOM database", None, fix)
    return files


def pet_suv_image(pet_node, file_for_instance: FileForInstance | None = None) -> Image:
    """The PET volume in SUVbw on its world geometry (module docstring: DICOM -> converted, else as is)."""
    from ..dicom.geometry import grid_matches, slice_index_on
    from ..dicom.pixels import read_series
    from ..dicom.suv import to_suv
    from ..export._dicom_source import source_geometry

    world = image_from_volume_node(pet_node, dtype=np.float32)
    files = dicom_source_files(pet_node, file_for_instance)
    if files is None:
        return world
    geometry = source_geometry(files)  # one checked series
    if geometry.series.modality != "PT":
        raise InputError(f"volume {pet_node.GetName()!r} was loaded from a {geometry.series.modality} series, "
                         "not a PET (PT)", geometry.files[0], "select the PET volume")
    suv = to_suv(geometry, read_series(geometry, name="PET")).array
    own_grid = image_from_volume_node(pet_node, world=False)
    if not grid_matches(geometry, own_grid):
        raise InputError(f"volume {pet_node.GetName()!r} no longer lies on the grid of its DICOM series "
                         "(resampled or cropped), so its SUV is unknown", geometry.files[0],
                         "select the PET as loaded from DICOM (a transform on it is fine)")
    out = np.empty(world.array.shape, np.float32)
    for k_series, header in enumerate(geometry.headers):  # slice order matched by position
        out[slice_index_on(own_grid, header)] = suv[k_series]
    return world.with_array(out)


def result_label_map(seg_node, reference_node) -> Image:
    """The result segmentation as a GTVp/GTVn label map on its reference volume's grid."""
    return export_label_map(seg_node, reference_node)


def _role_node(scene, cls: str, role: str, name: str):
    for i in range(scene.GetNumberOfNodesByClass(cls)):
        node = scene.GetNthNodeByClass(i, cls)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetName() == name:
            return node
    return None


def biomarker_review(scene, seg_node, reference_node, pet_node, file_for_instance: FileForInstance | None = None):
    """The PET biomarker table node of the result (refilled when it exists); raises InputError."""
    from ..outcome.biomarkers import compute_biomarkers

    labels = result_label_map(seg_node, reference_node)
    pet = pet_suv_image(pet_node, file_for_instance)
    check_overlap(labels, pet, "segmentation", f"PET {pet_node.GetName()!r}")
    biomarkers = compute_biomarkers(pet, labels)
    node = biomarker_table_node(scene, biomarkers, node=_role_node(scene, "vtkMRMLTableNode", BIOMARKER_ROLE,
                                                                       TABLE_NAME))
    node.SetAttribute(ROLE_ATTRIBUTE, BIOMARKER_ROLE)
    return node


def start_outcome(scene, seg_node, reference_node, ct_node, pet_node, model: str | os.PathLike,
                  clinical_path: str | os.PathLike, patient: str | None = None,
                  file_for_instance: FileForInstance | None = None, python: str | None = None):
    """Start ``hntumorseg outcome`` in a child process; returns the running
    :class:`~HNTumorSegLib.outcome.child_run.OutcomeRun`. Inputs are checked here first (one line)."""
    from ..outcome.card import read_outcome_card
    from ..outcome.child_run import OutcomeRun

    if not str(model).strip():
        raise InputError("no outcome model selected", None, "choose an outcome model folder (model.json)")
    read_outcome_card(model)  # a wrong folder is said now, not after the child started
    clinical = Path(clinical_path) if str(clinical_path).strip() else None
    if clinical is None or not clinical.is_file():
        raise InputError("no clinical data file", clinical, "choose the patient's clinical JSON or CSV file")
    if ct_node is None or pet_node is None:
        raise InputError("outcome prediction needs the CT and the PET", None, "select them in the Inputs section")
    labels = result_label_map(seg_node, reference_node)
    ct = image_from_volume_node(ct_node)
    pet = pet_suv_image(pet_node, file_for_instance)
    return OutcomeRun(python=python).start(ct, pet, labels, model, clinical, patient=patient or None)


@dataclass
class OutcomeNodes:
    """The nodes showing one prediction: the curve's table, series and chart, and the plot view."""

    table: object
    series: object
    chart: object
    view: object


def show_outcome(scene, prediction: dict, view=None, name: str = "HNTumorSeg RFS") -> OutcomeNodes | None:
    """The survival chart of ``prediction`` in a plot view node (``view``, or a new one), replacing
    the previous prediction's nodes. None when the model predicts no RFS (HPV only)."""
    for cls in ("vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLTableNode"):
        for i in reversed(range(scene.GetNumberOfNodesByClass(cls))):
            node = scene.GetNthNodeByClass(i, cls)
            if node.GetAttribute(ROLE_ATTRIBUTE) == OUTCOME_ROLE:
                scene.RemoveNode(node)
    if "rfs" not in prediction:
        return None
    table, series, chart = survival_chart_nodes(scene, prediction, name=name)
    for node in (table, series, chart):
        node.SetAttribute(ROLE_ATTRIBUTE, OUTCOME_ROLE)
    if view is None:
        view = scene.AddNewNodeByClass("vtkMRMLPlotViewNode", f"{name} view")
    view.SetPlotChartNodeID(chart.GetID())
    return OutcomeNodes(table, series, chart, view)


def outcome_summary(prediction: dict) -> str:
    """The panel's text: the research-use warning, then risk, interval survival and HPV probability."""
    from ..outcome.predictor import format_prediction

    return format_prediction(prediction)


def outcome_model_text(model: str | os.PathLike) -> str:
    """One line about an outcome model folder for the panel (or why it cannot be used)."""
    from ..outcome.card import read_outcome_card

    try:
        card = read_outcome_card(model)
    except InputError as exc:  # ModelError too
        return str(exc)
    return f"{card.id}: predicts {', '.join(sorted(card.endpoints))} (research use only)"
