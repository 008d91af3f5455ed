"""Apply's hand-off to the worker, off Slicer's GUI thread: read MRML on the GUI thread, write in a thread.

Why (issue 26): Apply wrote every input as ``.nii.gz`` and read it back on the GUI thread (3.6 s
per 300x512x512 CT on an idle 2-core machine, ~25 s on a busy one), and the device probe could
hold the GUI up to 120 s. Now:

* :class:`Snapshot` (GUI thread, fast): what the worker needs, read off the MRML nodes - the
  inputs' voxels and geometry, the prior, the lesion boxes - and the other request fields.
  MRML is touched only here.
* :meth:`Snapshot.write` (any thread): the files of the hand-off into the run's temp folder,
  **uncompressed** ``.nii`` and **not read back**: only our own worker reads them, once, and the
  folder is removed after the run; a short write (full disk) is still caught, from the file's
  size (``stat``, no read). What the user keeps (the exports) is still written and verified by
  :func:`HNTumorSegLib.image.write_image`.
* :class:`Preparation`: a thread that (optionally) probes the device and estimates a CPU run
  (:mod:`.run_estimate`), then writes the snapshot; the panel's poll timer watches it through
  :meth:`SegmentationSceneLogic.poll <HNTumorSegLib.scene.logic.SegmentationSceneLogic.poll>`
  (stage ``preparing``). Cancelling during the preparation returns at once; the thread stops
  between files and removes what it wrote.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image, read_image
    >>> t2 = Image(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4), (1.0, 1.0, 2.0))
    >>> snap = Snapshot("prert", {"T2": t2}, fields={"model": "demo-prert"})
    >>> Path("work").mkdir(); Path("out").mkdir()
    >>> request = snap.write(Path("work"), Path("out"))
    >>> request.input_paths["T2"], request.restrict_to_boxes
    ('work/T2.nii', False)
    >>> bool((read_image(request.input_paths["T2"]).array == t2.array).all())
    True
    >>> prep = Preparation(snap, Path("work2"), Path("out2"))   # the same, in a thread
    >>> prep.join(60).request.input_paths["T2"]
    'work2/T2.nii'
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..image import Image, check_labels, write_image
from ..pipeline.request import SegmentRequest
from ..prompts.boxes import LesionBox, write_boxes

#: the hand-off's file suffix: uncompressed (the worker reads it once; the folder is removed after)
HANDOFF_SUFFIX = ".nii"


def write_handoff_image(image: Image, path: Path) -> Path:
    """``image`` as an uncompressed NIfTI at ``path``; the size checked from ``stat`` (no read-back):
    :func:`HNTumorSegLib.image.write_image` with ``compress=False, verify=False`` (one writer, issue 27).

    ``sitk.WriteImage`` does not raise on a full disk (it leaves a short file): a file shorter
    than its header plus voxels is an :class:`~HNTumorSegLib.errors.EnvironmentFault`.
    """
    return write_image(image, path, compress=False, verify=False)


@dataclass
class Snapshot:
    """What Apply hands to the worker, read off the scene (module docstring).

    ``images``: role -> image (first: the reference); ``prior``: the mid-RT prior label map;
    ``boxes``: the scene's lesion boxes sent with the request ([]: none); ``fields``: the other
    :class:`~HNTumorSegLib.pipeline.request.SegmentRequest` fields (model, device, folds, tta,
    align_pet, restrict_to_boxes); ``uncertainty``: also ask for the uncertainty map.
    """

    task: Any
    images: dict
    prior: Image | None = None
    boxes: list = field(default_factory=list)
    fields: dict = field(default_factory=dict)
    uncertainty: bool = False

    @property
    def n_files(self) -> int:
        return len(self.images) + (self.prior is not None)

    def write(self, work: Path, out: Path, progress: Callable[[float, str], None] | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> SegmentRequest | None:
        """Write the hand-off under ``work``; the request (results into ``out``), None when ``cancelled()``."""
        progress = progress or (lambda fraction, message: None)
        Path(work).mkdir(parents=True, exist_ok=True)
        todo = [(role, img, False) for role, img in self.images.items()]
        if self.prior is not None:
            todo.append(("prior", self.prior, True))
        paths = {}
        for i, (name, img, label) in enumerate(todo):
            if cancelled():
                return None
            if label:
                check_labels(img, path=None)   # 0, 1, 2 only (the GUI thread read it unchecked)
            progress(i / max(1, len(todo)), f"writing the {name} for the worker ({i + 1}/{len(todo)})")
            paths[name] = str(write_handoff_image(img, Path(work) / f"{name}{HANDOFF_SUFFIX}"))
        progress(1.0, "inputs written")
        if cancelled():
            return None
        boxes = str(write_boxes(self.boxes, Path(work) / "boxes.json")) if self.boxes else None
        prior = paths.pop("prior", None)
        return SegmentRequest(task=self.task, input_paths=paths, prior_path=prior, boxes_path=boxes,
                              output_path=str(Path(out) / "labels.nii.gz"),
                              uncertainty_path=str(Path(out) / "uncertainty.nii.gz") if self.uncertainty else None,
                              **self.fields)

    def restricted_note(self, margin_vox: int) -> str:
        """:func:`restricted_note` for this hand-off: its boxes, else (mid-RT) the prior's with the
        model's ``margin_vox``, as the pipeline makes them (``pipeline.tasks.prepare_midrt``)."""
        from ..pipeline.tasks import REGION_CONTEXT_MM
        from ..prompts.boxes import boxes_from_mask

        boxes = self.boxes or (boxes_from_mask(self.prior, margin_vox=margin_vox) if self.prior is not None else [])
        return restricted_note(self.task, boxes, next(iter(self.images.values())), REGION_CONTEXT_MM)


class Preparation:
    """A thread that probes the device (``probe``: ``() -> (device, RunEstimate | None)``, optional)
    and writes ``snapshot`` into ``work`` (module docstring). Read its fields after :attr:`done`;
    ``on_discard`` (called once, from whichever thread ends last) removes what a cancelled or
    failed preparation left."""

    def __init__(self, snapshot: Snapshot, work: Path, out: Path, probe: Callable[[], tuple] | None = None,
                 on_discard: Callable[[], None] | None = None, note: Callable[[], str] | None = None,
                 run: Any = None):
        self.snapshot, self.work, self.out = snapshot, Path(work), Path(out)
        self.run = run              # the run it prepares (the scene logic starts it once the files are written)
        self.probe = probe
        self.on_discard = on_discard or self._remove_folders
        self.note_of = note
        self.fraction = 0.0
        self.message = "checking the device" if probe else "writing the inputs for the worker"
        self.device = ""
        self.question = ""          # a long CPU run: the question to ask before starting
        self.asked = False
        self.answer: bool | None = None
        self.note = ""              # a line for the panel's status once the run succeeded
        self.request: SegmentRequest | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._finished = False
        self._discarded = False
        self.work.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._main, name="hntumorseg-handoff", daemon=True)
        self._thread.start()

    def _remove_folders(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)

    @property
    def done(self) -> bool:
        return self._finished

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(np.clip(fraction, 0.0, 1.0)), message

    def _main(self) -> None:
        try:
            if self.probe is not None:
                device, estimate = self.probe()
                self.device = device
                if estimate is not None and estimate.long_cpu_run:
                    self.question = estimate.warning_text()
            if not self._cancel.is_set():
                self.request = self.snapshot.write(self.work, self.out, self._progress, self._cancel.is_set)
            if self.note_of is not None and not self._cancel.is_set():
                self.note = self.note_of()
        except BaseException as exc:  # reported by poll, on the GUI thread
            self.error = exc
        finally:
            with self._lock:
                self._finished = True
                discard = self._cancel.is_set()
            if discard:
                self._discard()

    def _discard(self) -> None:
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
        self.on_discard()

    def cancel(self) -> None:
        """Stop (between files) and remove what was written; never waits for the thread."""
        with self._lock:
            self._cancel.set()
            finished = self._finished
        if finished:
            self._discard()

    def join(self, timeout_s: float | None = None) -> "Preparation":
        """Wait for the thread (tests and scripts; the panel polls :attr:`done` instead)."""
        self._thread.join(timeout_s)
        return self


def restricted_note(task, boxes: list[LesionBox], reference: Image, margin_mm: float) -> str:
    """The status line of a run restricted to the boxes: which region was skipped.

    Example:
        >>> ref = Image(np.zeros((10, 10, 10), np.int16))
        >>> box = LesionBox(label=1, name="GTVp-1", min_ras=(-2.0, -2.0, 0.0), max_ras=(0.0, 0.0, 2.0))
        >>> restricted_note("prert", [box], ref, margin_mm=1.0)
        'Restricted to the boxes (GTVp-1, + 1 mm): 93.6 % of the image outside them was not segmented, a lesion there is missed - untick Restrict to boxes to segment the whole image.'
    """
    from ..prompts.boxes import boxes_to_mask

    if not boxes:
        return "Restrict to boxes was ticked but there are no boxes: the whole image was segmented."
    names = ", ".join(b.name for b in boxes)
    if str(task) == "petct":
        return (f"Restricted to the boxes ({names}): on PET/CT they replace the head crop, only the region "
                "around them was segmented - untick Restrict to boxes and remove the boxes to segment the head crop.")
    inside = boxes_to_mask(boxes, reference, margin_mm=margin_mm)
    skipped = 100.0 * (1.0 - inside.mean())
    return (f"Restricted to the boxes ({names}, + {margin_mm:g} mm): {skipped:.1f} % of the image outside them "
            "was not segmented, a lesion there is missed - untick Restrict to boxes to segment the whole image.")
