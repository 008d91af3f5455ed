"""The panel's warm session: "Update while editing" and "Undo refinement".

A helper of ``HNTumorSegWidget`` (see :mod:`.panel`). The scene's warm session
(``HNTumorSegLib.scene.refinement.SceneSession``, made on the first Apply and ended with the
module) runs every segmentation of the scene; once a result is tracked, a box moved while
"Update while editing" is on is re-segmented alone after the edits settle (the session's own
debounce, ``SceneSession.tick``, polled every 200 ms), and refinements can be undone one by one,
newest first (only what each changed: later edits stay; ``SceneSession.undo``).
"""

from __future__ import annotations

import slicer

from .panel import Panel, _


class RefinePanel(Panel):
    def __init__(self, widget):
        super().__init__(widget)
        self._session = None  # HNTumorSegLib.scene.refinement.SceneSession, made on first use
        self.timer = self.makeTimer(self.POLL_MS, self.onRefineTick)
        self.ui.updateWhileEditingCheckBox.connect("toggled(bool)", self.onUpdateWhileEditing)
        self.ui.undoRefinementButton.connect("clicked(bool)", self.onUndoRefinement)

    def session(self):
        """The scene's warm session (started on first use: the first Apply)."""
        if self._session is None:
            from HNTumorSegLib.scene.refinement import SceneSession

            self._session = SceneSession(slicer.mrmlScene, self.widget.logic.segmentation)
        return self._session

    def cleanup(self):
        self.timer.stop()
        if self._session is not None:
            self._session.cleanup()  # ends the session process

    def onUpdateWhileEditing(self, on):
        self.session().update_while_editing = bool(on)
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    def onRefineTick(self):
        state = self.session().tick()
        if state.message:
            self.ui.stageLabel.text = state.message
        if state.refined:
            self.log(_("refined {box}").format(box=state.refined))
        if state.error:
            self.log(_("refinement failed: {error}").format(error=state.error))
        self.ui.undoRefinementButton.setEnabled(self._session.undo_state is not None)

    def onUndoRefinement(self):
        with slicer.util.tryWithErrorDisplay(_("Could not undo the refinement."), waitCursor=True):
            if self.session().undo():
                self.log(_("last refinement undone (edits made after it kept)"))
        self.ui.undoRefinementButton.setEnabled(self.session().undo_state is not None)  # more levels left
