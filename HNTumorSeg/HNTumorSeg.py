"""HNTumorSeg: head-and-neck GTVp / GTVn contouring in 3D Slicer (the scripted module).

A thin shell over ``HNTumorSegLib`` (no Qt there; tested on the slicer-core wheel) and the
Slicer-side package ``HNTumorSegSlicer`` beside this file (logic, parameter node, the panel's
sections, self-test). The widget loads the .ui, keeps the parameter node and hands each section to
a helper class: ``inputs_panel`` (task, images, prior, lesion boxes), ``model_panel`` (model box,
Download / Import), ``run_panel`` (device, quality, Apply, progress), ``refine_panel`` (warm
session: update while editing, undo), ``review_panel`` (review, export), ``outcome_panel`` (PET
biomarkers, outcome). The panel's state lives in the module's parameter node through
``parameterNodeWrapper`` (``HNTumorSegSlicer.logic.HNTumorSegParameterNode``, typed: enums, bools,
node references), which mirrors ``HNTumorSegLib.scene.panel_params.PanelParameters`` field by
field (a test compares them). Selectors and check boxes are bound with ``connectGui``
(``SlicerParameterName`` in the .ui), the task / model / device / quality boxes by hand by their
panels (translated titles, an editable model box). Inference runs in a child process; a QTimer
polls it every 200 ms. Closing the scene cancels a running job and re-reads the parameter node
(``HNTumorSegLib.scene.scene_close``). ``UI_WIDGETS`` lists every .ui widget the panels touch
with the class it expects; ``Testing/test_ui_static.py`` checks it against the .ui file.
"""

from __future__ import annotations

import os
import sys

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

try:  # Slicer's translation functions (5.4+); older Slicer shows the English text
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # pragma: no cover
    def _(text):
        return text

    def translate(context, text):
        return text

# HNTumorSegLib is installed beside this file (HNTumorSeg/CMakeLists.txt); in a source tree it is one up.
# HNTumorSegSlicer (the Slicer-side package) is always beside this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (_HERE, os.path.dirname(_HERE)):
    if os.path.isdir(os.path.join(_p, "HNTumorSegLib")) and _p not in sys.path:
        sys.path.insert(0, _p)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

DOC_URL = "https://github.com/hntumorseg/SlicerHNTumorSeg#readme"
UI_WIDGETS = {
    "taskComboBox": "QComboBox", "loadCaseButton": "QPushButton", "autoAssignButton": "QPushButton",
    "t2Selector": "qMRMLNodeComboBox", "ctSelector": "qMRMLNodeComboBox", "petSelector": "qMRMLNodeComboBox",
    "priorSelector": "qMRMLNodeComboBox", "t2Label": "QLabel", "ctLabel": "QLabel", "petLabel": "QLabel",
    "priorLabel": "QLabel", "boxListWidget": "QListWidget", "boxesFromPriorButton": "QPushButton",
    "priorStructuresLineEdit": "QLineEdit", "priorStructuresWidget": "QWidget", "priorStructuresMessageLabel": "QLabel",
    "preRTLabel": "QLabel", "preRTSelector": "qMRMLNodeComboBox", "registerPriorButton": "QPushButton",
    "resamplePriorButton": "QPushButton",
    "addGTVpBoxButton": "QPushButton", "addGTVnBoxButton": "QPushButton", "deleteBoxButton": "QPushButton",
    "useBoxesCheckBox": "QCheckBox", "gradientPreviewCheckBox": "QCheckBox", "modelComboBox": "QComboBox",
    "restrictToBoxesCheckBox": "QCheckBox",
    "modelBrowseButton": "QPushButton", "modelInfoLabel": "QLabel",
    "downloadModelButton": "QPushButton", "importModelButton": "QPushButton",
    "deviceComboBox": "QComboBox", "qualityComboBox": "QComboBox", "uncertaintyCheckBox": "QCheckBox",
    "alignPetComboBox": "QComboBox",
    "runOnComboBox": "QComboBox", "serverUrlLineEdit": "QLineEdit", "tokenFileLineEdit": "QLineEdit",
    "tokenFileBrowseButton": "QPushButton", "serverTestButton": "QPushButton",
    "applyButton": "QPushButton", "deviceUsedLabel": "QLabel",
    "updateWhileEditingCheckBox": "QCheckBox", "undoRefinementButton": "QPushButton",
    "progressBar": "QProgressBar", "stageLabel": "QLabel", "logTextEdit": "QPlainTextEdit",
    "segmentationSelector": "qMRMLNodeComboBox", "referenceSelector": "qMRMLNodeComboBox",
    "reviewButton": "QPushButton", "exportDirectoryPathLineEdit": "ctkPathLineEdit",
    "exportNiftiCheckBox": "QCheckBox", "exportDicomSegCheckBox": "QCheckBox", "exportRtstructCheckBox": "QCheckBox",
    "exportCsvCheckBox": "QCheckBox", "exportButton": "QPushButton",
    "petBiomarkersButton": "QPushButton", "outcomeCollapsibleButton": "ctkCollapsibleButton",
    "outcomeModelPathLineEdit": "ctkPathLineEdit", "outcomeModelInfoLabel": "QLabel", "outcomeRunWidget": "QWidget",
    "outcomeClinicalPathLineEdit": "ctkPathLineEdit", "outcomePatientLineEdit": "QLineEdit",
    "outcomePredictButton": "QPushButton", "outcomeResultLabel": "QLabel", "outcomePlotWidget": "QWidget",
}
SEEDS = (
    "team SZTU-SingularMatrix, STU-Net and nnU-Net v2 for pre-RT MRI head and neck tumour segmentation "
    "(HNTS-MRG 2024, task 1)",
    "J. Wu, Enhancing nnU-Net for improved medical image segmentation: a comparative study with TotalSegmentator",
    "C. Huang, L. Wang, A two-stage coarse-to-fine ensembling segmentation framework with multi-channel CT "
    "enhancement for head and neck tumor and lymph segmentation in PET and CT image (HECKTOR 2025)",
    "J. Ren, K. Hochreuter, M. E. Rasmussen, J. F. Kallehauge, S. S. Korreman, Gradient map-assisted head and "
    "neck tumor segmentation: a pre-RT to mid-RT approach in MRI-guided radiotherapy (HNTS-MRG 2024)",
    "L. Cai, X. Liang, T. Zhang, J. Huang, T. Tan, Y. Yin, Less is more: efficient PET/CT segmentation and "
    "multimodal prediction of recurrence-free survival and HPV status in head and neck cancer (HECKTOR 2025)",
)


class HNTumorSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("HNTumorSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["HNTumorSeg developers"]
        self.parent.helpText = _(
            "Contours head-and-neck cancer for radiotherapy: GTVp (primary tumour) and GTVn (involved lymph nodes) "
            "on pre-RT or mid-RT T2-weighted MRI, or on PET/CT. Choose the task and the images, check or edit the "
            "lesion boxes, press Apply, then review and edit the result in Segment Editor and export it. "
            "To try it, load a phantom from Sample Data (category HNTumorSeg). "
            'See the <a href="{url}">documentation</a>.<br><br>'
            "<b>For research use only</b>, not a medical device: every contour must be reviewed and edited by a "
            "qualified clinician before any clinical use.").format(url=DOC_URL)
        self.parent.acknowledgementText = _(
            "HNTumorSeg implements the methods of these papers:{papers}It builds on nnU-Net v2, STU-Net, MONAI, "
            "highdicom and 3D Slicer.").format(papers="<ul>" + "".join(f"<li>{s}</li>" for s in SEEDS) + "</ul>")
        # at start-up, not when the panel first opens: Segment Editor and Sample Data need them before
        slicer.app.connect("startupCompleted()", loadTerminology)
        slicer.app.connect("startupCompleted()", registerSampleData)


class HNTumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module's panel: loads the .ui, keeps the parameter node, and hands each section to its panel.

    The sections are helper classes in HNTumorSegSlicer/ (``*_panel.py``), each connecting its own
    widgets; they reach each other through this widget (``self.runPanel`` ...).
    """

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updating = False  # True while the GUI is written from the node: the panels ignore their signals
        self._closeGuard = None
        self.inputsPanel = None   # task, images, prior, lesion boxes, gradient preview
        self.priorPanel = None    # the prior's structure table, Register pre-RT to mid-RT
        self.modelPanel = None    # model box, Download / Import
        self.runPanel = None      # device, quality, Apply / Cancel, progress, log
        self.refinePanel = None   # the scene's warm session: update while editing, undo
        self.reviewPanel = None   # review tables, export
        self.outcomePanel = None  # PET biomarkers, outcome (research only)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from HNTumorSegLib.scene.scene_close import SceneCloseGuard

        ui_widget = slicer.util.loadUI(self.resourcePath("UI/HNTumorSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = HNTumorSegLogic()
        # selectors and check boxes: connectGui (SlicerParameterName in the .ui); the rest by the panels
        self.inputsPanel = InputsPanel(self)
        self.priorPanel = PriorPanel(self)
        self.modelPanel = ModelPanel(self)
        self.runPanel = RunPanel(self)
        self.refinePanel = RefinePanel(self)
        self.reviewPanel = ReviewPanel(self)
        self.outcomePanel = OutcomePanel(self)
        # File > Close Scene: the guard cancels a running job at StartCloseEvent and calls us back at EndCloseEvent
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self._closeGuard = SceneCloseGuard(slicer.mrmlScene, self.logic, on_closed=self.onSceneEndClose,
                                           on_cancelled=self.onJobCancelledByClose)
        self.initializeParameterNode()
        self.inputsPanel.onSceneChanged()

    def cleanup(self):
        # timers; the children of an outcome prediction, a model install and the warm session; the run last
        for panel in (self.inputsPanel, self.priorPanel, self.modelPanel, self.refinePanel, self.outcomePanel, self.runPanel):
            panel.cleanup()
        if self._closeGuard is not None:
            self._closeGuard.remove()
        self.removeObservers()

    # ---- parameter node (as Slicer's scripted-module template) ---------------------------------
    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # the GUI is re-read from the node when the user comes back
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller=None, event=None):
        self.setParameterNode(None)  # the node is about to be reset: stop using it
        self.outcomePanel.cleanup()  # a running prediction belongs to the closing scene

    def onSceneEndClose(self):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onJobCancelledByClose(self):
        self.runPanel.stopped(_("cancelled: the scene was closed"))

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not (p.t2 or p.ct or p.pet):  # save the user a few clicks
            self.inputsPanel.assignInputs()
        if not p.model:
            self.modelPanel.selectDefaultModel()

    def setParameterNode(self, node):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            inputs_ready = self.inputsPanel.updateGUI(p)
            self.priorPanel.updateGUI(p)
            model_state = self.modelPanel.fillList(p.task, p.model)
            self.outcomePanel.updateGUI(p.task)
            # not installed: Apply offers the Download / Import (model_choice.apply_offer)
            self.runPanel.updateGUI(p, can_run=inputs_ready and model_state is not None and model_state.apply_enabled)
        finally:
            self._updating = False


# Slicer-side helpers live in the HNTumorSegSlicer package beside this file (a package, because Slicer
# would try to load every .py file of this folder as a module): the logic and its parameter node,
# start-up registrations, and the self-test (Slicer looks for <ModuleName>Test in this namespace).
from HNTumorSegSlicer.inputs_panel import InputsPanel, PriorPanel  # noqa: E402
from HNTumorSegSlicer.logic import (HNTumorSegLogic, HNTumorSegParameterNode,  # noqa: E402,F401
                                    loadTerminology, registerSampleData)
from HNTumorSegSlicer.model_panel import ModelPanel  # noqa: E402
from HNTumorSegSlicer.outcome_panel import OutcomePanel  # noqa: E402
from HNTumorSegSlicer.refine_panel import RefinePanel  # noqa: E402
from HNTumorSegSlicer.review_panel import ReviewPanel  # noqa: E402
from HNTumorSegSlicer.run_panel import RunPanel  # noqa: E402
from HNTumorSegSlicer.selftest import HNTumorSegTest  # noqa: E402,F401
