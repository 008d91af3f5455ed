"""The panel's Run section: device, quality, Apply / Cancel, progress and log.

A helper of ``HNTumorSegWidget`` (see :mod:`.panel`). Apply checks the inputs and the model
(not installed: one line saying what to click) and hands the run to the scene's warm session
(:mod:`.refine_panel`), which returns at once: the scene logic probes the device (a child Python,
once per session: torch never enters Slicer's GUI process) and writes the inputs in a thread
(stage "preparing", issue 26). A QTimer polls every 200 ms into the progress bar, the stage label
and the log; the poll says the device the run uses and, before a long CPU run, the question to
ask (``HNTumorSegLib.scene.run_estimate``). At the end the result is imported and selected for
review (on PET/CT with its PET biomarker table, and, when the PET was registered to the CT, a
status line saying how: ``--align-pet``'s combo "PET to CT", issue 24); a run restricted to the
boxes says which region was skipped.

"Run on" (issue 29): this computer, or a segmentation server (``hntumorseg serve``); the choice, the
server's address and the token file's path are kept in Slicer's settings (QSettings), never in the
scene, and Apply points the scene's warm session at the server
(:mod:`HNTumorSegLib.scene.remote_run`), so progress, cancel and refinement behave as locally.
"""

from __future__ import annotations

import qt
import slicer

from HNTumorSegLib.vocab import Device, Quality, RunOn, Task

from .panel import Panel, _


class RunPanel(Panel):
    def __init__(self, widget):
        super().__init__(widget)
        for device in Device:
            self.ui.deviceComboBox.addItem(device.value, device.value)
        from HNTumorSegLib.scene.panel_params import QUALITY_TEXT

        for quality in Quality:  # the text says what it does: folds and TTA, always the whole image
            self.ui.qualityComboBox.addItem(QUALITY_TEXT[quality], quality.value)
        self.timer = self.makeTimer(self.POLL_MS, self.onPoll)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceOrQualityChanged)
        self.ui.qualityComboBox.connect("currentIndexChanged(int)", self.onDeviceOrQualityChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.setUpRunOn()

    @property
    def logic(self):
        return self.widget.logic

    def cleanup(self):
        self.timer.stop()
        self.logic.cancel()

    def updateGUI(self, p, can_run: bool):
        """Device and quality from the node; Apply (or Cancel while running) enabled when it can act."""
        self.ui.deviceComboBox.setCurrentIndex(max(0, self.ui.deviceComboBox.findData(p.device.value)))
        self.ui.qualityComboBox.setCurrentIndex(max(0, self.ui.qualityComboBox.findData(p.quality.value)))
        self.ui.alignPetComboBox.setEnabled(p.task == Task.PETCT)   # bound to align_pet by connectGui (.ui)
        self.setApplyEnabled(can_run)

    def setApplyEnabled(self, can_run: bool):
        running = self.logic.running
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.setEnabled(running or can_run)

    def onDeviceOrQualityChanged(self, index=None):
        if self.widget._updating or self.params is None:
            return
        with slicer.util.NodeModify(self.params):
            self.params.device = Device(self.ui.deviceComboBox.currentData)
            self.params.quality = Quality(self.ui.qualityComboBox.currentData)

    def stopped(self, message: str):
        """The run ended without a result (cancelled here, or by closing the scene)."""
        self.timer.stop()
        self.ui.progressBar.setVisible(False)
        self.log(message)

    # ---- run on: this computer / server (QSettings, never the scene) --------------------------------
    def setUpRunOn(self):
        from HNTumorSegLib.scene.remote_run import RUN_ON_TEXT, load_settings

        for where in RunOn:
            self.ui.runOnComboBox.addItem(_(RUN_ON_TEXT[where]), where.value)
        saved = load_settings(qt.QSettings())
        self.ui.runOnComboBox.setCurrentIndex(max(0, self.ui.runOnComboBox.findData(saved.run_on.value)))
        self.ui.serverUrlLineEdit.text = saved.url
        self.ui.tokenFileLineEdit.text = saved.token_file
        self.ca_cert = saved.ca_cert   # set in the settings by hand (README "Segmentation server")
        self.ui.runOnComboBox.connect("currentIndexChanged(int)", self.onRunOnChanged)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self.onRunOnChanged)
        self.ui.tokenFileLineEdit.connect("editingFinished()", self.onRunOnChanged)
        self.ui.tokenFileBrowseButton.connect("clicked(bool)", self.onBrowseTokenFile)
        self.ui.serverTestButton.connect("clicked(bool)", self.onTestServer)
        self.showRunOn()

    def runOnSettings(self):
        from HNTumorSegLib.scene.remote_run import RemoteSettings

        return RemoteSettings(RunOn.parse(self.ui.runOnComboBox.currentData or RunOn.LOCAL.value),
                              self.ui.serverUrlLineEdit.text,
                              self.ui.tokenFileLineEdit.text, self.ca_cert)

    def showRunOn(self):
        server = self.ui.runOnComboBox.currentData == RunOn.SERVER.value
        for name in ("serverUrlLabel", "serverUrlLineEdit", "tokenFileLabel", "tokenFileLineEdit",
                     "tokenFileBrowseButton", "serverTestButton"):
            getattr(self.ui, name).setVisible(server)
        self.ui.deviceComboBox.setEnabled(not server)   # the server's own --device decides

    def onRunOnChanged(self, index=None):
        from HNTumorSegLib.scene.remote_run import save_settings

        save_settings(qt.QSettings(), self.runOnSettings())
        self.showRunOn()

    def onBrowseTokenFile(self):
        path = qt.QFileDialog.getOpenFileName(None, _("The server's token file"))
        if path:
            self.ui.tokenFileLineEdit.text = path
            self.onRunOnChanged()

    def onTestServer(self):
        from HNTumorSegLib.scene.remote_run import health_line

        with slicer.util.tryWithErrorDisplay(_("Could not reach the server."), waitCursor=True):
            self.log(health_line(self.runOnSettings()))

    # ---- run -----------------------------------------------------------------------------------
    def onApplyOrCancel(self):
        if self.logic.running:
            self.logic.cancel()
            self.stopped(_("cancelled"))
            self.widget.updateGUIFromParameterNode()
            return
        if self.widget.modelPanel.offerInstall():
            return  # the model is not installed: Apply offered its Download / Import (scene.model_choice.apply_offer)
        if not self.logic.ensureDependencies(log=self.log):
            return
        from HNTumorSegLib.scene.model_choice import choose_model
        from HNTumorSegLib.scene.panel_params import from_object

        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            params = from_object(self.params)
            run_params = params.to_run_parameters()
            run_params.check(slicer.mrmlScene)  # inputs and prior present, else one line saying which
            choose_model(params.model, params.task, require_installed=True)  # else: what to click
            # the scene's warm session (started on first Apply); returns at once, prepared in a thread
            self.logic.refreshDicomLookup()   # a DICOM PET reaches the worker in SUV (issue 24)
            from HNTumorSegLib.scene.remote_run import use_run_target

            session = self.widget.refinePanel.session()
            use_run_target(session, self.runOnSettings())   # this computer or the server (token read from its file)
            session.apply(run_params)
            self.ui.deviceUsedLabel.text = _("Checking the device...")
            self.startPolling(self.timer)
        self.widget.updateGUIFromParameterNode()

    def onPoll(self):
        state = self.logic.poll()
        if state.device and state.state == "preparing":
            self.ui.deviceUsedLabel.text = _("This run uses: {device}").format(device=state.device)
        if state.question:  # a long CPU run: asked once, the timer held while the dialog is open
            self.timer.stop()
            ok = slicer.util.confirmOkCancelDisplay(state.question, _("HNTumorSeg: long CPU run"))
            self.logic.segmentation.confirm_start(ok)
            if not ok:
                self.stopped(_("cancelled"))
                self.widget.updateGUIFromParameterNode()
                return
            self.timer.start()
        if not self.showPoll(state, self.timer):
            return
        self.ui.deviceUsedLabel.text = self.logic.deviceUsedText()
        if state.state == "succeeded":
            with slicer.util.tryWithErrorDisplay(_("Could not import the result."), waitCursor=True):
                seg = self.logic.import_result()
                self.widget.refinePanel.session().track(seg)  # boxes moved from now on refine this result
                self.ui.segmentationSelector.setCurrentNode(seg)
                self.ui.stageLabel.text = _("Done: review the contours, edit them in Segment Editor, then export.")
                from HNTumorSegLib.prompts.pet_ct_registration import alignment_of_run

                aligned = alignment_of_run(self.logic.segmentation.run)   # a registered PET: how it was placed
                for line in (aligned, state.note):   # how the PET was placed; the region a restriction skipped
                    if line:
                        self.ui.stageLabel.text += "\n" + line
                        self.log(line)
        elif state.error and state.state != "cancelled":
            slicer.util.errorDisplay(state.error)
        if state.state == "succeeded" and self.params.task == Task.PETCT:
            self.widget.outcomePanel.onPetBiomarkers()  # a PET/CT result comes with its PET biomarker table
        self.widget.updateGUIFromParameterNode()
