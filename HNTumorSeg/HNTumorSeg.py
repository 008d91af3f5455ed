"""HNTumorSeg: head-and-neck GTVp / GTVn contouring in 3D Slicer (the scripted module).

A thin shell: the widget binds the .ui controls to the module's parameter node and calls
``HNTumorSegLib.scene`` (all scene logic, no Qt, tested on the slicer-core wheel). Inference
runs in a child process (``HNTumorSegLib.runner``); a QTimer polls it every 200 ms, so the GUI
thread never waits. ``UI_WIDGETS`` lists every .ui widget this file touches with the class it
expects; ``Testing/test_ui_static.py`` checks it against the .ui file.
"""

from __future__ import annotations

import os
import sys

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

# HNTumorSegLib is installed beside this file (HNTumorSeg/CMakeLists.txt); in a source tree it is one up.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (_HERE, os.path.dirname(_HERE)):
    if os.path.isdir(os.path.join(_p, "HNTumorSegLib")) and _p not in sys.path:
        sys.path.insert(0, _p)

UI_WIDGETS = {
    "taskComboBox": "QComboBox", "loadCaseButton": "QPushButton", "autoAssignButton": "QPushButton",
    "t2Selector": "qMRMLNodeComboBox", "ctSelector": "qMRMLNodeComboBox", "petSelector": "qMRMLNodeComboBox",
    "priorSelector": "qMRMLNodeComboBox", "t2Label": "QLabel", "ctLabel": "QLabel", "petLabel": "QLabel",
    "priorLabel": "QLabel", "boxListWidget": "QListWidget", "boxesFromPriorButton": "QPushButton",
    "addGTVpBoxButton": "QPushButton", "addGTVnBoxButton": "QPushButton", "deleteBoxButton": "QPushButton",
    "useBoxesCheckBox": "QCheckBox", "gradientPreviewCheckBox": "QCheckBox", "modelComboBox": "QComboBox",
    "deviceComboBox": "QComboBox", "qualityComboBox": "QComboBox", "uncertaintyCheckBox": "QCheckBox",
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar", "stageLabel": "QLabel", "logTextEdit": "QPlainTextEdit",
    "segmentationSelector": "qMRMLNodeComboBox", "referenceSelector": "qMRMLNodeComboBox",
    "reviewButton": "QPushButton", "exportDirectoryPathLineEdit": "ctkPathLineEdit",
    "exportNiftiCheckBox": "QCheckBox", "exportDicomSegCheckBox": "QCheckBox", "exportRtstructCheckBox": "QCheckBox",
    "exportCsvCheckBox": "QCheckBox", "exportButton": "QPushButton",
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
        self.parent.title = "HNTumorSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["HNTumorSeg contributors"]
        self.parent.helpText = (
            "Contours head-and-neck cancer for radiotherapy: GTVp (primary tumour) and GTVn (involved lymph nodes) "
            "on pre-RT or mid-RT T2-weighted MRI, or on PET/CT. Choose the task and the images, check or edit the "
            "lesion boxes, press Apply, then review and edit the result in Segment Editor and export it. "
            "Research software: every contour must be reviewed by a qualified clinician.")
        self.parent.acknowledgementText = (
            "HNTumorSeg implements the methods of these papers:<ul>" + "".join(f"<li>{s}</li>" for s in SEEDS)
            + "</ul>It builds on nnU-Net v2, STU-Net, MONAI, highdicom and 3D Slicer.")


class HNTumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    POLL_MS = 200
    PREVIEW_DEBOUNCE_MS = 500

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._param = None
        self._updating = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from HNTumorSegLib.scene.inputs import TASK_TITLES
        from HNTumorSegLib.vocab import Device, Quality, Task

        ui_widget = slicer.util.loadUI(self.resourcePath("UI/HNTumorSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        for task in Task:
            self.ui.taskComboBox.addItem(TASK_TITLES[task], task.value)
        self.ui.deviceComboBox.addItems(list(Device.values()))
        self.ui.qualityComboBox.addItems(list(Quality.values()))
        self.ui.modelComboBox.addItems(_model_ids())
        self.logic = HNTumorSegLogic()
        self._param = self.logic.getParameterNode()
        # our GTVp / GTVn codes in the terminology selector (Segment Editor, segment properties)
        terminologies = getattr(slicer.modules, "terminologies", None)
        if terminologies is not None:
            terminologies.logic().LoadTerminologyFromFile(self.resourcePath("HNTumorSeg.term.json"))
        self.poll_timer = qt.QTimer()
        self.poll_timer.setInterval(self.POLL_MS)
        self.poll_timer.connect("timeout()", self.onPoll)
        self.preview_timer = qt.QTimer()
        self.preview_timer.setSingleShot(True)
        self.preview_timer.setInterval(self.PREVIEW_DEBOUNCE_MS)
        self.preview_timer.connect("timeout()", self.onRefreshPreview)
        # every control writes the parameter node; updateGUI reads it back
        for combo in (self.ui.taskComboBox, self.ui.deviceComboBox, self.ui.qualityComboBox, self.ui.modelComboBox):
            combo.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        for sel in (self.ui.t2Selector, self.ui.ctSelector, self.ui.petSelector, self.ui.priorSelector):
            sel.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.useBoxesCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.uncertaintyCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        self.ui.gradientPreviewCheckBox.connect("toggled(bool)", lambda on: self.preview_timer.start())
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.autoAssignButton.connect("clicked(bool)", self.onAutoAssign)
        self.ui.boxesFromPriorButton.connect("clicked(bool)", self.onBoxesFromPrior)
        self.ui.addGTVpBoxButton.connect("clicked(bool)", lambda: self.onAddBox(1))
        self.ui.addGTVnBoxButton.connect("clicked(bool)", lambda: self.onAddBox(2))
        self.ui.deleteBoxButton.connect("clicked(bool)", self.onDeleteBox)
        self.ui.boxListWidget.connect("itemClicked(QListWidgetItem*)", self.onJumpToBox)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.ui.reviewButton.connect("clicked(bool)", self.onReview)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onSceneChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onSceneChanged)
        self.addObserver(self._param, vtk_modified_event(), self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()
        self.updateParameterNodeFromGUI()  # a fresh parameter node gets the controls' defaults
        self.onSceneChanged()

    def cleanup(self):
        self.poll_timer.stop()
        self.preview_timer.stop()
        if self.logic.running:
            self.logic.cancel()
        self.removeObservers()

    # ---- parameter node <-> GUI --------------------------------------------------------------
    def updateParameterNodeFromGUI(self, *_):
        if self._updating:
            return
        p = self._param
        wasModifying = p.StartModify()
        p.SetParameter("task", self.ui.taskComboBox.currentData or "prert")
        p.SetParameter("device", self.ui.deviceComboBox.currentText)
        p.SetParameter("quality", self.ui.qualityComboBox.currentText)
        p.SetParameter("model", self.ui.modelComboBox.currentText)
        p.SetParameter("useBoxes", "true" if self.ui.useBoxesCheckBox.checked else "false")
        p.SetParameter("uncertainty", "true" if self.ui.uncertaintyCheckBox.checked else "false")
        for role, sel in (("T2", self.ui.t2Selector), ("CT", self.ui.ctSelector), ("PET", self.ui.petSelector),
                          ("prior", self.ui.priorSelector)):
            p.SetNodeReferenceID(role, sel.currentNodeID)
        p.EndModify(wasModifying)

    def updateGUIFromParameterNode(self, *_):
        from HNTumorSegLib.scene.inputs import TASK_INPUTS, TASK_PRIOR

        self._updating = True
        p = self._param
        task = p.GetParameter("task") or "prert"
        self.ui.taskComboBox.setCurrentIndex(max(0, self.ui.taskComboBox.findData(task)))
        for combo, key in ((self.ui.deviceComboBox, "device"), (self.ui.qualityComboBox, "quality")):
            if p.GetParameter(key):
                combo.setCurrentIndex(max(0, combo.findText(p.GetParameter(key))))
        if p.GetParameter("model"):
            self.ui.modelComboBox.setEditText(p.GetParameter("model"))
        self.ui.useBoxesCheckBox.checked = p.GetParameter("useBoxes") != "false"
        self.ui.uncertaintyCheckBox.checked = p.GetParameter("uncertainty") == "true"
        for role, sel in (("T2", self.ui.t2Selector), ("CT", self.ui.ctSelector), ("PET", self.ui.petSelector),
                          ("prior", self.ui.priorSelector)):
            sel.setCurrentNode(p.GetNodeReference(role))
        shown = set(TASK_INPUTS[task]) | ({"prior"} if TASK_PRIOR[task] else set())
        for role, widgets in (("T2", (self.ui.t2Label, self.ui.t2Selector)), ("CT", (self.ui.ctLabel, self.ui.ctSelector)),
                              ("PET", (self.ui.petLabel, self.ui.petSelector)),
                              ("prior", (self.ui.priorLabel, self.ui.priorSelector))):
            for w in widgets:
                w.setVisible(role in shown)
        self.ui.gradientPreviewCheckBox.setVisible(task == "midrt")
        self.ui.boxesFromPriorButton.setEnabled(self.ui.priorSelector.currentNode() is not None)
        running = self.logic.running
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.setEnabled(running or all(p.GetNodeReference(r) for r in shown))
        self._updating = False

    def parameters(self):
        from HNTumorSegLib.scene.logic import Parameters

        p = self._param
        task = p.GetParameter("task") or "prert"
        return Parameters(task=task, inputs={r: p.GetNodeReferenceID(r) for r in ("T2", "CT", "PET")
                                             if p.GetNodeReferenceID(r)},
                          prior=p.GetNodeReferenceID("prior") or "", model=p.GetParameter("model"),
                          device=p.GetParameter("device") or "auto", quality=p.GetParameter("quality") or "fast",
                          use_boxes=p.GetParameter("useBoxes") != "false",
                          save_uncertainty=p.GetParameter("uncertainty") == "true")

    # ---- inputs and boxes ----------------------------------------------------------------------
    def onLoadCase(self):
        from HNTumorSegLib.scene.inputs import load_case_folder

        folder = qt.QFileDialog.getExistingDirectory(None, "Case folder (HNTS-MRG or HECKTOR)")
        if folder:
            with slicer.util.tryWithErrorDisplay("Could not load the case.", waitCursor=True):
                load_case_folder(slicer.mrmlScene, folder)
                self.onAutoAssign()

    def onAutoAssign(self):
        from HNTumorSegLib.scene.inputs import auto_assign

        for role, node in auto_assign(slicer.mrmlScene, self._param.GetParameter("task") or "prert").items():
            self._param.SetNodeReferenceID(role, node.GetID())

    def onBoxesFromPrior(self):
        with slicer.util.tryWithErrorDisplay("Could not make boxes from the prior.", waitCursor=True):
            params = self.parameters()
            reference = slicer.mrmlScene.GetNodeByID(params.inputs.get("T2") or params.inputs.get("CT"))
            self.logic.boxes_from_prior(self.ui.priorSelector.currentNode(), reference, model=params.model)

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
            if not self.hasObserver(node, vtk_modified_event(), self.onBoxModified):
                self.addObserver(node, vtk_modified_event(), self.onBoxModified)

    def onBoxModified(self, caller=None, event=None):
        if self.ui.gradientPreviewCheckBox.checked:
            self.preview_timer.start()  # restarts: recompute 500 ms after the last change

    def onRefreshPreview(self):
        from HNTumorSegLib.scene.roi_boxes import lesion_roi_nodes, update_gradient_preview

        t2 = self._param.GetNodeReference("T2")
        if not (self.ui.gradientPreviewCheckBox.checked and t2):
            return
        with slicer.util.tryWithErrorDisplay("Could not compute the gradient-map preview."):
            node = update_gradient_preview(slicer.mrmlScene, t2, lesion_roi_nodes(slicer.mrmlScene),
                                           preview_node=self._param.GetNodeReference("preview"))
            self._param.SetNodeReferenceID("preview", node.GetID())
            slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.5)

    # ---- run -----------------------------------------------------------------------------------
    def onApplyOrCancel(self):
        if self.logic.running:
            self.logic.cancel()
            self.poll_timer.stop()
            self._log("cancelled")
            self.ui.progressBar.setVisible(False)
            self.updateGUIFromParameterNode()
            return
        if not self.logic.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay("Could not start the segmentation.", waitCursor=True):
            self.logic.start(self.parameters())
            self.ui.logTextEdit.clear()
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self.poll_timer.start()
        self.updateGUIFromParameterNode()

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
        if state.state == "succeeded":
            with slicer.util.tryWithErrorDisplay("Could not import the result.", waitCursor=True):
                seg = self.logic.import_result()
                self.ui.segmentationSelector.setCurrentNode(seg)
                self.ui.stageLabel.text = "Done: review the contours, edit them in Segment Editor, then export."
        elif state.error and state.state != "cancelled":
            slicer.util.errorDisplay(state.error)
        self.updateGUIFromParameterNode()

    def _log(self, line):
        self.ui.logTextEdit.appendPlainText(line)

    # ---- review and export ---------------------------------------------------------------------
    def _result_and_reference(self):
        seg = self.ui.segmentationSelector.currentNode()
        ref = seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) if seg else None
        if seg is None or ref is None:
            raise ValueError("Select a segmentation made on a volume (Review section).")
        return seg, ref

    def onReview(self):
        with slicer.util.tryWithErrorDisplay("Could not review the segmentation.", waitCursor=True):
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
        if {"dicom_seg", "rtstruct"} & set(formats) and not self.logic.ensureDependencies():
            return  # highdicom / scikit-image come with the first-run install
        with slicer.util.tryWithErrorDisplay("Could not export.", waitCursor=True):
            seg, ref = self._result_and_reference()
            files = self.logic.export(seg, ref, self.ui.exportDirectoryPathLineEdit.currentPath, formats,
                                      source_files=_dicom_files_of(ref))
            _add_to_dicom_database([files[k] for k in ("dicom_seg", "rtstruct") if k in files])
            slicer.util.infoDisplay("Written:\n" + "\n".join(str(f) for f in files.values()))


def vtk_modified_event():
    import vtk

    return vtk.vtkCommand.ModifiedEvent


def _model_ids():
    try:
        from HNTumorSegLib.models.catalogue import read_catalogue

        return [entry.id for entry in read_catalogue()]
    except Exception:  # catalogue missing or unreadable: the combo stays editable
        return []


def _add_to_dicom_database(paths):
    """Exported DICOM objects into Slicer's DICOM database (when one is open): the DICOM browser and
    Slicer's own Send then see them beside their source series."""
    database = getattr(slicer, "dicomDatabase", None)
    if not paths or database is None or not database.isOpen:
        return
    for path in paths:
        database.insert(str(path))


def _dicom_files_of(volume):
    """Files of a volume loaded through Slicer's DICOM module (None for others: the logic then says why)."""
    uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids or not getattr(slicer, "dicomDatabase", None):
        return None
    return [slicer.dicomDatabase.fileForInstance(uid) for uid in uids]


class HNTumorSegLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: the dependency set-up, and the widget's one door to the scene logic.

    The work is :class:`HNTumorSegLib.scene.logic.SegmentationSceneLogic` (no Qt, tested on
    slicer-core); the methods below hand each widget action to it, so the widget never reaches
    through to it. It is made on first use, not at import: Slicer imports this file at start-up,
    before the first-run install (:meth:`ensureDependencies`) may have run.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._segmentation = None

    @property
    def segmentation(self):
        """The :class:`~HNTumorSegLib.scene.logic.SegmentationSceneLogic` of the current scene."""
        if self._segmentation is None:
            from HNTumorSegLib.scene.logic import SegmentationSceneLogic

            self._segmentation = SegmentationSceneLogic(slicer.mrmlScene)
        return self._segmentation

    @property
    def running(self):
        return self._segmentation is not None and self._segmentation.running

    def start(self, params):
        return self.segmentation.start(params)

    def poll(self):
        return self.segmentation.poll()

    def cancel(self):
        if self._segmentation is not None:
            self._segmentation.cancel()

    def import_result(self):
        return self.segmentation.import_result()

    def boxes_from_prior(self, prior_node, reference_node, model=""):
        return self.segmentation.boxes_from_prior(prior_node, reference_node, model=model)

    def review(self, seg_node, reference_node, reference=None):
        return self.segmentation.review(seg_node, reference_node, reference=reference)

    def export(self, seg_node, reference_node, out_dir, formats, source_files=None):
        return self.segmentation.export(seg_node, reference_node, out_dir, formats, source_files=source_files)

    def ensureDependencies(self):
        from HNTumorSegLib.install import ensure_dependencies

        def torch_installer():
            import PyTorchUtils  # the PyTorch extension: installs the torch build matching the GPU driver

            return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)

        has_pytorch_ext = hasattr(slicer.modules, "pytorchutils")
        try:
            ensure_dependencies(confirm=slicer.util.confirmOkCancelDisplay, pip_install=slicer.util.pip_install,
                                torch_installer=torch_installer if has_pytorch_ext else None)
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not install the dependencies: {exc}")
            return False
        return True


class HNTumorSegTest(ScriptedLoadableModuleTest):
    """Runs the Testing/ suite inside Slicer (pytest, when installed), then a smoke test of the widget logic."""

    def runTest(self):
        self.setUp()
        self.test_suite()

    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_suite(self):
        # source tree: <repo>/Testing; installed extension: beside the module (HNTumorSeg/CMakeLists.txt)
        testing = next((d for d in (os.path.join(os.path.dirname(_HERE), "Testing"),
                                    os.path.join(_HERE, "HNTumorSegTesting")) if os.path.isdir(d)), "")
        try:
            import pytest
        except ImportError:
            self.delayDisplay("pytest is not installed: slicer.util.pip_install('pytest') to run the suite")
            return
        if not testing:
            self.delayDisplay("the HNTumorSeg test files are not installed beside the module")
            return
        import glob

        files = sorted(glob.glob(os.path.join(testing, "test_scene*.py")) + glob.glob(os.path.join(testing, "test_export*.py")))
        code = pytest.main(["-q", "-m", "not slow", "-p", "no:cacheprovider", *files])
        self.assertEqual(int(code), 0, "the HNTumorSeg test suite failed (see the Python console)")
        self.delayDisplay("HNTumorSeg tests passed")
