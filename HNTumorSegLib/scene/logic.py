"""The Slicer module's logic without Qt: parameters, the background run, import, review, export.

The widget (``HNTumorSeg/HNTumorSeg.py``) binds its controls to a :class:`Parameters` and calls
:class:`SegmentationSceneLogic` (through the Slicer module's logic, which hands each action to it);
a ``QTimer`` calls :meth:`SegmentationSceneLogic.poll` every 200 ms. Nothing here blocks
for long: :meth:`start` writes the inputs (a few MB of NIfTI) and starts the worker process
(:class:`HNTumorSegLib.runner.WorkerRun`); :meth:`poll` only drains the events the runner's
reader threads queued (milliseconds, measured by ``bench/bench_poll.py``).

Quality (the widget's switch, :class:`~HNTumorSegLib.vocab.Quality`): ``fast`` = one fold, the
first the model has (:meth:`Folds.first <HNTumorSegLib.folds.Folds.first>`: fold 0, or fold 1 of
a model trained on folds 1-4, or ``fold_all``), no test-time augmentation; ``full`` = all folds
and TTA (flips on the model's ``tta_axes``). The request is a
:class:`~HNTumorSegLib.pipeline.request.SegmentRequest`, built and checked here.

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
    >>> _ = logic.start(params)                                    # a worker process
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
from typing import Iterable

from ..errors import InputError
from ..image import check_labels, read_image, write_image
from ..folds import Folds
from ..pipeline.request import SegmentRequest
from ..prompts.boxes import boxes_from_mask, write_boxes
from ..vocab import AlignPet, ExportFormat, OutputKind, Quality, Task, parse_device
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


class SegmentationSceneLogic:
    """Scene-side logic of the Slicer module (no Qt): inputs from MRML nodes, the background run,
    import, review and export. One run at a time. The Slicer module's ``HNTumorSegLogic``
    hands each widget action to it (``HNTumorSeg/HNTumorSeg.py``)."""

    def __init__(self, scene, python: str | None = None, timeout_s: float | None = 3600.0):
        self.scene = scene
        self.python = python
        self.timeout_s = timeout_s
        self.run = None
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
        return self.run is not None and self.run.running

    def build_request(self, params: Parameters, work: Path, out: Path) -> SegmentRequest:
        """Write the inputs, prior and boxes under ``work``; the :class:`SegmentRequest` for the worker."""
        params.check(self.scene)
        inputs = {}
        for role in TASK_INPUTS[params.task]:
            path = work / f"{role}.nii.gz"
            node = self.scene.GetNodeByID(params.inputs[role])   # the PET in SUVbw (issue 24)
            write_image(request_input_image(node, role, self.file_for_instance), path)
            inputs[role] = str(path)
        reference = self.scene.GetNodeByID(params.inputs[TASK_INPUTS[params.task][0]])
        prior = None
        if TASK_PRIOR[params.task]:
            prior = str(write_image(self._prior_image(self.scene.GetNodeByID(params.prior), reference,
                                                      params.prior_structures), work / "prior.nii.gz"))
        boxes = None
        rois = lesion_roi_nodes(self.scene) if params.use_boxes else []
        if rois:
            boxes = str(write_boxes(boxes_from_roi_nodes(rois), work / "boxes.json"))
        folds, tta = quality_settings(params.quality)
        return SegmentRequest(task=params.task, input_paths=inputs, prior_path=prior, boxes_path=boxes,
                              model=params.model, device=params.device, folds=folds, tta=tta, align_pet=params.align_pet,
                              output_path=str(out / "labels.nii.gz"),
                              restrict_to_boxes=Quality.parse(params.quality) is Quality.FAST,  # CPU fast path
                              uncertainty_path=str(out / "uncertainty.nii.gz") if params.save_uncertainty else None)

    def start(self, params: Parameters, argv: list | None = None):
        """Write the request and start the worker; returns the :class:`WorkerRun`. Raises InputError."""
        run = self._start(lambda work, out: self.build_request(params, work, out), argv, self.run_factory)
        self.reference_id = params.inputs[TASK_INPUTS[params.task][0]]
        return run

    def _start(self, build, argv: list | None, factory=None):
        from ..runner import WorkerRun

        if self.running:
            raise InputError("a segmentation is already running", None, "wait for it or press Cancel")
        self._drop_results()
        self.register_nodes = {}
        run = (factory or WorkerRun)(python=self.python, timeout_s=self.timeout_s, argv=argv)
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
                         int(round(100 * prog.fraction)) if prog else 0, prog.message if prog else "", log, error)

    def cancel(self) -> None:
        """End the worker's process tree and forget its outputs."""
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
