"""The panel's model box and its Download / Import buttons (a helper of ``HNTumorSegWidget``).

In its own file so the module's main file stays short (see :mod:`.panel`). The box's text - a
catalogue id picked from the list, a list label, a typed or pasted id, or a browsed folder - is
the model: it goes to the parameter node as typed (the cursor stays where the user types). The work
is in the library (no Qt, tested on plain Python): ``HNTumorSegLib.scene.model_choice`` gives
the list for the task (models not installed yet carry a marker) and, for the box's text, the info
line and which buttons apply (:func:`model_box_state`); ``HNTumorSegLib.scene.model_install``
gives the plan (licence dialog text, commit to type, what to click) and runs the command line's
``models fetch|import --progress json`` in a child process (:class:`InstallJob`), so torch and
huggingface_hub never enter Slicer's GUI process and Slicer stays responsive: a QTimer polls the
child every 200 ms into the progress bar and the stage label.

Order of a press: the licence dialog first (non-commercial or unstated licences; No = nothing
starts, nothing is written), then the commit (Hugging Face entries that pin none) or the zip /
folder to import (and which configuration, when it holds several), then the child.
Apply with a model not installed calls :meth:`ModelPanel.offerInstall` (the offer is
``model_choice.apply_offer``'s); Download first asks the installer for what it imports
(``huggingface_hub``, action ``download``); a demo model on a non-phantom image puts
``model_choice.demo_warning``'s line, in bold, above the info line.
``Testing/test_ui_static.py`` checks the widgets used here against the .ui file.
"""

from __future__ import annotations

import qt
import slicer

from HNTumorSegLib.vocab import Task

from .panel import Panel, _


class ModelPanel(Panel):
    """Model list, info line and the Download / Import buttons of ``widget`` (an ``HNTumorSegWidget``)."""

    def __init__(self, widget):
        super().__init__(widget)
        self.job = None    # HNTumorSegLib.scene.model_install.InstallJob while one runs
        self.state = None  # HNTumorSegLib.scene.model_choice.ModelBoxState of the box's text
        self.timer = self.makeTimer(self.POLL_MS, self.onInstallPoll)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelTextChanged)
        self.ui.modelBrowseButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.downloadModelButton.connect("clicked(bool)", self.onDownload)
        self.ui.importModelButton.connect("clicked(bool)", self.onImport)

    def cleanup(self):
        """Module closed: end a running download / import (its staging folder is removed on the next try)."""
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()

    @property
    def installing(self) -> bool:
        return self.job is not None and not self.job.poll().done

    # ---- the box ---------------------------------------------------------------------------------
    def selectDefaultModel(self):
        """The first catalogue model of the node's task (its seed's model), when there is one."""
        from HNTumorSegLib.scene.model_choice import models_for_task

        choices = models_for_task(self.params.task)
        if choices:
            self.params.model = choices[0].id

    def onModelTextChanged(self, text):
        """Typed, pasted, browsed or picked: the text is the model (id, list label or folder)."""
        if self.widget._updating or self.params is None:
            return
        state = self.showInfo(text)  # licence, source; not installed: what to click
        self.widget._updating = True  # keep the cursor where the user types
        try:
            self.params.model = state.model
        finally:
            self.widget._updating = False
        self.widget.runPanel.setApplyEnabled(state.apply_enabled)  # not installed: Apply offers the download

    def onBrowseModel(self):
        folder = qt.QFileDialog.getExistingDirectory(None, _("Model folder (model.json, or an nnU-Net results folder)"))
        if folder:
            self.ui.modelComboBox.setEditText(folder)  # -> onModelTextChanged

    # ---- list and info line -------------------------------------------------------------------
    def fillList(self, task, model_text):
        """The catalogue models of ``task`` (not installed ones marked); a typed path stays as typed."""
        from HNTumorSegLib.scene.model_choice import models_for_task

        combo = self.ui.modelComboBox
        was = combo.blockSignals(True)
        try:
            combo.clear()
            for choice in models_for_task(task):
                combo.addItem(choice.label, choice.id)
                combo.setItemData(combo.count - 1, f"{choice.title}\n{choice.info_text()}", qt.Qt.ToolTipRole)
            index = combo.findData(model_text) if model_text else -1
            if index >= 0:
                combo.setCurrentIndex(index)
            else:
                combo.setEditText(model_text)
        finally:
            combo.blockSignals(was)
        return self.showInfo(model_text)

    def showInfo(self, text):
        """Licence, source and (not installed) what to click; the buttons that apply. Returns the box state."""
        from HNTumorSegLib.scene.model_choice import demo_warning, model_box_state

        p = self.params
        self.state = model_box_state(text, p.task) if p is not None else None
        if self.state is None:
            return None
        image = p.ct if p.task == Task.PETCT else p.t2
        warning = demo_warning(self.state.model, p.task, image) if self.state.can_run else ""
        info = self.state.info_text.replace("\n", "<br>")
        self.ui.modelInfoLabel.text = f"<b>{warning}</b><br>{info}" if warning else info
        self.ui.downloadModelButton.setEnabled(self.state.can_download and not self.installing)
        self.ui.importModelButton.setEnabled(self.state.can_import and not self.installing)
        return self.state

    # ---- Download / Import --------------------------------------------------------------------
    def offerInstall(self) -> bool:
        """Apply with a model not installed: offer its Download / Import (``model_choice.apply_offer``).

        True when an offer was made (accepted or not): Apply then stops here.
        """
        from HNTumorSegLib.scene.model_choice import apply_offer

        offer = apply_offer(self.ui.modelComboBox.currentText, self.params.task)
        if offer is None:
            return False
        if slicer.util.confirmYesNoDisplay(offer.question, windowTitle=_("HNTumorSeg: model not installed")):
            if self.state is None or self.state.model != offer.model_id:
                self.ui.modelComboBox.setEditText(offer.model_id)  # -> onModelTextChanged: the state of that model
            if offer.action == "download":
                self.onDownload()
            else:
                self.onImport()
        return True

    def _plan(self):
        from HNTumorSegLib.scene.model_install import install_plan

        if self.widget.logic.running:
            raise ValueError(_("Wait for the segmentation to finish (or cancel it) before installing a model."))
        return install_plan(self.state.model)

    def _licenceAccepted(self, plan) -> bool:
        """The licence dialog for non-commercial / unstated licences; open licences need none."""
        if not plan.needs_acceptance:
            return True
        accepted = slicer.util.confirmYesNoDisplay(plan.licence_dialog_text(),
                                                   windowTitle=_("HNTumorSeg: model licence"))
        if not accepted:
            self.ui.stageLabel.text = _("Licence not accepted: nothing was installed.")
        return bool(accepted)

    def onDownload(self):
        from HNTumorSegLib.scene.model_install import InstallJob

        if not self.widget.logic.ensureDependencies(log=self.log, action="download"):
            return  # huggingface_hub comes with the first-run install (asked once, a few MB)
        with slicer.util.tryWithErrorDisplay(_("Could not start the download."), waitCursor=False):
            plan = self._plan()
            if not self._licenceAccepted(plan):
                return
            revision = None
            if plan.needs_revision:
                revision = qt.QInputDialog.getText(
                    None, _("Commit to download"),
                    _("The full 40-character commit hash you checked on the model's Hugging Face page "
                      "(its 'commits' list, copy icon):"))
                if not revision:
                    return
            self._start(InstallJob.download(plan, revision=revision, accepted=plan.needs_acceptance))

    def onImport(self):
        from HNTumorSegLib.scene.model_install import InstallJob, configurations_in

        with slicer.util.tryWithErrorDisplay(_("Could not start the import."), waitCursor=False):
            plan = self._plan()
            if not self._licenceAccepted(plan):
                return
            source = self._askSource()
            if not source:
                return
            configuration = None
            names = configurations_in(source)
            if len(names) > 1:
                configuration = qt.QInputDialog.getItem(
                    None, _("Which model?"), _("The download holds several nnU-Net results folders. Import:"),
                    names, 0, False)
                if not configuration:
                    return
            self._start(InstallJob.import_(plan, source, accepted=plan.needs_acceptance,
                                           configuration=configuration))

    def _askSource(self) -> str:
        """The downloaded zip, or the folder it was unzipped into."""
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Import a downloaded model"))
        box.setText(_("Import the zip file you downloaded, or the folder you unzipped it into?"))
        zip_button = box.addButton(_("Zip file..."), qt.QMessageBox.AcceptRole)
        folder_button = box.addButton(_("Folder..."), qt.QMessageBox.AcceptRole)
        box.addButton(qt.QMessageBox.Cancel)
        box.exec_()
        if box.clickedButton() == zip_button:
            return qt.QFileDialog.getOpenFileName(None, _("Downloaded model (zip)"), "", _("Zip archives (*.zip)"))
        if box.clickedButton() == folder_button:
            return qt.QFileDialog.getExistingDirectory(None, _("Downloaded model folder"))
        return ""

    def _start(self, job):
        self.job = job.start()
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.stageLabel.text = _("Installing {model} ...").format(model=self.state.model)
        self.ui.downloadModelButton.setEnabled(False)
        self.ui.importModelButton.setEnabled(False)
        self.timer.start()

    def onInstallPoll(self):
        """Timer: progress while the child runs; at its end the list is refilled (or the one-line error shown)."""
        if self.job is None:
            return
        state = self.job.poll()
        self.ui.progressBar.setValue(state.percent)
        self.ui.stageLabel.text = state.stage_text()
        if not state.done:
            return
        self.timer.stop()
        self.ui.progressBar.setVisible(False)
        self.job = None
        if not state.ok and state.returncode is not None and state.returncode >= 0:
            slicer.util.errorDisplay(state.error or _("The model could not be installed."))
        self.widget.updateGUIFromParameterNode()  # the list loses the marker, Apply is enabled
