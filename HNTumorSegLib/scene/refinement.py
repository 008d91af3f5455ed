"""The Slicer side of the warm session: one session per scene, Apply through it, "Update while editing".

:class:`SceneSession` (no Qt; tested on slicer-core with a real session process):

* **one session per scene**: started on the first Apply (:meth:`SceneSession.apply`), restarted
  when the model or the device changes, closed when the scene closes (``StartCloseEvent``) and
  when the module is cleaned up (:meth:`SceneSession.cleanup`). Apply goes through it (the
  scene logic's ``run_factory`` makes a :class:`~HNTumorSegLib.session.SessionJob` instead of a
  new worker), so the second Apply does not pay for Python, torch and the model again.
* **Update while editing**: with :attr:`SceneSession.update_while_editing` on, moving or
  resizing a lesion box (ROI ``ModifiedEvent`` with a changed box) re-segments that lesion
  :data:`DEBOUNCE_S` after the *last* change (:class:`Debouncer`: several quick moves -> one
  refinement), in the background (:meth:`SceneSession.tick`, called by the widget's poll timer).
  The result updates **only that lesion's segment, inside the box** (the refinement's labels
  there); other segments lose only the voxels the refined lesion now holds (no overlap), so
  manual edits elsewhere - in any segment - stay. Choice: inside the box the pipeline's output
  also clears another lesion's voxels the network calls background
  (:mod:`HNTumorSegLib.pipeline.refine`); in Slicer those voxels may be the user's own painting,
  so they are kept.
* **applying a result off the GUI thread** (issue 26): a finished refinement's result - the box's
  crop (a box-only refinement, issue 27: no base labels are exported or handed over), or a whole
  map from an older server - is read in a thread (:class:`ResultReader`); the next tick writes only that box into
  the segments (:func:`.segment_arrays.change_box`: the Segment Editor's own Add / Remove with
  the box's extent, no whole-volume export or import).
* **undo keeps later edits** (issue 26, item 7): each applied refinement pushes a
  :class:`~.segment_arrays.BoxEdit` (each segment's box after it, and before it where it changed,
  one bit a voxel: memory follows the box) on :attr:`SceneSession.undo_stack` (:data:`UNDO_LEVELS`
  deep). :meth:`SceneSession.undo` takes back the newest: a voxel goes back to its
  pre-refinement labels only where every segment still holds the refinement's value, so a voxel
  painted or erased after the refinement - inside the box or anywhere else - keeps the user's edit.

  Why not MRML's undo, where the Segment Editor's lives: in Slicer 5.12 the Segment Editor's undo
  is a ``vtkSegmentationHistory`` owned by the editor widget's own ``vtkSlicerSegmentEditorLogic``
  (one per ``qMRMLSegmentEditorWidget``, not in the scene, cleared when the editor switches
  segmentation); it stores whole-segmentation states and restores them linearly, so restoring
  the state before a refinement would drop every later edit - what this item forbids - and
  another module cannot push onto it without reaching into that widget. The scene's undo stack
  (``vtkMRMLScene.SetUndoOn`` / ``SaveStateForUndo``) is off in Slicer (``GetUndoFlag()`` is
  False), segmentation nodes are not undo-enabled, and it too copies whole nodes. So the
  refinement keeps its own per-box diff, undone with the panel's "Undo refinement" button; the
  Segment Editor's Ctrl+Z keeps undoing the user's own strokes, whose results the diff respects.

The debounce needs no timer of its own: :class:`Debouncer` takes an injectable clock and the
widget's 200 ms poll timer asks it what is due, so the test drives it with a fake clock.

Example (a standalone scene; in Slicer ``slicer.mrmlScene`` and the widget's scene logic):
    >>> from HNTumorSegLib.scene.logic import SegmentationSceneLogic
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene = make_scene().scene
    >>> logic = SegmentationSceneLogic(scene)
    >>> ss = SceneSession(scene, logic)       # Apply is routed through it from now on
    >>> ss.client is None                     # no session process before the first Apply
    True
    >>> ss.update_while_editing = True        # the checkbox
    >>> ss.tick()                             # every poll: refinements due, results applied
    RefineState(running=False, message='', refined='', error='')
    >>> ss.cleanup()                          # module cleanup: the session (if any) ends

Then the widget's Apply is ``ss.apply(params)`` (the first call starts the session), and once the
result is imported, ``ss.track(seg, params)`` watches the lesion boxes; Testing/test_session_scene.py
runs that whole flow with the demo model and a real session process.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..image import Image
from ..prompts.boxes import LesionBox, box_to_index_slices
from .handoff import Preparation
from .mrml import image_from_volume_node
from .roi_boxes import box_from_roi_node, lesion_roi_nodes
from .segment_arrays import BoxEdit, ResultReader, change_box, read_segment_box, segment_mask, set_segment_mask
from .segmentation_io import segment_ids_by_label, style_segment

__all__ = ["DEBOUNCE_S", "UNDO_LEVELS", "Debouncer", "RefineState", "SceneSession",
           # in .segment_arrays; still importable from here
           "ResultReader", "segment_mask", "set_segment_mask"]

#: seconds of quiet after the last box change before the lesion is re-segmented (issue 17)
DEBOUNCE_S = 0.5
#: refinements that can be undone, newest first (each record holds only its box, two bits a voxel)
UNDO_LEVELS = 20


class Debouncer:
    """Remembers when each key last changed; :meth:`due` gives the keys quiet for ``delay_s``.

    ``clock`` is injectable (a fake one in tests; ``time.monotonic`` in Slicer).

    Example:
        >>> d = Debouncer(0.5, clock=lambda: t[0]); t = [0.0]
        >>> d.touch("GTVn-1"); t[0] = 0.3; d.touch("GTVn-1"); t[0] = 0.7; d.due()
        []
        >>> t[0] = 0.81; d.due()
        ['GTVn-1']
    """

    def __init__(self, delay_s: float = DEBOUNCE_S, clock: Callable[[], float] = time.monotonic):
        self.delay_s = float(delay_s)
        self.clock = clock
        self._last: dict[str, float] = {}

    def touch(self, key: str) -> None:
        self._last[key] = self.clock()

    def due(self) -> list[str]:
        now = self.clock()
        keys = [k for k, t in self._last.items() if now - t >= self.delay_s]
        for k in keys:
            del self._last[k]
        return keys

    @property
    def pending(self) -> list[str]:
        return list(self._last)

    def clear(self) -> None:
        self._last.clear()


@dataclass
class RefineState:
    """What the widget shows after a :meth:`SceneSession.tick`."""

    running: bool = False
    message: str = ""
    refined: str = ""            # box name of a refinement applied during this tick
    error: str = ""


@dataclass
class _Undo:
    segmentation_id: str
    reference_id: str
    edit: BoxEdit     # each segment's box after, and before where it changed (one bit a voxel)


class SceneSession:
    """The scene's warm session, its Apply and its refinements (module docstring).

    ``logic``: the scene's :class:`~HNTumorSegLib.scene.logic.SegmentationSceneLogic` (its Apply
    is routed through the session). ``client_factory(python=..., device=...)`` makes the
    :class:`~HNTumorSegLib.session.SessionClient` (tests pass one with thread limits).
    """

    def __init__(self, scene, logic, python: str | None = None, clock: Callable[[], float] = time.monotonic,
                 delay_s: float = DEBOUNCE_S, client_factory: Callable[..., Any] | None = None,
                 timeout_s: float | None = 600.0):
        self.scene = scene
        self.logic = logic
        self.python = python
        self.client_factory = client_factory
        self.timeout_s = timeout_s
        self.debouncer = Debouncer(delay_s, clock)
        self.update_while_editing = False
        self.client: Any = None
        self.key: tuple | None = None
        self.params = None                 # the last Apply's Parameters
        self.segmentation_id = ""
        self.reference_id = ""
        self.job = None
        self.preparation: Preparation | None = None   # the refinement's hand-off, in its thread
        self.job_box: LesionBox | None = None
        self.job_out: Path | None = None
        self.job_grid: tuple = ((), ())    # the refined box's slices (z y x) and the grid's shape
        self.job_geometry: Image | None = None   # the grid's geometry (a 1-voxel image): where a crop lies
        self.reader: ResultReader | None = None    # a finished refinement's result, read in its thread
        self.reader_box: LesionBox | None = None
        self.undo_stack: list[_Undo] = []          # the last UNDO_LEVELS refinements, newest last
        self.refinements = 0               # applied refinements (the test counts them)
        self.last_final = None
        self._boxes: dict[str, LesionBox] = {}   # ROI node id -> last box seen
        self._roi_tags: dict[str, tuple] = {}
        self._scene_tags = [scene.AddObserver(scene.StartCloseEvent, self._on_scene_close),
                            scene.AddObserver(scene.NodeAddedEvent, self._on_node_added)]
        logic.run_factory = self._new_job

    # ---- the session ------------------------------------------------------------------------
    def client_for(self, params) -> Any:
        """The session for ``params``' model and device: started on first use, restarted when either changed."""
        key = (str(params.model), str(params.device))
        if self.client is not None and self.key != key:
            self.close_session()
        if self.client is None:
            if self.client_factory is not None:
                self.client = self.client_factory(python=self.python, device=params.device)
            else:
                from ..session import SessionClient

                self.client = SessionClient(python=self.python, device=params.device)
            self.key = key
        return self.client

    def _new_job(self, **kw) -> Any:
        if self.client is None:
            raise InputError("no session for this scene yet", None, "press Apply")
        return self.client.new_job(timeout_s=kw.get("timeout_s"))

    def apply(self, params) -> Any:
        """Apply (the whole case) through the scene's session; returns the running job."""
        self.client_for(params)
        self.params = params
        return self.logic.start(params)

    def track(self, seg_node, params=None) -> None:
        """The imported result: refinements update this segmentation (and start watching the boxes)."""
        from .inputs import TASK_INPUTS

        params = params or self.params
        self.params = params
        self.segmentation_id = seg_node.GetID()
        self.reference_id = params.inputs[TASK_INPUTS[params.task][0]]
        self.undo_stack.clear()
        self.watch_boxes()

    # ---- watching the boxes ----------------------------------------------------------------
    def watch_boxes(self) -> None:
        """Observe every lesion ROI (new ones are picked up as they are added)."""
        for node in lesion_roi_nodes(self.scene):
            self._watch(node)

    def _watch(self, node) -> None:
        nid = node.GetID()
        if nid in self._roi_tags:
            return
        try:
            self._boxes[nid] = box_from_roi_node(node)
        except InputError:
            pass
        from vtkmodules.vtkCommonCore import vtkCommand

        tag = node.AddObserver(vtkCommand.ModifiedEvent, lambda caller, event: self._on_box_modified(caller))
        self._roi_tags[nid] = (node, tag)

    def _on_node_added(self, caller=None, event=None) -> None:
        if self.segmentation_id:
            self.watch_boxes()

    def _on_box_modified(self, node) -> None:
        try:
            box = box_from_roi_node(node)
        except InputError:
            return                      # a box being drawn (no size yet): wait for a real one
        nid = node.GetID()
        if self._boxes.get(nid) == box:
            return                      # selection or display change: the box did not move
        self._boxes[nid] = box
        if self.update_while_editing and self.segmentation_id:
            self.debouncer.touch(nid)

    # ---- refinements -------------------------------------------------------------------------
    @property
    def refining(self) -> bool:
        return self.reader is not None or (self.job is not None and (self.preparation is not None or
                                                                     self.job.running))

    def tick(self) -> RefineState:
        """Start a refinement that is due (or whose inputs are written), apply one that finished."""
        state = RefineState()
        if self.preparation is not None:
            started = self._start_prepared(self.preparation)
            if started.running or started.error:
                return started
        if self.job is not None:
            self.job.poll()
            if self.job.running:
                prog = self.job.progress
                return RefineState(True, f"refining {self.job_box.name}: {prog.stage if prog else 'starting'}")
            state = self._finish_job()
            if state.running or state.error:
                return state
        if self.reader is not None:
            state = self._apply_read(self.reader)
            if state.running:
                return state
        due = self.debouncer.due()
        if due and self.update_while_editing and self.segmentation_id and not self.logic.running:
            node = self.scene.GetNodeByID(due[0])
            for later in due[1:]:
                self.debouncer.touch(later)       # one refinement at a time; the rest come next
            if node is not None:
                try:
                    self.refine(node)
                    state.running = True
                    state.message = f"refining {node.GetName()}"
                except InputError as exc:
                    state.error = exc.one_line()
        return state

    def refine(self, roi_node) -> Any:
        """Re-segment the lesion of ``roi_node`` in the background; returns the job at once.

        The scene is read here (:meth:`SegmentationSceneLogic.snapshot
        <HNTumorSegLib.scene.logic.SegmentationSceneLogic.snapshot>`); a thread writes the inputs
        (:class:`.handoff.Preparation`) and a later :meth:`tick` starts the job (issue 26: the GUI
        thread is not held by the writing). The job is a box-only refinement (issue 27): no base
        labels are handed over - inside the box the new prediction decides every voxel, and only
        the box is applied - and its result is the box's crop, not the whole map."""
        if self.params is None or not self.segmentation_id:
            raise InputError("there is no result to refine yet", None, "press Apply first")
        seg = self.scene.GetNodeByID(self.segmentation_id)
        reference = self.scene.GetNodeByID(self.reference_id)
        if seg is None or reference is None:
            raise InputError("the result segmentation or its volume was removed", None, "press Apply again")
        box = box_from_roi_node(roi_node)
        grid = image_from_volume_node(reference, copy=False)    # its geometry: the box's voxels
        self.job_grid = (box_to_index_slices(box, grid), grid.array.shape)
        self.job_geometry = Image(np.zeros((1, 1, 1), np.uint8), grid.spacing, grid.origin, grid.direction.copy())
        snapshot = self.logic.snapshot(self.params)
        if not snapshot.boxes:
            raise InputError("refinement needs the lesion boxes", None, "tick 'Use boxes'")
        self.cancel_refinement()   # one at a time
        client = self.client_for(self.params)
        job = client.new_job(timeout_s=self.timeout_s)
        job.background_cleanup = True    # as Apply's run (scene/logic.py)
        out = Path(tempfile.mkdtemp(prefix="hntumorseg-refine-"))

        def discard() -> None:
            job.close()
            shutil.rmtree(out, ignore_errors=True)

        self.preparation = Preparation(snapshot, job.temp_dir, out, on_discard=discard, run=job)
        self.job, self.job_box, self.job_out = job, box, out
        return job

    def _start_prepared(self, prep: Preparation) -> RefineState:
        """While the inputs are written: that state; once written, the job started (or the failure)."""
        from ..pipeline.refine import RefineSpec

        name = self.job_box.name if self.job_box is not None else ""
        if not prep.done:
            return RefineState(True, f"refining {name}: {prep.message}")
        self.preparation = None
        if prep.error is None and prep.request is not None:
            try:
                prep.run.start(prep.request, refine=RefineSpec(None, (name,), box_only=True))
                return RefineState(True, f"refining {name}: starting")
            except BaseException as failed:
                prep.error = failed
        exc = prep.error
        one_line = getattr(exc, "one_line", None)   # InputError, EnvironmentFault (a full disk)
        error = "cancelled" if exc is None else one_line() if callable(one_line) else str(exc)
        self.job = self.job_box = self.job_out = None
        prep.cancel()                                # removes the job's folder and the result folder
        return RefineState(False, f"refinement of {name} failed", error=error)

    def _finish_job(self) -> RefineState:
        """The job ended: its labels go to a :class:`ResultReader` (the next ticks apply them)."""
        from ..protocol import ResultEvent

        job, box, out = self.job, self.job_box, self.job_out
        self.job = self.job_box = self.job_out = None
        assert job is not None and box is not None and out is not None
        self.last_final = job.final
        if not isinstance(job.final, ResultEvent):
            shutil.rmtree(out, ignore_errors=True)
            message = job.final.message if job.final is not None else "no result"
            return RefineState(False, f"refinement of {box.name} failed", error=message)
        slices, shape = self.job_grid
        self.reader = ResultReader(job.final.files["labels"], box.label, slices, shape, out, name=box.name,
                                   grid=self.job_geometry)
        self.reader_box = box
        return RefineState(True, f"refining {box.name}: reading the result")

    def _apply_read(self, reader: ResultReader) -> RefineState:
        """While the result is read: that state; once read, its box written into the segments."""
        name = reader.name
        if not reader.done:
            return RefineState(True, f"refining {name}: reading the result")
        reader_box, self.reader, self.reader_box = self.reader_box, None, None
        if reader.error is not None or reader.region is None or reader_box is None:
            one_line = getattr(reader.error, "one_line", None)
            error = one_line() if callable(one_line) else str(reader.error)
            return RefineState(False, f"refinement of {name} failed", error=error)
        try:
            self._apply_region(reader_box, reader.slices, reader.region)
        except InputError as exc:            # the segmentation or its volume was removed meanwhile
            return RefineState(False, f"refinement of {name} failed", error=exc.one_line())
        self.refinements += 1
        return RefineState(False, f"{name} updated", refined=name)

    def _apply(self, labels: Image, box: LesionBox) -> None:
        """:meth:`_apply_region` from a whole label map (on this thread; scripts and tests)."""
        sl = box_to_index_slices(box, labels)
        self._apply_region(box, sl, labels.array[sl] == box.label)

    def _apply_region(self, box: LesionBox, sl: tuple, lesion: np.ndarray) -> None:
        """The refined lesion into its segment inside the box; other segments lose only its voxels.
        Only the box is read and written (:func:`.segment_arrays.change_box`), and what changed is
        pushed on the undo stack."""
        seg = self.scene.GetNodeByID(self.segmentation_id)
        reference = self.scene.GetNodeByID(self.reference_id)
        if seg is None or reference is None:
            raise InputError("the result segmentation or its volume was removed", None, "press Apply again")
        groups = segment_ids_by_label(seg)
        if not groups[box.label]:
            from ..prompts.boxes import LABEL_NAMES
            from .roi_boxes import LABEL_COLOURS

            sid = seg.GetSegmentation().AddEmptySegment(LABEL_NAMES[box.label], LABEL_NAMES[box.label],
                                                        LABEL_COLOURS[box.label])
            style_segment(seg.GetSegmentation().GetSegment(sid), box.label)
            groups[box.label] = [sid]
        target = groups[box.label][0]
        new = {target: lesion}
        segmentation = seg.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments() if lesion.any() else 0):
            sid = segmentation.GetNthSegmentID(i)
            if sid != target:
                other = read_segment_box(seg, sid, reference, sl)
                if (other & lesion).any():
                    new[sid] = other & ~lesion
        edit = change_box(seg, reference, sl, new, name=box.name)
        self.undo_stack.append(_Undo(self.segmentation_id, self.reference_id, edit))
        del self.undo_stack[:-UNDO_LEVELS]

    @property
    def undo_state(self) -> _Undo | None:
        """The refinement :meth:`undo` would take back (None: nothing to undo)."""
        return self.undo_stack[-1] if self.undo_stack else None

    def undo(self) -> bool:
        """Take back the last refinement not yet undone; False when there is none (module docstring:
        only the voxels that still hold its values go back, later edits stay)."""
        if not self.undo_stack:
            return False
        undo = self.undo_stack.pop()
        seg = self.scene.GetNodeByID(undo.segmentation_id)
        reference = self.scene.GetNodeByID(undo.reference_id)
        if seg is None or reference is None:
            self.undo_stack.clear()
            return False
        undo.edit.undo(seg, reference)
        return True

    # ---- ending ------------------------------------------------------------------------------
    def cancel_refinement(self) -> None:
        """End the refinement: while its inputs are written at once (the thread cleans up); a result
        being read is dropped (its thread removes the folder)."""
        self.reader = self.reader_box = None
        prep, self.preparation = self.preparation, None
        if prep is not None:
            prep.cancel()           # its discard closes the job and removes the result folder
        elif self.job is not None:
            self.job.close()
            if self.job_out is not None:
                shutil.rmtree(self.job_out, ignore_errors=True)
        self.job = self.job_box = self.job_out = None

    def close_session(self) -> None:
        """End the session process (a refinement in flight is cancelled)."""
        self.cancel_refinement()
        if self.client is not None:
            if self.logic.running and getattr(self.logic.run, "client", None) is self.client:
                self.logic.cancel()
            self.client.close()
        self.client, self.key = None, None

    def _forget_scene(self) -> None:
        for node, tag in self._roi_tags.values():
            node.RemoveObserver(tag)
        self._roi_tags.clear()
        self._boxes.clear()
        self.debouncer.clear()
        self.segmentation_id = self.reference_id = ""
        self.undo_stack.clear()
        self.params = None

    def _on_scene_close(self, caller=None, event=None) -> None:
        self.close_session()
        self._forget_scene()

    def cleanup(self) -> None:
        """Module cleanup: close the session and stop observing. Safe to call twice."""
        self._on_scene_close()
        for tag in self._scene_tags:
            self.scene.RemoveObserver(tag)
        self._scene_tags = []
        if getattr(self.logic, "run_factory", None) == self._new_job:
            self.logic.run_factory = None
