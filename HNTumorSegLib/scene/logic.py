"""The Slicer module's logic without Qt: parameters, the background run, import, review, export.

The widget (``HNTumorSeg/HNTumorSeg.py``) binds its controls to a :class:`Parameters` and calls
this class; a ``QTimer`` calls :meth:`HNTumorSegLogic.poll` every 200 ms. Nothing here blocks
for long: :meth:`start` writes the inputs (a few MB of NIfTI) and starts the worker process
(:class:`HNTumorSegLib.runner.WorkerRun`); :meth:`poll` only drains the events the runner's
reader threads queued (milliseconds, measured by ``bench/bench_poll.py``).

Quality (the widget's switch): ``fast`` = one fold (the model's first), no test-time
augmentation; ``full`` = all folds and TTA (flips on the model's ``tta_axes``).

Example (a whole session, as ``Testing/test_scene_session.py`` runs it):
    >>> logic = HNTumorSegLogic(scene)
    >>> nodes = load_case_folder(scene, "cohort/1")
    >>> rois = logic.boxes_from_prior(nodes["preRT_mask_registered"], nodes["midRT_T2"])
    >>> params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()}, model="demo-midrt")
    >>> logic.start(params)
    >>> while logic.running: logic.poll(); time.sleep(0.2)
    >>> seg = logic.import_result()
    >>> logic.review(seg, nodes["midRT_T2"], reference=nodes["midRT_mask"])
    >>> logic.export(seg, nodes["midRT_T2"], "out/", formats=("nifti", "csv"))
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
from ..prompts.boxes import boxes_from_mask, write_boxes
from .inputs import TASK_INPUTS, TASK_PRIOR, TASKS
from .mrml import image_from_volume_node
from .review import (COMPARISON_COLUMNS, LESION_COLUMNS, VOLUME_COLUMNS, comparison_rows, lesion_rows,
                     table_node_from_rows, volume_rows)
from .roi_boxes import boxes_from_roi_nodes, lesion_roi_nodes, roi_nodes_from_boxes
from .segmentation_io import add_uncertainty_volume, export_label_map, import_label_map

QUALITIES = {"fast": {"folds": [0], "tta": False}, "full": {"folds": "all", "tta": True}}
DEVICES = ("auto", "cpu", "cuda", "mps")
EXPORT_FORMATS = ("nifti", "dicom_seg", "rtstruct", "csv")


@dataclass
class Parameters:
    """What the widget's controls hold (node IDs, not nodes: a parameter node stores strings)."""

    task: str = "prert"
    inputs: dict = field(default_factory=dict)  # role -> volume node ID
    prior: str = ""                               # node ID of a label map or segmentation (midrt)
    model: str = ""                               # catalogue id or folder
    device: str = "auto"
    quality: str = "fast"
    use_boxes: bool = True                        # send the scene's lesion boxes with the request
    uncertainty: bool = False                     # also ask for the voxel-wise uncertainty map

    def check(self, scene) -> None:
        """Refuse what cannot run, with a fix the user can apply in the panel."""
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}", None, f"choose one of {', '.join(TASKS)}")
        for role in TASK_INPUTS[self.task]:
            if not self.inputs.get(role) or scene.GetNodeByID(self.inputs[role]) is None:
                raise InputError(f"no {role} volume selected", None, f"select the {role} volume in the Inputs section")
        if TASK_PRIOR[self.task] and (not self.prior or scene.GetNodeByID(self.prior) is None):
            raise InputError("no pre-RT prior selected", None,
                             "select the registered pre-RT mask (label map or segmentation) as the prior")
        if not self.model:
            raise InputError("no model selected", None, "choose a model in the Model section")
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}", None, f"choose one of {', '.join(DEVICES)}")
        if self.quality not in QUALITIES:
            raise InputError(f"unknown quality {self.quality!r}", None, "choose fast or full")


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


class HNTumorSegLogic:
    """Scene-side logic of the module. One run at a time."""

    def __init__(self, scene, python: str | None = None, timeout_s: float | None = 3600.0):
        self.scene = scene
        self.python = python
        self.timeout_s = timeout_s
        self.run = None
        self.result_dir: Path | None = None
        self.reference_id: str = ""
        self.result_files: dict = {}

    # ---- boxes ------------------------------------------------------------------------------
    def boxes_from_prior(self, prior_node, reference_node, margin_vox: int = 3, replace: bool = True) -> list:
        """One ROI per lesion of the prior (label map or segmentation), ``margin_vox`` voxels of margin.

        ``margin_vox=3``: the middle of seed 003's 2-6 voxel training perturbation, so a box drawn
        from the registered prior looks like the boxes the model saw in training.
        """
        prior = self._prior_image(prior_node, reference_node)
        if replace:
            for node in lesion_roi_nodes(self.scene):
                self.scene.RemoveNode(node)
        return roi_nodes_from_boxes(self.scene, boxes_from_mask(prior, margin_vox=margin_vox))

    def _prior_image(self, prior_node, reference_node):
        if prior_node.IsA("vtkMRMLSegmentationNode"):
            return export_label_map(prior_node, reference_node)
        img = image_from_volume_node(prior_node)
        check_labels(img, path=None)
        return img

    # ---- the run ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def build_request(self, params: Parameters, work: Path, out: Path) -> dict:
        """Write the inputs, prior and boxes under ``work``; the request dict (DESIGN.md worker protocol)."""
        params.check(self.scene)
        inputs = {}
        for role in TASK_INPUTS[params.task]:
            path = work / f"{role}.nii.gz"
            write_image(image_from_volume_node(self.scene.GetNodeByID(params.inputs[role])), path)
            inputs[role] = str(path)
        reference = self.scene.GetNodeByID(params.inputs[TASK_INPUTS[params.task][0]])
        prior = None
        if TASK_PRIOR[params.task]:
            prior = str(write_image(self._prior_image(self.scene.GetNodeByID(params.prior), reference),
                                    work / "prior.nii.gz"))
        boxes = None
        rois = lesion_roi_nodes(self.scene) if params.use_boxes else []
        if rois:
            boxes = str(write_boxes(boxes_from_roi_nodes(rois), work / "boxes.json"))
        q = QUALITIES[params.quality]
        return {"task": params.task, "inputs": inputs, "prior": prior, "boxes": boxes, "model": params.model,
                "device": params.device, "folds": q["folds"], "tta": q["tta"],
                "output": str(out / "labels.nii.gz"),
                "uncertainty": str(out / "uncertainty.nii.gz") if params.uncertainty else None}

    def start(self, params: Parameters, argv: list | None = None):
        """Write the request and start the worker; returns the :class:`WorkerRun`. Raises InputError."""
        from ..runner import WorkerRun

        if self.running:
            raise InputError("a segmentation is already running", None, "wait for it or press Cancel")
        self._drop_results()
        run = WorkerRun(python=self.python, timeout_s=self.timeout_s, argv=argv)
        # results go beside, not inside, the run's temp folder: the runner removes that in every ending
        self.result_dir = Path(tempfile.mkdtemp(prefix="hntumorseg-result-"))
        try:
            request = self.build_request(params, run.temp_dir, self.result_dir)
        except BaseException:
            run.close()
            self._drop_results()
            raise
        self.reference_id = params.inputs[TASK_INPUTS[params.task][0]]
        self.run = run.start(request)
        return self.run

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
        labels_path = self.result_files.get("labels") or self.result_files.get("output")
        if not labels_path:
            labels_path = str(self.result_dir / "labels.nii.gz")
        labels = read_image(labels_path, label=True)
        seg = import_label_map(self.scene, labels, reference, name=name, node=node)
        if self.result_files.get("uncertainty"):
            add_uncertainty_volume(self.scene, read_image(self.result_files["uncertainty"]), reference)
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
               basename: str | None = None, source_files: list | None = None) -> dict:
        """Write the chosen formats into ``out_dir``; returns ``{format: path}``.

        DICOM formats need the source series' files: ``source_files``, else the reference
        volume's ``HNTumorSeg.SourceFiles`` attribute (set when it was loaded from a DICOM folder).
        """
        from ..export.nifti import write_label_nifti
        from ..export.stats_csv import write_stats_csv

        formats = list(formats)
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown:
            raise InputError(f"unknown export format {unknown[0]!r}", None, f"choose from {', '.join(EXPORT_FORMATS)}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        base = basename or reference_node.GetName()
        labels = export_label_map(seg_node, reference_node)
        files = {}
        if "nifti" in formats:
            files["nifti"] = write_label_nifti(labels, out / f"{base}_gtv.nii.gz")
        if "csv" in formats:
            files["csv"] = write_stats_csv(labels, out / f"{base}_stats.csv")
        if "dicom_seg" in formats or "rtstruct" in formats:
            if source_files is None:
                attr = reference_node.GetAttribute("HNTumorSeg.SourceFiles")
                if not attr:
                    raise InputError(f"volume {reference_node.GetName()!r} was not loaded from DICOM", None,
                                     "export NIfTI instead, or load the images from a DICOM folder")
                source_files = attr.split("|")
            if "dicom_seg" in formats:
                from ..export.dicom_seg import write_dicom_seg

                files["dicom_seg"] = write_dicom_seg(labels, source_files, out / f"{base}_seg.dcm")
            if "rtstruct" in formats:
                from ..export.rtstruct import write_rtstruct

                files["rtstruct"] = write_rtstruct(labels, source_files, out / f"{base}_rtstruct.dcm")
        return files
