"""The PET biomarker table of the review section (PET/CT cases) as a ``vtkMRMLTableNode``.

Rows from :func:`HNTumorSegLib.outcome.biomarkers.compute_biomarkers`: first the patient
(``GTVp`` row: MTV, SUVmax/mean/peak, TLG; ``GTVn`` row: NTV, SUVmax/mean, NLG), then one row per
lesion (``GTVp-1``, ``GTVn-2``, ... as the lesion table names them). Columns: ``name``,
``volume_ml``, ``SUVmax``, ``SUVmean``, ``SUVpeak``, ``TLG`` (TLG for GTVp rows, NLG for the GTVn
patient row, the lesion's SUVmean x volume for lesion rows). Undefined values (an empty label)
are NaN in the table, as the other review tables. Only MRML/VTK, so it runs in Slicer and on
the slicer-core wheel.

For an outcome prediction (only when an outcome model is selected),
:func:`survival_chart_nodes` makes the small interval-survival plot: a table (``day``,
``relapse_free``: 1 at day 0, then S_k at each cut point), a plot series (step curve) and a
chart titled "Research only"; the last interval (beyond 2626 days) has no end and is not drawn.

Example (a phantom PET/CT case; ``prediction`` as ``OutcomePredictor.predict()`` returns it, written by hand):
    >>> from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
    >>> from HNTumorSegLib.outcome.survival import interval_names
    >>> from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene, case = make_scene().scene, make_outcome_case(0, 5)
    >>> node = biomarker_table_node(scene, compute_biomarkers(case["PET"], case["mask"]))
    >>> node.GetName(), node.GetCellText(0, 0)                # first row: the primary tumour
    ('HNTumorSeg PET biomarkers', 'GTVp')
    >>> prediction = {"rfs": {"risk": -2.71, "intervals_days": interval_names([769, 1357, 2626]),
    ...                       "survival": [0.93, 0.85, 0.78, 0.70]}}
    >>> table, series, chart = survival_chart_nodes(scene, prediction)
    >>> table.GetNumberOfRows(), chart.GetTitle()          # day 0 and the three cut points
    (4, 'Research only: predicted relapse-free survival')
"""

from __future__ import annotations

from .review import table_node_from_rows

CHART_TITLE = "Research only: predicted relapse-free survival"
BIOMARKER_COLUMNS = ("name", "volume_ml", "SUVmax", "SUVmean", "SUVpeak", "TLG")
TABLE_NAME = "HNTumorSeg PET biomarkers"


def biomarker_rows(biomarkers: dict) -> list[dict]:
    """The table's rows (dicts with :data:`BIOMARKER_COLUMNS`), patient rows first."""
    p = biomarkers["patient"]
    rows = [{"name": "GTVp", "volume_ml": p["MTV_ml"], "SUVmax": p["SUVmax_T"], "SUVmean": p["SUVmean_T"],
             "SUVpeak": p["SUVpeak_T"], "TLG": p["TLG"]},
            {"name": "GTVn", "volume_ml": p["NTV_ml"], "SUVmax": p["SUVmax_N"], "SUVmean": p["SUVmean_N"],
             "SUVpeak": None, "TLG": p["NLG"]}]
    for les in biomarkers["lesions"]:
        rows.append({"name": f"{'GTVp' if les['label'] == 1 else 'GTVn'}-{les['index']}", "volume_ml": les["volume_ml"],
                     "SUVmax": les["SUVmax"], "SUVmean": les["SUVmean"], "SUVpeak": les["SUVpeak"], "TLG": les["TLG"]})
    return rows


def biomarker_table_node(scene, biomarkers: dict, node=None, name: str = TABLE_NAME):
    """A table node (new, or ``node`` refilled) showing :func:`biomarker_rows`."""
    return table_node_from_rows(scene, biomarker_rows(biomarkers), name, BIOMARKER_COLUMNS, node=node)


def survival_rows(prediction: dict) -> list[dict]:
    """(day, relapse-free probability) points of the curve: day 0 -> 1, then each cut point -> S_k."""
    rfs = prediction["rfs"]
    rows = [{"day": 0.0, "relapse_free": 1.0}]
    for name, s in zip(rfs["intervals_days"], rfs["survival"]):
        end = name.split(",")[1].strip(" )")
        if end != "inf":
            rows.append({"day": float(end), "relapse_free": float(s)})
    return rows


def survival_chart_nodes(scene, prediction: dict, name: str = "HNTumorSeg RFS"):
    """(table node, plot series node, plot chart node) of the predicted interval survival."""
    table = table_node_from_rows(scene, survival_rows(prediction), f"{name} table", ("day", "relapse_free"))
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} curve")
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("day")
    series.SetYColumnName("relapse_free")
    series.SetPlotType(series.PlotTypeScatter)
    series.SetLineStyle(series.LineStyleSolid)
    series.SetMarkerStyle(series.MarkerStyleCircle)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(CHART_TITLE)
    chart.SetXAxisTitle("days after the end of radiotherapy")
    chart.SetYAxisTitle("relapse-free probability")
    return table, series, chart
