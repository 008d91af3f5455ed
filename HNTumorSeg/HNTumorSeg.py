"""HNTumorSeg: head-and-neck GTVp / GTVn contouring in 3D Slicer (the scripted module).

A thin shell over ``HNTumorSegLib`` (no Qt there; tested on the slicer-core wheel) and the
Slicer-side package ``HNTumorSegSlicer`` beside this file (logic, parameter node, self-test). The
panel's state lives in the module's parameter node through ``parameterNodeWrapper``
(``HNTumorSegSlicer.logic.HNTumorSegParameterNode``, typed: enums, bools, node references), which
mirrors ``HNTumorSegLib.scene.panel_params.PanelParameters`` field by field (a test compares them).
Selectors and check boxes are bound with ``connectGui`` (``SlicerParameterName`` in the .ui), the
task / model / device / quality boxes by hand (translated titles, an editable model box).
Inference runs in a child process (``HNTumorSegLib.runner``); a QTimer polls it every 200 ms.
Closing the scene cancels a running job and re-reads the parameter node
(``HNTumorSegLib.scene.scene_close``). ``UI_WIDGETS`` lists every .ui widget this file touches
with the class it expects; ``Testing/test_ui_static.py`` checks it against the .ui file.
"""

from __future__ import annotations

import os
import sys

import qt
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

from HNTumorSegLib.vocab import Device, Quality, Task  # noqa: E402 (after the path set-up)

DOC_URL = "https://github.com/hntumorseg/SlicerHNTumorSeg#readme"
UI_WIDGETS = {
    "taskComboBox": "QComboBox", "loadCaseButton": "QPushButton", "autoAssignButton": "QPushButton",
    "t2Selector": "qMRMLNodeComboBox", "ctSelector": "qMRMLNodeComboBox", "petSelector": "qMRMLNodeComboBox",
    "priorSelector": "qMRMLNodeComboBox", "t2Label": "QLabel", "ctLabel": "QLabel", "petLabel": "QLabel",
    "priorLabel": "QLabel", "boxListWidget": "QListWidget", "boxesFromPriorButton": "QPushButton",
    "addGTVpBoxButton": "QPushButton", "addGTVnBoxButton": "QPushButton", "deleteBoxButton": "QPushButton",
    "useBoxesCheckBox": "QCheckBox", "gradientPreviewCheckBox": "QCheckBox", "modelComboBox": "QComboBox",
    "modelBrowseButton": "QPushButton", "modelInfoLabel": "QLabel",
    "downloadModelButton": "QPushButton", "importModelButton": "QPushButton",
    "deviceComboBox": "QComboBox", "qualityComboBox": "QComboBox", "uncertaintyCheckBox": "QCheckBox",
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
    POLL_MS = 200
    PREVIEW_DEBOUNCE_MS = 500

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updating = False
        self._devices = {}  # device asked -> device found (asked of a child Python once per session)
        self._closeGuard = None
        self._previewNodeID = ""
        self.modelPanel = None  # HNTumorSegSlicer.model_panel: model list, Download / Import
        self.outcomePanel = None  # HNTumorSegSlicer.outcome_panel: PET biomarkers, outcome (research only)
        self._sceneSession = None  # the scene's warm session (HNTumorSegLib.scene.refinement), made on first Apply

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from HNTumorSegLib.scene.inputs import TASK_TITLES
        from HNTumorSegLib.scene.scene_close import SceneCloseGuard

        ui_widget = slicer.util.loadUI(self.resourcePath("UI/HNTumorSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        for task in Task:
            self.ui.taskComboBox.addItem(_(TASK_TITLES[task]), task.value)
        for device in Device:
            self.ui.deviceComboBox.addItem(device.value, device.value)
        for quality in Quality:
            self.ui.qualityComboBox.addItem(quality.value, quality.value)
        self.logic = HNTumorSegLogic()
        self.poll_timer = qt.QTimer()
        self.poll_timer.setInterval(self.POLL_MS)
        self.poll_timer.connect("timeout()", self.onPoll)
        self.preview_timer = qt.QTimer()
        self.preview_timer.setSingleShot(True)
        self.preview_timer.setInterval(self.PREVIEW_DEBOUNCE_MS)
        self.preview_timer.connect("timeout()", self.onRefreshPreview)
        # selectors and check boxes: connectGui (SlicerParameterName in the .ui); these four by hand
        self.ui.taskComboBox.connect("currentIndexChanged(int)", self.onTaskChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceOrQualityChanged)
        self.ui.qualityComboBox.connect("currentIndexChanged(int)", self.onDeviceOrQualityChanged)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelTextChanged)
        self.ui.modelBrowseButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.gradientPreviewCheckBox.connect("toggled(bool)", lambda on: self.preview_timer.start())
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.autoAssignButton.connect("clicked(bool)", self.onAutoAssign)
        self.ui.boxesFromPriorButton.connect("clicked(bool)", self.onBoxesFromPrior)
        self.ui.addGTVpBoxButton.connect("clicked(bool)", lambda: self.onAddBox(1))
        self.ui.addGTVnBoxButton.connect("clicked(bool)", lambda: self.onAddBox(2))
        self.ui.deleteBoxButton.connect("clicked(bool)", self.onDeleteBox)
        self.ui.boxListWidget.connect("itemClicked(QListWidgetItem*)", self.onJumpToBox)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.refine_timer = qt.QTimer()  # "Update while editing": debounced refinements (SceneSession.tick)
        self.refine_timer.setInterval(self.POLL_MS)
        self.refine_timer.connect("timeout()", self.onRefineTick)
        self.ui.updateWhileEditingCheckBox.connect("toggled(bool)", self.onUpdateWhileEditing)
        self.ui.undoRefinementButton.connect("clicked(bool)", self.onUndoRefinement)
        self.ui.reviewButton.connect("clicked(bool)", self.onReview)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.modelPanel = ModelPanel(self)  # the model list and its Download / Import buttons
        self.outcomePanel = OutcomePanel(self)  # connects the biomarker button and the Outcome section
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onSceneChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onSceneChanged)
        # File > Close Scene: the guard cancels a running job at StartCloseEvent and calls us back at EndCloseEvent
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self._closeGuard = SceneCloseGuard(slicer.mrmlScene, self.logic, on_closed=self.onSceneEndClose,
                                           on_cancelled=self.onJobCancelledByClose)
        self.initializeParameterNode()
        self.onSceneChanged()

    def cleanup(self):
        self.poll_timer.stop()
        self.preview_timer.stop()
        self.refine_timer.stop()
        self.outcomePanel.cleanup()  # ends a running outcome child, removes its temp images
        self.modelPanel.cleanup()  # ends a running download / import child
        if self._sceneSession is not None:
            self._sceneSession.cleanup()  # ends the session process
        self.logic.cancel()
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
        self.poll_timer.stop()
        self.ui.progressBar.setVisible(False)
        self._log(_("cancelled: the scene was closed"))

    def initializeParameterNode(self):
        from HNTumorSegLib.scene.inputs import auto_assign
        from HNTumorSegLib.scene.panel_params import assign_nodes

        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not (p.t2 or p.ct or p.pet):  # save the user a few clicks
            assign_nodes(p, auto_assign(slicer.mrmlScene, p.task))
        if not p.model:
            self._selectDefaultModel()

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
        from HNTumorSegLib.scene.inputs import TASK_INPUTS, TASK_PRIOR

        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            self.ui.taskComboBox.setCurrentIndex(max(0, self.ui.taskComboBox.findData(p.task.value)))
            self.ui.deviceComboBox.setCurrentIndex(max(0, self.ui.deviceComboBox.findData(p.device.value)))
            self.ui.qualityComboBox.setCurrentIndex(max(0, self.ui.qualityComboBox.findData(p.quality.value)))
            model_state = self.modelPanel.fillList(p.task, p.model)
            shown = set(TASK_INPUTS[p.task]) | ({"prior"} if TASK_PRIOR[p.task] else set())
            for role, widgets in (("T2", (self.ui.t2Label, self.ui.t2Selector)),
                                  ("CT", (self.ui.ctLabel, self.ui.ctSelector)),
                                  ("PET", (self.ui.petLabel, self.ui.petSelector)),
                                  ("prior", (self.ui.priorLabel, self.ui.priorSelector))):
                for w in widgets:
                    w.setVisible(role in shown)
            self.ui.gradientPreviewCheckBox.setVisible(p.task == Task.MIDRT)
            self.outcomePanel.updateGUI(p.task)
            self.ui.boxesFromPriorButton.setEnabled(p.prior is not None)
            running = self.logic.running
            self.ui.applyButton.text = _("Cancel") if running else _("Apply")
            nodes = {"T2": p.t2, "CT": p.ct, "PET": p.pet, "prior": p.prior}
            ready = all(nodes[r] is not None for r in shown) and model_state.can_run  # not installed: Download first
            self.ui.applyButton.setEnabled(running or ready)
        finally:
            self._updating = False

    # ---- task, model, device, quality ---------------------------------------------------------
    def onTaskChanged(self, index=None):
        from HNTumorSegLib.scene.inputs import auto_assign
        from HNTumorSegLib.scene.panel_params import assign_nodes

        p = self._parameterNode
        if self._updating or p is None:
            return
        with slicer.util.NodeModify(p):
            p.task = Task(self.ui.taskComboBox.currentData)
            p.model = ""
            self._selectDefaultModel()
            assign_nodes(p, auto_assign(slicer.mrmlScene, p.task))  # the new task's inputs, by name

    def onDeviceOrQualityChanged(self, index=None):
        if self._updating or self._parameterNode is None:
            return
        with slicer.util.NodeModify(self._parameterNode):
            self._parameterNode.device = Device(self.ui.deviceComboBox.currentData)
            self._parameterNode.quality = Quality(self.ui.qualityComboBox.currentData)

    def _selectDefaultModel(self):
        from HNTumorSegLib.scene.model_choice import models_for_task

        choices = models_for_task(self._parameterNode.task)
        if choices:
            self._parameterNode.model = choices[0].id

    def onModelTextChanged(self, text):
        """Typed, pasted, browsed or picked: the text is the model (id, list label or folder)."""
        if self._updating or self._parameterNode is None:
            return
        state = self.modelPanel.showInfo(text)  # licence, source; not installed: what to click
        self._updating = True  # keep the cursor where the user types
        try:
            self._parameterNode.model = state.model
        finally:
            self._updating = False
        self.ui.applyButton.setEnabled(self.logic.running or state.can_run)

    def onBrowseModel(self):
        folder = qt.QFileDialog.getExistingDirectory(None, _("Model folder (model.json, or an nnU-Net results folder)"))
        if folder:
            self.ui.modelComboBox.setEditText(folder)  # -> onModelTextChanged

    # ---- inputs and boxes ----------------------------------------------------------------------
    def onLoadCase(self):
        from HNTumorSegLib.scene.inputs import load_case_folder

        folder = qt.QFileDialog.getExistingDirectory(None, _("Case folder (HNTS-MRG or HECKTOR)"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                load_case_folder(slicer.mrmlScene, folder)
                self.onAutoAssign()

    def onAutoAssign(self):
        from HNTumorSegLib.scene.inputs import auto_assign
        from HNTumorSegLib.scene.panel_params import assign_nodes

        p = self._parameterNode
        with slicer.util.NodeModify(p):
            assign_nodes(p, auto_assign(slicer.mrmlScene, p.task))

    def onBoxesFromPrior(self):
        with slicer.util.tryWithErrorDisplay(_("Could not make boxes from the prior."), waitCursor=True):
            p = self._parameterNode
            self.logic.boxes_from_prior(p.prior, p.t2 or p.ct, model=p.model)

    def onAddBox(self, label):
        from HNTumorSegLib.scene.roi_boxes import add_box_at

        red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic().GetSliceNode()
        centre = [red.GetSliceToRAS().GetElement(i, 3) for i in range(3)]
        add_box_at(slicer.mrmlScene, label, centre)

    def onDeleteBox(self):
        item = self.ui.boxListWidget.currentItem()
        node = slicer.mrmlScene.GetNodeByID(item.data(qt.Qt.UserRole)) if item else None
        if node:
            slicer.mrmlScene.RemoveNode(node)

    def onJumpToBox(self, item):
        node = slicer.mrmlScene.GetNodeByID(item.data(qt.Qt.UserRole))
        if node:
            slicer.modules.markups.logic().JumpSlicesToLocation(*node.GetCenterWorld(), True)

    def onSceneChanged(self, caller=None, event=None):
        from HNTumorSegLib.scene.roi_boxes import lesion_roi_nodes

        self.ui.boxListWidget.clear()
        for node in lesion_roi_nodes(slicer.mrmlScene):
            item = qt.QListWidgetItem(node.GetName())
            item.setData(qt.Qt.UserRole, node.GetID())
            self.ui.boxListWidget.addItem(item)
            if not self.hasObserver(node, vtk.vtkCommand.ModifiedEvent, self.onBoxModified):
                self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.onBoxModified)

    def onBoxModified(self, caller=None, event=None):
        if self.ui.gradientPreviewCheckBox.checked:
            self.preview_timer.start()  # restarts: recompute 500 ms after the last change

    def onRefreshPreview(self):
        from HNTumorSegLib.scene.roi_boxes import lesion_roi_nodes, update_gradient_preview

        t2 = self._parameterNode.t2 if self._parameterNode else None
        if not (self.ui.gradientPreviewCheckBox.checked and t2):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not compute the gradient-map preview.")):
            previous = slicer.mrmlScene.GetNodeByID(self._previewNodeID) if self._previewNodeID else None
            node = update_gradient_preview(slicer.mrmlScene, t2, lesion_roi_nodes(slicer.mrmlScene),
                                           preview_node=previous)
            self._previewNodeID = node.GetID()
            slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.5)

    # ---- run -----------------------------------------------------------------------------------
    def onApplyOrCancel(self):
        if self.logic.running:
            self.logic.cancel()
            self.poll_timer.stop()
            self._log(_("cancelled"))
            self.ui.progressBar.setVisible(False)
            self.updateGUIFromParameterNode()
            return
        if not self.logic.ensureDependencies(log=self._log):
            return
        from HNTumorSegLib.scene.model_choice import choose_model
        from HNTumorSegLib.scene.panel_params import from_object

        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            params = from_object(self._parameterNode)
            run_params = params.to_run_parameters()
            run_params.check(slicer.mrmlScene)  # inputs and prior present, else one line saying which
            choice = choose_model(params.model, params.task, require_installed=True)  # else: what to click
            if not self._confirmDeviceAndTime(params, choice.id):
                return
            self.sceneSession().apply(run_params)  # through the scene's warm session (started on first Apply)
            self.ui.logTextEdit.clear()
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self.poll_timer.start()
        self.updateGUIFromParameterNode()

    def _confirmDeviceAndTime(self, params, model) -> bool:
        """Show the device this run will use; before a long CPU run, say how long and ask."""
        from HNTumorSegLib.scene.run_estimate import estimate_run, probe_device

        asked = params.device.value
        if asked not in self._devices:
            self._devices[asked] = probe_device(asked)
        reference = params.ct if params.task == Task.PETCT else params.t2
        dims = reference.GetImageData().GetDimensions()
        estimate = estimate_run(model, tuple(reversed(dims)), reference.GetSpacing(), resolved_device=self._devices[asked],
                                all_folds=params.quality == Quality.FULL, tta=params.quality == Quality.FULL)
        self.ui.deviceUsedLabel.text = _("This run uses: {device}").format(device=estimate.device)
        if estimate.long_cpu_run:
            return slicer.util.confirmOkCancelDisplay(estimate.warning_text(), _("HNTumorSeg: long CPU run"))
        return True

    def onPoll(self):
        state = self.logic.poll()
        self.ui.progressBar.setValue(state.percent)
        self.ui.stageLabel.text = f"{state.stage}: {state.message}" if state.stage else ""
        for line in state.log:
            self._log(line)
        if state.running:
            return
        self.poll_timer.stop()
        self.ui.progressBar.setVisible(False)
        self.ui.deviceUsedLabel.text = self.logic.deviceUsedText()
        if state.state == "succeeded":
            with slicer.util.tryWithErrorDisplay(_("Could not import the result."), waitCursor=True):
                seg = self.logic.import_result()
                self.sceneSession().track(seg)  # boxes moved from now on refine this result
                self.ui.segmentationSelector.setCurrentNode(seg)
                self.ui.stageLabel.text = _("Done: review the contours, edit them in Segment Editor, then export.")
        elif state.error and state.state != "cancelled":
            slicer.util.errorDisplay(state.error)
        if state.state == "succeeded" and self._parameterNode.task == Task.PETCT:
            self.outcomePanel.onPetBiomarkers()  # a PET/CT result comes with its PET biomarker table
        self.updateGUIFromParameterNode()

    def _log(self, line):
        self.ui.logTextEdit.appendPlainText(line)

    # ---- warm session: update while editing, undo --------------------------------------------------
    def sceneSession(self):
        if self._sceneSession is None:
            from HNTumorSegLib.scene.refinement import SceneSession

            self._sceneSession = SceneSession(slicer.mrmlScene, self.logic.segmentation)
        return self._sceneSession

    def onUpdateWhileEditing(self, on):
        self.sceneSession().update_while_editing = bool(on)
        if on:
            self.refine_timer.start()
        else:
            self.refine_timer.stop()

    def onRefineTick(self):
        state = self.sceneSession().tick()
        if state.message:
            self.ui.stageLabel.text = state.message
        if state.refined:
            self._log(_("refined {box}").format(box=state.refined))
        if state.error:
            self._log(_("refinement failed: {error}").format(error=state.error))
        self.ui.undoRefinementButton.setEnabled(self._sceneSession.undo_state is not None)

    def onUndoRefinement(self):
        with slicer.util.tryWithErrorDisplay(_("Could not undo the refinement."), waitCursor=True):
            if self.sceneSession().undo():
                self._log(_("last refinement undone"))
        self.ui.undoRefinementButton.setEnabled(False)

    # ---- review and export ---------------------------------------------------------------------
    def _result_and_reference(self):
        seg = self.ui.segmentationSelector.currentNode()
        ref = seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) if seg else None
        if seg is None or ref is None:
            raise ValueError(_("Select a segmentation made on a volume (Review section)."))
        return seg, ref

    def onReview(self):
        with slicer.util.tryWithErrorDisplay(_("Could not review the segmentation."), waitCursor=True):
            seg, ref = self._result_and_reference()
            tables = self.logic.review(seg, ref, reference=self.ui.referenceSelector.currentNode())
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(
                (tables.get("comparison") or tables["lesions"]).GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def onExport(self):
        formats = [f for f, box in (("nifti", self.ui.exportNiftiCheckBox), ("dicom_seg", self.ui.exportDicomSegCheckBox),
                                    ("rtstruct", self.ui.exportRtstructCheckBox), ("csv", self.ui.exportCsvCheckBox))
                   if box.checked]
        if {"dicom_seg", "rtstruct"} & set(formats) and not self.logic.ensureDependencies(log=self._log):
            return  # highdicom / scikit-image come with the first-run install
        with slicer.util.tryWithErrorDisplay(_("Could not export."), waitCursor=True):
            seg, ref = self._result_and_reference()
            files = self.logic.export(seg, ref, self.ui.exportDirectoryPathLineEdit.currentPath, formats,
                                      source_files=dicom_files_of(ref))
            add_to_dicom_database([files[k] for k in ("dicom_seg", "rtstruct") if k in files])
            slicer.util.infoDisplay(_("Written:") + "\n" + "\n".join(str(f) for f in files.values()))
        return files


# Slicer-side helpers live in the HNTumorSegSlicer package beside this file (a package, because Slicer
# would try to load every .py file of this folder as a module): the logic and its parameter node,
# start-up registrations, and the self-test (Slicer looks for <ModuleName>Test in this namespace).
from HNTumorSegSlicer.logic import (HNTumorSegLogic, HNTumorSegParameterNode,  # noqa: E402,F401
                                    add_to_dicom_database, dicom_files_of, loadTerminology, registerSampleData)
from HNTumorSegSlicer.model_panel import ModelPanel  # noqa: E402
from HNTumorSegSlicer.outcome_panel import OutcomePanel  # noqa: E402
from HNTumorSegSlicer.selftest import HNTumorSegTest  # noqa: E402,F401
