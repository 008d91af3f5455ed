"""The Slicer module's logic without Qt: parameters, the background run, import, review, export.

The widget (``HNTumorSeg/HNTumorSeg.py``) binds its controls to a :class:`Parameters` and calls
:class:`SegmentationSceneLogic` (through the Slicer module's logic, which hands each action to it);
a ``QTimer`` calls :meth:`SegmentationSceneLogic.poll` every 200 ms. Nothing here blocks
for long: :meth:`start` reads the nodes and hands the writing to a thread; a later :meth:`poll`
starts the worker process (:class:`HNTumorSegLib.runner.WorkerRun`) and from then on only drains
the events the runner's reader threads queued (milliseconds, measured by ``bench/bench_poll.py``
and ``Testing/test_scene_gui_thread.py``).

Quality (the widget's switch, :class:`~HNTumorSegLib.vocab.Quality`) chooses folds and TTA only:
``fast`` = one fold, the first the model has (:meth:`Folds.first <HNTumorSegLib.folds.Folds.first>`:
fold 0, or fold 1 of a model trained on folds 1-4, or ``fold_all``), no test-time augmentation;
``full`` = all folds and TTA (flips on the model's ``tta_axes``). Both segment the **whole image**:
the region is restricted to the lesion boxes only when the user ticked "Restrict to boxes"
(``Parameters.restrict_to_boxes``; issue 26: "fast" used to restrict, so a new mid-RT node
outside the pre-RT boxes was silently lost), and then the run's status line says which region
was skipped (:func:`.handoff.restricted_note`, ``PollState.note``). The request is a
:class:`~HNTumorSegLib.pipeline.request.SegmentRequest`, built and checked here.

Apply never blocks the GUI thread for long (issue 26): :meth:`SegmentationSceneLogic.start` reads
the nodes (:class:`.handoff.Snapshot`) and returns; a thread (:class:`.handoff.Preparation`)
probes the device (``check_device``), writes the hand-off and the worker starts on a later
:meth:`~SegmentationSceneLogic.poll` (stage ``preparing`` until then).

Example (a whole session, as ``Testing/test_scene_session.py`` runs it):
    >>> import time
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> from HNTumorSegLib.scene.inputs import load_case_folder
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene = make_scene().scene
    >>> _ = write_hntsmrg_cohort("cohort", 1)                      # a phantom case "1"
    >>> logic = SegmentationSceneLogic(scene)
    >>> nodes = load_case_folder(scene, "cohort/1")
    >>> rois = logic.boxes_from_prior(nodes["preRT_mask_registered"], nodes["midRT_T2"])
    >>> [roi.GetName() for roi in rois]
    ['GTVp-1', 'GTVn-1', 'GTVn-2']
    >>> params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
    ...                     prior=nodes["preRT_mask_registered"].GetID(), model="demo-midrt", device="cpu")
    >>> _ = logic.start(params)                                    # inputs written in a thread, then a worker
    >>> while logic.running: state = logic.poll(); time.sleep(0.2)   # the widget's timer: progress bar
    >>> seg = logic.import_result()
    >>> sorted(logic.review(seg, nodes["midRT_T2"], reference=nodes["midRT_mask"]))   # table nodes
    ['comparison', 'lesions', 'volumes']
    >>> logic.export(seg, nodes["midRT_T2"], "out/", formats=("nifti", "csv"))
    {'nifti': PosixPath('out/1_midRT_T2_gtv.nii.gz'), 'csv': PosixPath('out/1_midRT_T2_stats.csv')}
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from ..image import check_labels, read_image
from ..folds import Folds
from ..pipeline.request import SegmentRequest
from ..prompts.boxes import boxes_from_mask
from ..vocab import AlignPet, ExportFormat, OutputKind, Quality, Task, parse_device
from .handoff import Preparation, Snapshot
from .inputs import TASK_INPUTS, TASK_PRIOR, request_input_image
from .mrml import image_from_volume_node
from .prior_table import prior_label_map
from .review import (COMPARISON_COLUMNS, LESION_COLUMNS, VOLUME_COLUMNS, comparison_rows, export_folder,
                     lesion_rows, table_node_from_rows, volume_rows)
from .roi_boxes import boxes_from_roi_nodes, lesion_roi_nodes, roi_nodes_from_boxes
from .segmentation_io import add_uncertainty_volume, export_label_map, import_label_map

EXPORT_FORMATS = ExportFormat.values()   # the words: vocab.ExportFormat


def quality_settings(quality: Quality | str) -> tuple[Folds, bool]:
    """``(folds, tta)`` of a quality: fast = (first fold the model has, no TTA); full = (all, TTA).

    Example:
        >>> quality_settings("fast")
        (Folds(mode='first', items=()), False)
    """
    return (Folds.first(), False) if Quality.parse(quality) is Quality.FAST else (Folds.all(), True)


@dataclass
class Parameters:
    """What the widget's controls hold (node IDs, not nodes: a parameter node stores strings).

    ``task``, ``device`` and ``quality`` arrive as the parameter node's strings and are converted
    here (:mod:`HNTumorSegLib.vocab`): a bad value is an InputError when the Parameters are made.
    """

    task: Task = Task.PRERT
    inputs: dict = field(default_factory=dict)  # role -> volume node ID
    prior: str = ""                               # node ID of a label map or segmentation (midrt)
    model: str = ""                               # catalogue id or folder
    device: str = "auto"                          # auto, cpu, cuda, cuda:N, mps
    quality: Quality = Quality.FAST
    use_boxes: bool = True                        # send the scene's lesion boxes with the request
    restrict_to_boxes: bool = False               # segment only the boxes (+5 mm): the user's tick, never quality
    save_uncertainty: bool = False                # also ask for the voxel-wise uncertainty map
    prior_structures: str = ""                    # a segmentation prior's structure table ("": automatic)
    align_pet: AlignPet = AlignPet.AUTO           # PET/CT: --align-pet (prompts.pet_ct_registration)

    def __post_init__(self) -> None:
        self.task = Task.parse(self.task)
        self.device = parse_device(self.device)
        self.quality = Quality.parse(self.quality)
        self.align_pet = AlignPet.parse(self.align_pet, "--align-pet")

    def check(self, scene) -> None:
        """Refuse what cannot run, with a fix the user can apply in the panel."""
        for role in TASK_INPUTS[self.task]:
            if not self.inputs.get(role) or scene.GetNodeByID(self.inputs[role]) is None:
                raise InputError(f"no {role} volume selected", None, f"select the {role} volume in the Inputs section")
        if TASK_PRIOR[self.task] and (not self.prior or scene.GetNodeByID(self.prior) is None):
            raise InputError("no pre-RT prior selected", None,
                             "select the registered pre-RT mask (label map or segmentation) as the prior")
        if not self.model:
            raise InputError("no model selected", None, "choose a model in the Model section")


@dataclass
class PollState:
    """What the widget shows after a poll."""

    running: bool
    state: str
    stage: str = ""
    percent: int = 0
    message: str = ""
    log: list = field(default_factory=list)   # new log lines since the last poll
    error: str = ""                            # one line when the run failed
    device: str = ""                           # the device this run uses, once known (preparing: the probe)
    question: str = ""                         # ask this once (OK / Cancel), then call confirm_start
    note: str = ""                             # a status line for the finished run (the skipped region)


class SegmentationSceneLogic:
    """Scene-side logic of the Slicer module (no Qt): inputs from MRML nodes, the background run,
    import, review and export. One run at a time. The Slicer module's ``HNTumorSegLogic``
    hands each widget action to it (``HNTumorSeg/HNTumorSeg.py``)."""

    def __init__(self, scene, python: str | None = None, timeout_s: float | None = 3600.0,
                 check_device: bool = False):
        self.scene = scene
        self.python = python
        self.timeout_s = timeout_s
        #: Apply also probes the device in a child Python and, before a long CPU run, asks
        #: (``PollState.question``; the Slicer module sets it, scripts and tests need not)
        self.check_device = check_device
        self.devices: dict = {}          # device asked -> device found (probed once per session)
        self.run: Any = None             # WorkerRun, or the scene session's SessionJob
        self.preparation: Preparation | None = None   # Apply's hand-off, in its thread
        self.note = ""                   # the last run's status line (PollState.note)
        self.result_dir: Path | None = None
        self.reference_id: str = ""
        self.result_files: dict = {}
        #: makes the run object (``WorkerRun``-shaped); the scene's warm session sets it
        #: (:class:`~HNTumorSegLib.scene.refinement.SceneSession`), None: a new worker per Apply
        self.run_factory = None
        #: Slicer's ``slicer.dicomDatabase.fileForInstance`` (set by the Slicer module before Apply): a PET
        #: loaded from DICOM is sent in SUV, converted from its files (:func:`.inputs.request_input_image`)
        self.file_for_instance = None
        #: the nodes of a running registration (:meth:`start_register`): mid, pre, prior
        self.register_nodes: dict = {}

    # ---- boxes ------------------------------------------------------------------------------
    def boxes_from_prior(self, prior_node, reference_node, model: str = "", replace: bool = True,
                         structures: str = "") -> list:
        """One ROI per lesion of the prior (label map or segmentation), grown by the selected
        ``model``'s ``box_margin_vox`` voxels (its card; default 4 without a model or card), the
        same number the pipeline uses for the prior's boxes (why 4: ``models/card.py``), so
        pressing the button does not change the result. ``structures``: a segmentation prior's
        structure table (:mod:`.prior_table`; "" automatic).
        """
        from ..models.loader import box_margin_vox_of

        margin_vox = box_margin_vox_of(model)
        prior = self._prior_image(prior_node, reference_node, structures)
        if replace:
            for node in lesion_roi_nodes(self.scene):
                self.scene.RemoveNode(node)
        return roi_nodes_from_boxes(self.scene, boxes_from_mask(prior, margin_vox=margin_vox))

    def _prior_image(self, prior_node, reference_node, structures: str = ""):
        if prior_node.IsA("vtkMRMLSegmentationNode"):   # GTV_P, GTVn_L2 ...: by the structure table
            return prior_label_map(prior_node, reference_node, structures)
        img = image_from_volume_node(prior_node)
        check_labels(img, path=None)
        return img

    # ---- the run ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """A run is being prepared (stage ``preparing``) or its worker runs."""
        return self.preparation is not None or (self.run is not None and self.run.running)

    def snapshot(self, params: Parameters) -> Snapshot:
        """What the worker needs, read off the scene (GUI thread; MRML only here). Raises InputError."""
        params.check(self.scene)
        # the voxels as read-only views (no copy on the GUI thread); the PET in SUVbw (issue 24)
        images = {role: (request_input_image(node, role, self.file_for_instance) if role == "PET"
                         else image_from_volume_node(node, copy=False))
                  for role in TASK_INPUTS[params.task] for node in [self.scene.GetNodeByID(params.inputs[role])]}
        reference = self.scene.GetNodeByID(params.inputs[TASK_INPUTS[params.task][0]])
        prior, prior_node = None, self.scene.GetNodeByID(params.prior) if TASK_PRIOR[params.task] else None
        if prior_node is not None:   # a label map's labels are checked in the thread (0.3 s at 300x512x512)
            prior = (image_from_volume_node(prior_node, copy=False) if not prior_node.IsA("vtkMRMLSegmentationNode")
                     else self._prior_image(prior_node, reference, params.prior_structures))
        rois = lesion_roi_nodes(self.scene) if params.use_boxes else []
        folds, tta = quality_settings(params.quality)   # quality: folds and TTA only (whole image)
        return Snapshot(params.task, images, prior, boxes_from_roi_nodes(rois) if rois else [],
                        fields=dict(model=params.model, device=params.device, folds=folds, tta=tta,
                                    align_pet=params.align_pet, restrict_to_boxes=bool(params.restrict_to_boxes)),
                        uncertainty=params.save_uncertainty)

    def build_request(self, params: Parameters, work: Path, out: Path) -> SegmentRequest:
        """Write the inputs, prior and boxes under ``work`` now; the :class:`SegmentRequest` for the worker."""
        request = self.snapshot(params).write(Path(work), Path(out))
        assert request is not None
        return request

    def start(self, params: Parameters, argv: list | None = None) -> Preparation:
        """Read the inputs (InputError here, at once) and prepare the run in a thread; returns at once.

        :meth:`poll` reports stage ``preparing`` until the files are written (and, with
        ``check_device``, the device probed: ``PollState.device``, a long CPU run's
        ``PollState.question``), then starts the worker. :meth:`wait_started` waits instead.
        """
        if self.running:
            raise InputError("a segmentation is already running", None, "wait for it or press Cancel")
        snapshot = self.snapshot(params)
        self._drop_results()
        self.register_nodes = {}
        self.note = ""
        factory = self.run_factory
        from ..runner import WorkerRun

        run = (factory or WorkerRun)(python=self.python, timeout_s=self.timeout_s, argv=argv)
        run.background_cleanup = True    # the job's end is seen on the GUI thread: do not delete there
        self.result_dir = out = Path(tempfile.mkdtemp(prefix="hntumorseg-result-"))
        probe = self._probe(params, snapshot) if self.check_device else None

        def discard():
            run.close()
            shutil.rmtree(out, ignore_errors=True)

        self.run = None
        self.preparation = prep = Preparation(snapshot, run.temp_dir, out, probe, discard,
                                              note=lambda: self._restricted_note(snapshot, params), run=run)
        self.reference_id = params.inputs[TASK_INPUTS[params.task][0]]
        return prep

    def _probe(self, params: Parameters, snapshot: Snapshot):
        """The thread's device probe and CPU-time estimate (:func:`.run_estimate.device_and_estimate`)."""
        from .run_estimate import device_and_estimate

        image = next(iter(snapshot.images.values()))
        full = Quality.parse(params.quality) is Quality.FULL
        return lambda: device_and_estimate(params.model, image.array.shape, image.spacing, str(params.device),
                                           full, self.python, self.devices)

    @staticmethod
    def _restricted_note(snapshot: Snapshot, params: Parameters) -> str:
        """Thread side: the skipped region of a restricted run ("" when not restricted)."""
        from ..models.loader import box_margin_vox_of

        return snapshot.restricted_note(box_margin_vox_of(params.model)) if params.restrict_to_boxes else ""

    def confirm_start(self, ok: bool) -> None:
        """The answer to ``PollState.question`` (a long CPU run): OK starts it, Cancel cancels."""
        if self.preparation is not None:
            self.preparation.answer = bool(ok)
            if not ok:
                self.cancel()

    def wait_started(self, timeout_s: float = 600.0):
        """Wait for the preparation and start the worker (scripts and tests; the panel polls). Returns the run."""
        prep = self.preparation
        if prep is not None:
            prep.join(timeout_s)
            if prep.question and prep.answer is None:
                prep.answer = True   # nobody to ask here
            state = self._poll_preparation(prep)
            if state is not None and not state.running:
                raise InputError(f"the run did not start: {state.error or state.state}", None,
                                 "fix what the message says and start again")
        return self.run

    def _poll_preparation(self, prep: Preparation) -> PollState | None:
        """While preparing: the state to show; None once the worker has been started."""
        if not prep.done or (prep.question and prep.answer is None and prep.error is None):
            question = ""
            if prep.done and not prep.asked:
                prep.asked, question = True, prep.question
            message = prep.message if not prep.done else "waiting for your answer"
            return PollState(True, "preparing", "preparing", int(round(100 * prep.fraction)), message,
                             device=prep.device, question=question)
        self.preparation = None
        if prep.error is not None or prep.request is None:
            exc = prep.error
            one_line = getattr(exc, "one_line", None)   # InputError, EnvironmentFault (a full disk)
            error = ("cancelled" if exc is None else one_line() if callable(one_line) else
                     f"could not prepare the inputs for the worker: {exc}")
            prep.cancel()   # removes the run's folder and the result folder
            self.result_dir = None
            return PollState(False, "failed", log=[f"error: {error}"], error=error, device=prep.device)
        self.note = prep.note
        self.run = prep.run.start(prep.request)
        return None

    def _start(self, build, argv: list | None, factory=None):
        from ..runner import WorkerRun

        if self.running:
            raise InputError("a segmentation is already running", None, "wait for it or press Cancel")
        self._drop_results()
        self.register_nodes = {}
        run = (factory or WorkerRun)(python=self.python, timeout_s=self.timeout_s, argv=argv)
        run.background_cleanup = True    # the job's end is seen on the GUI thread: do not delete there
        # results go beside, not inside, the run's temp folder: the runner removes that in every ending
        self.result_dir = Path(tempfile.mkdtemp(prefix="hntumorseg-result-"))
        try:
            request = build(run.temp_dir, self.result_dir)
        except BaseException:
            run.close()
            self._drop_results()
            raise
        self.run = run.start(request)
        return self.run

    # ---- "Register pre-RT to mid-RT" (scene.prior_registration) --------------------------------------
    def start_register(self, mid_node, pre_node, prior_node=None, structures: str = "",
                       mode: str = "deformable", argv: list | None = None):
        """Start the registration of ``pre_node`` (and its prior, by the structure table) onto
        ``mid_node`` in a worker; poll as for Apply, then :meth:`import_registration`."""
        from .prior_registration import register_request

        for node, what in ((mid_node, "mid-RT T2"), (pre_node, "pre-RT T2")):
            if node is None:
                raise InputError(f"no {what} volume selected", None, f"select the {what} in the Inputs section")
        run = self._start(lambda work, out: register_request(mid_node, pre_node, prior_node, structures, mode,
                                                             work, out), argv)   # a new worker: no warm session
        self.reference_id = mid_node.GetID()
        self.register_nodes = {"mid": mid_node, "pre": pre_node, "prior": prior_node}
        return run

    def import_registration(self, segmentation=None):
        """After :meth:`start_register` succeeded: the transform nodes and the registered prior
        (:class:`~HNTumorSegLib.scene.prior_registration.RegisteredPrior`)."""
        from .prior_registration import import_registration

        if self.run is None or self.run.state != "succeeded" or not self.register_nodes:
            raise InputError("there is no finished registration to import", None,
                             "press Register pre-RT to mid-RT and wait for it to finish")
        n = self.register_nodes
        try:
            return import_registration(self.scene, self.result_files, n["mid"], n["pre"], n["prior"], segmentation)
        finally:
            self._drop_results()
            self.register_nodes = {}

    def poll(self) -> PollState:
        """Drain the worker's new events (never blocks); what the progress bar and log show."""
        from ..protocol import ErrorEvent, ProgressEvent, ResultEvent

        if self.preparation is not None:
            state = self._poll_preparation(self.preparation)
            if state is not None:
                return state
        run = self.run
        if run is None:
            return PollState(False, "idle")
        events = run.poll()
        log = []
        for ev in events:
            if isinstance(ev, ProgressEvent):
                log.append(f"[{ev.stage} {ev.fraction * 100:5.1f}%] {ev.message}")
            elif isinstance(ev, ResultEvent):
                self.result_files = dict(ev.files)
                log.append("finished: " + ", ".join(f"{k} {v:.1f} s" for k, v in ev.timings.items()
                                                    if isinstance(v, (int, float))))
            elif isinstance(ev, ErrorEvent):
                log.append(f"error ({ev.kind}): {ev.message}")
        if not run.running and run.state != "succeeded":
            self._drop_results()  # failed, crashed, timed out: nothing to import, leave nothing behind
        prog = run.progress
        final = run.final
        error = final.message if isinstance(final, ErrorEvent) else ""
        return PollState(run.running, run.state, prog.stage if prog else "",
                         int(round(100 * prog.fraction)) if prog else 0, prog.message if prog else "", log, error,
                         note=self.note if run.state == "succeeded" else "")

    def cancel(self) -> None:
        """End the worker's process tree (or the preparation: at once, its thread cleans up) and forget its outputs."""
        prep, self.preparation = self.preparation, None
        if prep is not None:
            prep.cancel()           # the thread stops between files and removes the folders
            self.result_dir = None
            return
        if self.run is not None:
            self.run.cancel()
        self._drop_results()

    def _drop_results(self) -> None:
        if self.result_dir is not None:
            shutil.rmtree(self.result_dir, ignore_errors=True)
        self.result_dir = None
        self.result_files = {}

    def import_result(self, name: str = "HNTumorSeg segmentation", node=None):
        """After a successful run: the label map as a segmentation (and the uncertainty map, if any)."""
        if self.run is None or self.run.state != "succeeded":
            raise InputError("there is no finished segmentation to import", None, "press Apply and wait for it to finish")
        reference = self.scene.GetNodeByID(self.reference_id)
        labels_path = self.result_files.get(OutputKind.LABELS)
        if not labels_path:
            labels_path = str(self.result_dir / "labels.nii.gz")
        labels = read_image(labels_path, label=True)
        seg = import_label_map(self.scene, labels, reference, name=name, node=node)
        if self.result_files.get(OutputKind.UNCERTAINTY):
            add_uncertainty_volume(self.scene, read_image(self.result_files[OutputKind.UNCERTAINTY]), reference)
        self._drop_results()
        return seg

    # ---- review and export ----------------------------------------------------------------------
    def review(self, seg_node, reference_node, reference=None) -> dict:
        """Volume, lesion and (when ``reference`` is given: label map or segmentation) comparison tables."""
        labels = export_label_map(seg_node, reference_node)
        tables = {"volumes": table_node_from_rows(self.scene, volume_rows(labels), "HNTumorSeg volumes",
                                                  VOLUME_COLUMNS),
                  "lesions": table_node_from_rows(self.scene, lesion_rows(labels), "HNTumorSeg lesions",
                                                  LESION_COLUMNS)}
        if reference is not None:
            ref = self._prior_image(reference, reference_node)
            tables["comparison"] = table_node_from_rows(self.scene, comparison_rows(labels, ref),
                                                        "HNTumorSeg comparison", COMPARISON_COLUMNS)
        for table in tables.values():
            table.SetAttribute("HNTumorSeg.Role", "review")
        return tables

    def export(self, seg_node, reference_node, out_dir: str | os.PathLike, formats: Iterable[str] = ("nifti", "csv"),
               basename: str | None = None, source_files: list | None = None, holes: str = "nested") -> dict:
        """Write the chosen formats into ``out_dir``; returns ``{format: path}``.

        DICOM formats need the source series' files: ``source_files`` (in Slicer: the files of
        the series the volume was loaded from, by its instance UIDs), else the reference
        volume's ``HNTumorSeg.SourceFiles`` attribute (set when it was loaded from a DICOM folder:
        that series' files only). The source is checked before anything is written.
        ``holes``: RTSTRUCT hole style, ``nested`` or ``keyhole``.
        """
        from ..export.nifti import write_label_nifti
        from ..export.stats_csv import write_stats_csv

        formats = list(formats)
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown:
            raise InputError(f"unknown export format {unknown[0]!r}", None, f"choose from {', '.join(EXPORT_FORMATS)}")
        out = export_folder(out_dir)   # an empty folder is refused, not the working directory
        out.mkdir(parents=True, exist_ok=True)
        base = basename or reference_node.GetName()
        labels = export_label_map(seg_node, reference_node)
        source = None
        if "dicom_seg" in formats or "rtstruct" in formats:
            if source_files is None:
                attr = reference_node.GetAttribute("HNTumorSeg.SourceFiles")
                if not attr:
                    raise InputError(f"volume {reference_node.GetName()!r} was not loaded from DICOM", None,
                                     "export NIfTI instead, or load the images from a DICOM folder")
                source_files = attr.split("|")
            from ..export._dicom_source import source_geometry

            source = source_geometry(source_files)  # one checked series, before any file is written
        files = {}
        if "nifti" in formats:
            files["nifti"] = write_label_nifti(labels, out / f"{base}_gtv.nii.gz")
        if "csv" in formats:
            files["csv"] = write_stats_csv(labels, out / f"{base}_stats.csv")
        if "dicom_seg" in formats:
            from ..export.dicom_seg import write_dicom_seg

            files["dicom_seg"] = write_dicom_seg(labels, source, out / f"{base}_seg.dcm")
        if "rtstruct" in formats:
            from ..export.rtstruct import write_rtstruct

            files["rtstruct"] = write_rtstruct(labels, source, out / f"{base}_rtstruct.dcm", holes=holes)
        return files
