"""The panel's PET/CT extras: the PET biomarker button (Review) and the "Outcome (research only)" section.

A helper of ``HNTumorSegWidget`` (it shares the widget's ``ui``), in its own file so the module's
main file stays about segmentation. The work is in ``HNTumorSegLib.scene.outcome_review`` (no Qt,
tested on slicer-core): the biomarker table from the result and the PET in SUV (a PET loaded
from DICOM is converted from its files, found through the DICOM database), and the outcome
prediction, which runs ``hntumorseg outcome --json`` in a child process - torch never enters
Slicer's GUI process. Prediction is offered only once a usable outcome model folder is chosen;
the result is shown as research-only text and a small survival plot (a ``qMRMLPlotWidget`` on
the chart node the library makes). ``Testing/test_ui_static.py`` checks the widgets used here
against the .ui file, as for ``HNTumorSeg.py``.
"""

from __future__ import annotations

import qt
import slicer

from HNTumorSegLib.vocab import Task

from .logic import dicom_file_lookup

try:  # Slicer's translation function (5.4+); older Slicer shows the English text
    from slicer.i18n import tr as _
except ImportError:  # pragma: no cover
    def _(text):
        return text


class OutcomePanel:
    """Biomarker table and research-only outcome prediction for ``widget`` (an ``HNTumorSegWidget``)."""

    POLL_MS = 200

    def __init__(self, widget):
        self.widget = widget
        self.ui = widget.ui
        self.run = None   # HNTumorSegLib.outcome.child_run.OutcomeRun
        self.plot = None  # qMRMLPlotWidget, made on the first prediction
        self.timer = qt.QTimer()
        self.timer.setInterval(self.POLL_MS)
        self.timer.connect("timeout()", self.onOutcomePoll)
        self.ui.petBiomarkersButton.connect("clicked(bool)", self.onPetBiomarkers)
        self.ui.outcomeModelPathLineEdit.connect("currentPathChanged(QString)", self.onOutcomeModelChanged)
        self.ui.outcomePredictButton.connect("clicked(bool)", self.onPredictOutcome)
        self.ui.outcomePlotWidget.setVisible(False)  # until a prediction has a curve to show
        self.onOutcomeModelChanged()

    def cleanup(self):
        """Module closed or scene closing: end the child (its temp images go with it), let go of the plot."""
        self.timer.stop()
        if self.run is not None and self.run.running:
            self.run.cancel()
            self.onOutcomePoll()
        if self.plot is not None:
            self.plot.setMRMLPlotViewNode(None)

    def updateGUI(self, task):
        """PET/CT only: the biomarker button and the outcome section."""
        self.ui.petBiomarkersButton.setVisible(task == Task.PETCT)
        self.ui.outcomeCollapsibleButton.setVisible(task == Task.PETCT)

    # ---- PET biomarkers ---------------------------------------------------------------------
    def onPetBiomarkers(self):
        """The biomarker table of the selected result on the PET input, in SUV; shown in the table view."""
        from HNTumorSegLib.scene.outcome_review import biomarker_review

        with slicer.util.tryWithErrorDisplay(_("Could not compute the PET biomarkers."), waitCursor=True):
            seg, ref = self.widget.reviewPanel.resultAndReference()
            p = self.widget._parameterNode
            if p is None or p.pet is None:
                raise ValueError(_("Select the PET volume in the Inputs section (task PET/CT)."))
            table = biomarker_review(slicer.mrmlScene, seg, ref, p.pet, dicom_file_lookup())
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    # ---- outcome (research only) ----------------------------------------------------------------
    def onOutcomeModelChanged(self, path=None):
        """Prediction is offered only once an outcome model is chosen (and can be used)."""
        from HNTumorSegLib.scene.outcome_review import outcome_model_info

        path = self.ui.outcomeModelPathLineEdit.currentPath.strip()
        usable, text = outcome_model_info(path) if path else (False, "")
        self.ui.outcomeModelInfoLabel.text = text or _("Choose an outcome model folder to predict relapse-free "
                                                       "survival and HPV status (research only).")
        self.ui.outcomeRunWidget.setVisible(bool(path))
        self.ui.outcomePredictButton.setEnabled(usable)

    def onPredictOutcome(self):
        """Start `hntumorseg outcome` in a child process, or cancel the running one."""
        from HNTumorSegLib.scene.outcome_review import start_outcome

        if self.run is not None and self.run.running:
            self.run.cancel()
            self.onOutcomePoll()
            return
        if not self.widget.logic.ensureDependencies(log=self.widget.runPanel.log):
            return  # torch and MONAI come with the first-run install
        with slicer.util.tryWithErrorDisplay(_("Could not start the outcome prediction."), waitCursor=True):
            seg, ref = self.widget.reviewPanel.resultAndReference()
            p = self.widget._parameterNode
            self.run = start_outcome(slicer.mrmlScene, seg, ref, p.ct, p.pet,
                                     self.ui.outcomeModelPathLineEdit.currentPath,
                                     self.ui.outcomeClinicalPathLineEdit.currentPath,
                                     patient=self.ui.outcomePatientLineEdit.text.strip(),
                                     file_for_instance=dicom_file_lookup())
            self.ui.outcomeResultLabel.text = _("Predicting (research use only) ...")
            self.ui.outcomePredictButton.text = _("Cancel the prediction")
            self.timer.start()

    def onOutcomePoll(self):
        """Timer: once the child has ended, show its result (text and small plot) or its one-line error."""
        from HNTumorSegLib.scene.outcome_review import outcome_summary, show_outcome

        if self.run is None or self.run.poll() == "running":
            return
        self.timer.stop()
        self.ui.outcomePredictButton.text = _("Predict outcome (research only)")
        if self.run.state != "succeeded":
            self.ui.outcomeResultLabel.text = self.run.error
            if self.run.state != "cancelled":
                slicer.util.errorDisplay(self.run.error)
            return
        self.ui.outcomeResultLabel.text = outcome_summary(self.run.result)
        nodes = show_outcome(slicer.mrmlScene, self.run.result)
        if nodes is not None:
            if self.plot is None:  # small: the plot alone, without the plot view's controller bar
                self.plot = slicer.qMRMLPlotWidget()
                self.plot.setMRMLScene(slicer.mrmlScene)
                self.plot.plotController().setVisible(False)
                self.ui.outcomePlotWidget.layout().addWidget(self.plot)
            self.plot.setMRMLPlotViewNode(nodes.view)
        self.ui.outcomePlotWidget.setVisible(nodes is not None)
