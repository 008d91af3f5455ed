"""File > Close Scene while a segmentation runs: cancel the job, then let the panel re-read its parameters.

When the scene closes, Slicer removes the input volumes and *resets* the module's parameter
node (a singleton: kept, emptied). A job still running would later try to import its result
onto a volume that no longer exists, and a panel that does not re-read the node keeps showing
a model and inputs the node no longer holds. :class:`SceneCloseGuard` observes the scene:

* ``StartCloseEvent``: cancel the running job (the worker's whole process tree ends and its
  temporary files are removed before the nodes go; :meth:`SegmentationSceneLogic.cancel`);
* ``EndCloseEvent``: call ``on_closed`` - the widget re-reads (and re-initialises) its
  parameter node there, as Slicer's scripted-module template does.

It is plain VTK observation, so it works on slicer-core's ``vtkMRMLScene`` (tested there with a
real worker process) as in Slicer.

Example (in the widget's setup: ``SceneCloseGuard(slicer.mrmlScene, self.logic,
on_closed=self.initializeParameterNode)``; ``cleanup`` calls ``guard.remove()``):
    >>> from HNTumorSegLib.scene.logic import SegmentationSceneLogic
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene = make_scene().scene
    >>> guard = SceneCloseGuard(scene, SegmentationSceneLogic(scene), on_closed=lambda: print("re-read the node"))
    >>> scene.Clear(0)                   # File > Close Scene
    re-read the node
    >>> guard.cancelled_runs             # nothing was running
    0
    >>> guard.remove(); scene.Clear(0)   # no longer observed: nothing printed
"""

from __future__ import annotations

from typing import Callable


class SceneCloseGuard:
    """Observers on ``scene`` that cancel ``logic``'s job at close and call ``on_closed`` afterwards."""

    def __init__(self, scene, logic, on_closed: Callable[[], object] | None = None,
                 on_cancelled: Callable[[], object] | None = None):
        self.scene = scene
        self.logic = logic
        self.on_closed = on_closed
        self.on_cancelled = on_cancelled
        self.cancelled_runs = 0
        self._tags = [scene.AddObserver(scene.StartCloseEvent, self._on_start_close),
                      scene.AddObserver(scene.EndCloseEvent, self._on_end_close)]

    def _on_start_close(self, caller=None, event=None) -> None:
        if self.logic.running:
            self.logic.cancel()
            self.cancelled_runs += 1
            if self.on_cancelled is not None:
                self.on_cancelled()
        else:
            self.logic.cancel()  # also drops a finished but not yet imported result

    def _on_end_close(self, caller=None, event=None) -> None:
        if self.on_closed is not None:
            self.on_closed()

    def remove(self) -> None:
        """Stop observing (the widget's ``cleanup``). Safe to call twice."""
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        self._tags = []
