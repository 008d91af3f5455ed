"""PET/CT review in the scene: the PET biomarker table, and the research-only outcome prediction.

**Which PET values**: SUV, from :func:`.dicom_source.pet_suv_image` (a PET loaded from DICOM is
converted from its files' headers; a NIfTI PET is taken as SUV).

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

Example (a standalone scene and a phantom PET/CT case; in Slicer pass
``slicer.dicomDatabase.fileForInstance`` for a PET loaded from DICOM):
    >>> from HNTumorSegLib.outcome.survival import interval_names
    >>> from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> from HNTumorSegLib.scene.segmentation_io import import_label_map
    >>> scene, case = make_scene().scene, make_outcome_case(0, 5)
    >>> ct_node = volume_node_from_image(scene, case["CT"], "CT")
    >>> pet_node = volume_node_from_image(scene, case["PET"], "PET")
    >>> seg_node = import_label_map(scene, case["mask"], ct_node, name="HNTumorSeg result")
    >>> table = biomarker_review(scene, seg_node, ct_node, pet_node)    # a NIfTI PET is taken as SUV
    >>> table.GetName(), table.GetNumberOfRows()
    ('HNTumorSeg PET biomarkers', 6)
    >>> outcome_model_info("outcome-model")                             # no model here: said before any child starts
    (False, 'outcome-model: outcome model not found (no model.json) - give an outcome model folder')

With a trained outcome model (Testing/test_scene_outcome_review.py builds a small one),
``run = start_outcome(scene, seg_node, ct_node, ct_node, pet_node, MODEL, "ehr.json")``, then
``run.wait()`` and ``show_outcome(scene, run.result)``; here a result written by hand:
    >>> prediction = {"warning": "RESEARCH USE ONLY", "rfs": {"risk": -3.26, "folds": 5,
    ...               "intervals_days": interval_names([769, 1357, 2626]), "survival": [0.93, 0.85, 0.78, 0.70]}}
    >>> nodes = show_outcome(scene, prediction)
    >>> nodes.chart.GetTitle(), nodes.view.GetPlotChartNodeID() == nodes.chart.GetID()
    ('Research only: predicted relapse-free survival', True)
    >>> print(outcome_summary(prediction))
    RESEARCH USE ONLY
    <BLANKLINE>
    RFS risk score: -3.2600  (higher = earlier recurrence expected; -sum of interval survival, 5 folds)
      relapse-free after interval [0, 769)       days: 0.930
      relapse-free after interval [769, 1357)    days: 0.850
      relapse-free after interval [1357, 2626)   days: 0.780
      relapse-free after interval [2626, inf)    days: 0.700
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..image import check_overlap
from .biomarkers_table import TABLE_NAME, biomarker_table_node, survival_chart_nodes
from .dicom_source import FileForInstance, pet_suv_image
from .mrml import image_from_volume_node
from .segmentation_io import export_label_map

ROLE_ATTRIBUTE = "HNTumorSeg.Role"
BIOMARKER_ROLE = "biomarkers"
OUTCOME_ROLE = "outcome"


def _role_node(scene, cls: str, role: str, name: str):
    for i in range(scene.GetNumberOfNodesByClass(cls)):
        node = scene.GetNthNodeByClass(i, cls)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetName() == name:
            return node
    return None


def biomarker_review(scene, seg_node, reference_node, pet_node, file_for_instance: FileForInstance | None = None):
    """The PET biomarker table node of the result (refilled when it exists); raises InputError."""
    from ..outcome.biomarkers import compute_biomarkers

    labels = export_label_map(seg_node, reference_node)  # on the reference's grid
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
    labels = export_label_map(seg_node, reference_node)  # on the reference's grid
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
    """The survival chart of ``prediction`` in a plot view node (``view``, else the one an earlier
    prediction made, else a new one: the panel's small plot shows it), replacing the previous
    prediction's table, series and chart. None when the model predicts no RFS (HPV only)."""
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
        view = _role_node(scene, "vtkMRMLPlotViewNode", OUTCOME_ROLE, f"{name} view")
    if view is None:
        view = scene.AddNewNodeByClass("vtkMRMLPlotViewNode", f"{name} view")
        view.SetAttribute(ROLE_ATTRIBUTE, OUTCOME_ROLE)
    view.SetPlotChartNodeID(chart.GetID())
    return OutcomeNodes(table, series, chart, view)


def outcome_summary(prediction: dict) -> str:
    """The panel's text: the research-use warning, then risk, interval survival and HPV probability."""
    from ..outcome.predictor import format_prediction

    return format_prediction(prediction)


def outcome_model_info(model: str | os.PathLike) -> tuple[bool, str]:
    """(usable, one line for the panel) about an outcome model folder: what it predicts, or why not."""
    from ..outcome.card import read_outcome_card

    try:
        card = read_outcome_card(model)
    except InputError as exc:  # ModelError too
        return False, str(exc)
    return True, f"{card.id}: predicts {', '.join(sorted(card.endpoints))} (research use only)"
