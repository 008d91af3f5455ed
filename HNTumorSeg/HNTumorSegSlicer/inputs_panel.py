"""The panel's Inputs section: task, images, prior, and the lesion boxes (ROI markups).

A helper of ``HNTumorSegWidget`` (see :mod:`.panel`). The task box sets which image selectors
show (``HNTumorSegLib.scene.inputs.TASK_INPUTS``); changing the task re-assigns the scene's
volumes to the new task's inputs by their names (``auto_assign``), and so does "Load case...".
The box list mirrors the scene's lesion ROI nodes (``HNTumorSegLib.scene.roi_boxes``) and is
rebuilt when a node is added or removed. On mid-RT the gradient-map preview (the channel the
seed 003 network sees) is recomputed 500 ms after the last box edit, not on every mouse move.
"""

from __future__ import annotations

import qt
import slicer
import vtk

from HNTumorSegLib.vocab import Task

from .panel import Panel, _


class InputsPanel(Panel):
    PREVIEW_DEBOUNCE_MS = 500

    def __init__(self, widget):
        from HNTumorSegLib.scene.inputs import TASK_TITLES

        super().__init__(widget)
        self._previewNodeID = ""
        for task in Task:
            self.ui.taskComboBox.addItem(_(TASK_TITLES[task]), task.value)
        self.preview_timer = self.makeTimer(self.PREVIEW_DEBOUNCE_MS, self.onRefreshPreview, single_shot=True)
        self.ui.taskComboBox.connect("currentIndexChanged(int)", self.onTaskChanged)
        self.ui.gradientPreviewCheckBox.connect("toggled(bool)", lambda on: self.preview_timer.start())
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.autoAssignButton.connect("clicked(bool)", self.onAutoAssign)
        self.ui.boxesFromPriorButton.connect("clicked(bool)", self.onBoxesFromPrior)
        self.ui.addGTVpBoxButton.connect("clicked(bool)", lambda: self.onAddBox(1))
        self.ui.addGTVnBoxButton.connect("clicked(bool)", lambda: self.onAddBox(2))
        self.ui.deleteBoxButton.connect("clicked(bool)", self.onDeleteBox)
        self.ui.boxListWidget.connect("itemClicked(QListWidgetItem*)", self.onJumpToBox)
        widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onSceneChanged)
        widget.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onSceneChanged)

    def cleanup(self):
        self.preview_timer.stop()

    def updateGUI(self, p) -> bool:
        """Show the task's selectors; True when every input the task needs is chosen."""
        from HNTumorSegLib.scene.inputs import TASK_INPUTS, TASK_PRIOR

        self.ui.taskComboBox.setCurrentIndex(max(0, self.ui.taskComboBox.findData(p.task.value)))
        shown = set(TASK_INPUTS[p.task]) | ({"prior"} if TASK_PRIOR[p.task] else set())
        for role, widgets in (("T2", (self.ui.t2Label, self.ui.t2Selector)),
                              ("CT", (self.ui.ctLabel, self.ui.ctSelector)),
                              ("PET", (self.ui.petLabel, self.ui.petSelector)),
                              ("prior", (self.ui.priorLabel, self.ui.priorSelector))):
            for w in widgets:
                w.setVisible(role in shown)
        self.ui.gradientPreviewCheckBox.setVisible(p.task == Task.MIDRT)
        self.ui.boxesFromPriorButton.setEnabled(p.prior is not None)
        nodes = {"T2": p.t2, "CT": p.ct, "PET": p.pet, "prior": p.prior}
        return all(nodes[r] is not None for r in shown)

    def assignInputs(self):
        """The scene's volumes to the task's inputs, by their names (saves the user a few clicks)."""
        from HNTumorSegLib.scene.inputs import auto_assign
        from HNTumorSegLib.scene.panel_params import assign_nodes

        assign_nodes(self.params, auto_assign(slicer.mrmlScene, self.params.task))

    # ---- task ----------------------------------------------------------------------------------
    def onTaskChanged(self, index=None):
        p = self.params
        if self.widget._updating or p is None:
            return
        with slicer.util.NodeModify(p):
            p.task = Task(self.ui.taskComboBox.currentData)
            p.model = ""
            self.widget.modelPanel.selectDefaultModel()
            self.assignInputs()  # the new task's inputs, by name

    def onLoadCase(self):
        from HNTumorSegLib.scene.inputs import load_case_folder

        folder = qt.QFileDialog.getExistingDirectory(None, _("Case folder (HNTS-MRG or HECKTOR)"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                load_case_folder(slicer.mrmlScene, folder)
                self.onAutoAssign()

    def onAutoAssign(self):
        with slicer.util.NodeModify(self.params):
            self.assignInputs()

    # ---- boxes ---------------------------------------------------------------------------------
    def onBoxesFromPrior(self):
        with slicer.util.tryWithErrorDisplay(_("Could not make boxes from the prior."), waitCursor=True):
            p = self.params
            self.widget.logic.boxes_from_prior(p.prior, p.t2 or p.ct, model=p.model)

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
        """Rebuild the box list from the scene's lesion ROIs; watch each for edits (preview)."""
        from HNTumorSegLib.scene.roi_boxes import lesion_roi_nodes

        self.ui.boxListWidget.clear()
        for node in lesion_roi_nodes(slicer.mrmlScene):
            item = qt.QListWidgetItem(node.GetName())
            item.setData(qt.Qt.UserRole, node.GetID())
            self.ui.boxListWidget.addItem(item)
            if not self.widget.hasObserver(node, vtk.vtkCommand.ModifiedEvent, self.onBoxModified):
                self.widget.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.onBoxModified)

    def onBoxModified(self, caller=None, event=None):
        if self.ui.gradientPreviewCheckBox.checked:
            self.preview_timer.start()  # restarts: recompute 500 ms after the last change

    def onRefreshPreview(self):
        from HNTumorSegLib.scene.roi_boxes import lesion_roi_nodes, update_gradient_preview

        t2 = self.params.t2 if self.params else None
        if not (self.ui.gradientPreviewCheckBox.checked and t2):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not compute the gradient-map preview.")):
            previous = slicer.mrmlScene.GetNodeByID(self._previewNodeID) if self._previewNodeID else None
            node = update_gradient_preview(slicer.mrmlScene, t2, lesion_roi_nodes(slicer.mrmlScene),
                                           preview_node=previous)
            self._previewNodeID = node.GetID()
            slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.5)
