"""The panel's Inputs section: task, images, prior, and the lesion boxes (ROI markups); the prior's table.

A helper of ``HNTumorSegWidget`` (see :mod:`.panel`). The task box sets which image selectors
show (``HNTumorSegLib.scene.inputs.TASK_INPUTS``); changing the task re-assigns the scene's
volumes to the new task's inputs by their names (``auto_assign``), and so does "Load case...".
The box list mirrors the scene's lesion ROI nodes (``HNTumorSegLib.scene.roi_boxes``) and is
rebuilt when a node is added or removed. On mid-RT the gradient-map preview (the channel the
seed 003 network sees) is recomputed 500 ms after the last box edit, not on every mouse move.
:class:`PriorPanel` (here, beside the prior selector it serves) holds the prior's structure
table and the "Register pre-RT to mid-RT" step.
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
            self.widget.logic.boxes_from_prior(p.prior, p.t2 or p.ct, model=p.model, structures=p.prior_structures)

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


class PriorPanel(Panel):
    """The mid-RT prior's structure table and the "Register pre-RT to mid-RT" step.

    A prior segmentation loaded from an RTSTRUCT / SEG shows one row per segment with a GTVp /
    GTVn / ignore box, auto-filled when the prior changes (``HNTumorSegLib.scene.prior_table``); the
    table lives in the parameter node as the ``--structures`` text (``prior_structures``, also
    editable as text). Register runs the worker on the pre-RT T2 and that prior
    (``SegmentationSceneLogic.start_register``), polled like Apply, then leaves the transform nodes
    and the registered prior, selects it as the prior and makes its boxes
    (``HNTumorSegLib.scene.prior_registration``); after an edit of the rigid node in the Transforms
    module, "Re-resample prior" carries the pre-RT prior through the edited transform again.
    """

    def __init__(self, widget):
        super().__init__(widget)
        self._priorID = ""
        self._rows = []           # (segment name, role value) the table shows
        self._registered = None   # what the last registration left: nodes and the table it used
        self.table = qt.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels([_("Segment"), _("Label")])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.ui.priorStructuresWidget.layout().addWidget(self.table)
        self.timer = self.makeTimer(self.POLL_MS, self.onPoll)
        self.ui.registerPriorButton.connect("clicked(bool)", self.onRegister)
        self.ui.resamplePriorButton.connect("clicked(bool)", self.onResample)

    def cleanup(self):
        self.timer.stop()

    @property
    def scene_logic(self):
        return self.widget.logic.segmentation   # HNTumorSegLib.scene.logic.SegmentationSceneLogic

    def updateGUI(self, p):
        from HNTumorSegLib.scene.prior_table import auto_table_text, table_message, table_rows

        midrt = p.task == Task.MIDRT
        for w in (self.ui.preRTLabel, self.ui.preRTSelector, self.ui.registerPriorButton, self.ui.resamplePriorButton):
            w.setVisible(midrt)
        seg = p.prior if p.prior is not None and p.prior.IsA("vtkMRMLSegmentationNode") else None
        for w in (self.ui.priorStructuresLineEdit, self.ui.priorStructuresWidget, self.ui.priorStructuresMessageLabel):
            w.setVisible(midrt and seg is not None)
        self.ui.registerPriorButton.setEnabled(p.t2 is not None and p.pre_rt is not None and not self.widget.logic.running)
        self.ui.resamplePriorButton.setEnabled(self._registered is not None and not self.widget.logic.running)
        if seg is None:
            self._priorID = ""
            return
        if seg.GetID() != self._priorID:   # another prior: its automatic table (we are inside the GUI update)
            self._priorID = seg.GetID()
            p.prior_structures = auto_table_text(seg)
        rows = [(name, role.value) for name, role in table_rows(seg, p.prior_structures)]
        if rows != self._rows:   # never rebuilt under the combo box whose signal changed the text
            self._fillTable(rows)
        self.ui.priorStructuresMessageLabel.text = table_message(seg, p.prior_structures)

    def _fillTable(self, rows):
        from HNTumorSegLib.vocab import StructureRole

        self._rows = rows
        self.table.setRowCount(len(rows))
        for i, (name, role) in enumerate(rows):
            item = qt.QTableWidgetItem(name)
            item.setFlags(qt.Qt.ItemIsEnabled)
            self.table.setItem(i, 0, item)
            box = qt.QComboBox()
            for r in StructureRole:
                box.addItem(_(r.value), r.value)
            box.setCurrentIndex(box.findData(role))
            box.connect("currentIndexChanged(int)", self.onRoleChanged)
            self.table.setCellWidget(i, 1, box)

    def onRoleChanged(self, index=None):
        from HNTumorSegLib.scene.prior_table import table_text

        if self.widget._updating or self.params is None:
            return
        self._rows = [(self.table.item(i, 0).text(), self.table.cellWidget(i, 1).currentData)
                      for i in range(self.table.rowCount)]
        self.params.prior_structures = table_text(self._rows)

    # ---- register ------------------------------------------------------------------------------
    def onRegister(self):
        p = self.params
        # the registration worker needs what review needs (numpy, scipy, SimpleITK: bundled), never torch
        if not self.widget.logic.ensureDependencies(log=self.log, action="review"):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the registration."), waitCursor=True):
            self._registered = {"prior": p.prior, "structures": p.prior_structures, "pre": p.pre_rt, "mid": p.t2}
            self.scene_logic.start_register(p.t2, p.pre_rt, p.prior, p.prior_structures)
            self.startPolling(self.timer)
        self.widget.updateGUIFromParameterNode()

    def onPoll(self):
        state = self.scene_logic.poll()
        if not self.showPoll(state, self.timer):
            return
        if state.state == "succeeded":
            with slicer.util.tryWithErrorDisplay(_("Could not import the registration."), waitCursor=True):
                result = self.scene_logic.import_registration()
                self._registered.update(linear=result.linear, segmentation=result.segmentation)
                self._useRegisteredPrior(result.segmentation)
                self.ui.stageLabel.text = _("Registered: check it, adjust the rigid transform in Transforms if "
                                            "needed (then Re-resample prior), then Apply.")
        elif state.error and state.state != "cancelled":
            self._registered = None
            slicer.util.errorDisplay(state.error)
        self.widget.updateGUIFromParameterNode()

    def onResample(self):
        from HNTumorSegLib.scene.prior_registration import resample_prior

        r = self._registered
        with slicer.util.tryWithErrorDisplay(_("Could not resample the prior."), waitCursor=True):
            seg = resample_prior(slicer.mrmlScene, r["linear"], r["mid"], r["pre"], r["prior"], r["structures"],
                                 segmentation=r.get("segmentation"))
            self._useRegisteredPrior(seg)

    def _useRegisteredPrior(self, seg):
        if seg is None:
            return
        p = self.params
        p.prior = seg
        self.widget.logic.boxes_from_prior(seg, p.t2, model=p.model)
