"""What every part of the module's panel shares: the widget's ``ui``, a timer maker, the translator.

The widget (``HNTumorSegWidget`` in HNTumorSeg.py) is a thin shell: it loads the .ui, keeps the
parameter node, and hands each section of the panel to a helper class in this package
(:mod:`.inputs_panel`, :mod:`.model_panel`, :mod:`.run_panel`, :mod:`.refine_panel`,
:mod:`.review_panel`, :mod:`.outcome_panel`). Each helper subclasses :class:`Panel`, shares the
widget's ``ui`` (one .ui file, so ``Testing/test_ui_static.py`` checks every ``self.ui.<name>`` of
every panel file against it) and reaches the other panels through ``self.widget``. The work
itself is in ``HNTumorSegLib.scene`` (no Qt, tested on the slicer-core wheel).
"""

from __future__ import annotations

import qt

try:  # Slicer's translation function (5.4+); older Slicer shows the English text
    from slicer.i18n import tr as _
except ImportError:  # pragma: no cover
    def _(text):
        return text


class Panel:
    """One section of ``widget`` (an ``HNTumorSegWidget``): its ``ui``, its timers, the parameter node."""

    POLL_MS = 200  # how often a running child process is asked for progress

    def __init__(self, widget):
        self.widget = widget
        self.ui = widget.ui

    @property
    def params(self):
        """The module's parameter node (``HNTumorSegParameterNode``), or None while a scene closes."""
        return self.widget._parameterNode

    @staticmethod
    def makeTimer(interval_ms: int, slot, single_shot: bool = False):
        """A QTimer calling ``slot``: polling a child, or (single shot) debouncing a burst of edits."""
        timer = qt.QTimer()
        timer.setInterval(interval_ms)
        timer.setSingleShot(single_shot)
        timer.connect("timeout()", slot)
        return timer

    def log(self, line: str) -> None:
        """One line in the panel's log box."""
        self.ui.logTextEdit.appendPlainText(line)

    def startPolling(self, timer) -> None:
        """A child has started: clear the log, show the progress bar at 0 and poll it with ``timer``."""
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        timer.start()

    def showPoll(self, state, timer) -> bool:
        """Show a running child's poll ``state`` (progress bar, stage line, new log lines); once it has
        ended, stop ``timer``, hide the bar and return True (the caller then reads the outcome)."""
        self.ui.progressBar.setValue(state.percent)
        self.ui.stageLabel.text = f"{state.stage}: {state.message}" if state.stage else ""
        for line in state.log:
            self.log(line)
        if state.running:
            return False
        timer.stop()
        self.ui.progressBar.setVisible(False)
        return True
