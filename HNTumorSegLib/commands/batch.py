"""`hntumorseg batch`: segment a cohort, evaluate it, write a QA report. Resumable.

    hntumorseg batch --layout {hntsmrg,hecktor,folder,dicom} --data DIR --model M --out DIR
                     [--task prert|midrt|petct] [--workers N] [--cluster auto|ray://host:port]
                     [--device auto|cpu|cuda|mps] [--folds all|first|fold_all|0,1] [--tta] [--labels DIR]
                     [--dicom-out [--holes nested|keyhole]] [--align-pet auto|off|force]

Each case runs in its own worker process (:mod:`HNTumorSegLib.worker`), N at a time, or as
Ray tasks with ``--cluster``. Predictions go where the challenge expects them
(:func:`HNTumorSegLib.datasets.prediction_path`); finished cases (prediction + done-marker
with the same settings) are skipped, so rerunning after an interruption continues the cohort.
When references exist: ``<out>/metrics.json`` and a table on stdout. Always:
``<out>/report/index.html`` (worst cases first) and ``<out>/batch.json`` (per-case status).
Exit code 0 when every case succeeded, 1 when some failed, 2 for bad input.

``--layout dicom`` (:mod:`HNTumorSegLib.dicom.studies`): one DICOM study folder per case; with
``--dicom-out`` each case also gets ``<out>/<ID>_rtstruct.dcm`` and ``<out>/<ID>_seg.dcm`` on
its source series (checked for every case before any work, written once its labels exist).

Example:
    $ hntumorseg batch --layout hntsmrg --data HNTSMRG24_train --model demo-midrt --out preds --workers 2
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

from ..errors import EXIT_OK, EXIT_SOME_FAILED, InputError
from ..fileio import os_error, write_json_atomic
from ..folds import ACCEPTED_FORMS, parse_folds
from ..outlock import OutputLock
from ..protect import check_inputs_regular, check_outputs, protected_folders
from ..protocol import ErrorEvent, ResultEvent
from ..vocab import AlignPet, Checkpoint, Layout, RegistrationMode, Task, parse_device
from .export import ExportIncomplete
from .segment import add_align_pet_argument, add_checkpoint_argument


def add_arguments(parser) -> None:
    parser.add_argument("--layout", required=True, choices=Layout.values(), help="how the cohort is stored")
    parser.add_argument("--data", required=True, help="the cohort's root folder")
    parser.add_argument("--model", required=True, metavar="ID_OR_PATH",
                        help="as for segment: a path (with a / or starting with ./) is a folder; "
                             "a bare name is a catalogue id first, then a folder of that name here")
    parser.add_argument("--out", required=True, help="output folder (predictions, metrics.json, report/)")
    parser.add_argument("--task", metavar="{" + ",".join(Task.values()) + "}", default=None,
                        help="task (default: petct for hecktor, else the model card's task)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes at once (default 1)")
    parser.add_argument("--cluster", default=None, metavar="auto|ray://HOST:PORT",
                        help="run the cases as Ray tasks (needs the ray extra; data and --out on a shared file system)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default auto)")
    parser.add_argument("--folds", default="all", help=f"{ACCEPTED_FORMS} (default all)")
    add_checkpoint_argument(parser)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="mirroring test-time augmentation (about 8x the inference time on a CPU); "
                             "default: the model's (on where its seed ran it)")
    parser.add_argument("--labels", default=None, help="folder layout: folder of reference <ID>.nii.gz")
    parser.add_argument("--register-prior", nargs="?", const="deformable", default=None,
                        metavar="{" + ",".join(RegistrationMode.values()) + "}",
                        help="hntsmrg layout, midrt: an unregistered cohort - register each case's pre-RT T2 and "
                             "contours (<ID>_preRT_mask.nii.gz or .dcm) onto its mid-RT T2 first (default deformable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per case before it is stopped")
    parser.add_argument("--python", default=None, help="Python interpreter for the workers (default: this one)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML QA report")
    parser.add_argument("--dicom-out", action="store_true",
                        help="dicom layout: also write <ID>_rtstruct.dcm and <ID>_seg.dcm on each case's source series")
    parser.add_argument("--holes", default="nested", metavar="nested|keyhole",
                        help="with --dicom-out: RTSTRUCT holes (default nested)")
    add_align_pet_argument(parser)


def _evaluate(cases, outcomes) -> dict | None:
    """Score every case that has a reference and a prediction; None when no case has a reference."""
    from ..image import read_image
    from ..metrics import CohortScorer, warn_to_stderr

    scorer = CohortScorer(warn=warn_to_stderr)
    for c in cases:
        if c.reference_path and c.prediction_path.is_file() and (c.case_id not in outcomes or outcomes[c.case_id].ok):
            scorer.add(c.case_id, read_image(c.prediction_path, label=True, name=f"prediction of case {c.case_id}"),
                       read_image(c.reference_path, label=True, name=f"reference of case {c.case_id}"))
    return scorer.result() if scorer.cases else None


def _check_device(text: str) -> str:
    """The device, canonical; an explicitly asked device that is absent is a DeviceError now, not per case."""
    from ..inference.devices import resolve_device

    device = parse_device(text)
    resolve_device(device)
    return device


def _check_paths(cases, out: Path, data: Path, labels: Path | None, model: str) -> None:
    """Protected paths (:mod:`HNTumorSegLib.protect`): ``--out`` is not the data, label or model
    folder, no prediction or report file is an input or a reference, every input is a regular file."""
    folders = protected_folders([("the data folder (--data)", data), ("the label folder (--labels)", labels)])
    trees = {"the model folder": model} if Path(model).exists() else {}
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for c in cases:
        for name, path in c.input_paths.items():
            inputs[f"the {name} input of case {c.case_id}"] = path
        if c.prior_path:
            inputs[f"the prior of case {c.case_id}"] = c.prior_path
        if c.prior_image_path:   # --register-prior: the pre-RT T2
            inputs[f"the pre-RT image of case {c.case_id}"] = c.prior_image_path
        if c.reference_path:
            inputs[f"the reference of case {c.case_id}"] = c.reference_path
        outputs[f"the prediction of case {c.case_id}"] = str(c.prediction_path)
    for name in ("metrics.json", "batch.json"):
        outputs[f"--out's {name}"] = str(out / name)
    check_inputs_regular(inputs)
    check_outputs({}, {}, folders, trees, output_folders={"--out": out})
    check_outputs(outputs, inputs, trees=trees)


def _plan_dicom_outputs(args, cases, out: Path, model: str, device: str, folds) -> dict:
    """``--dicom-out``: each case's source series checked now (:class:`.export.DicomOutputs`); ``{case_id: plan}``."""
    if not getattr(args, "dicom_out", False):
        return {}
    from ..batch.cohort import build_request
    from .export import DicomOutputs

    return {c.case_id: DicomOutputs.plan(build_request(c, model, device=device, folds=folds),
                                         str(out / f"{c.case_id}_rtstruct.dcm"), str(out / f"{c.case_id}_seg.dcm"),
                                         args.holes) for c in cases}


def run(args) -> int:
    from ..batch.cohort import discover_cases, resolve_task
    from ..batch.resume import check_same_cohort, cohort_identity

    # Everything a case would fail on is checked here, once, before any work (issue 11): exit 2.
    if args.workers < 1:
        raise InputError(f"--workers {args.workers} must be at least 1", None, "e.g. --workers 2")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise InputError(f"--timeout {args.timeout:g} must be a positive number of seconds", None, "e.g. --timeout 3600")
    if getattr(args, "dicom_out", False) and args.layout != "dicom":
        raise InputError(f"--dicom-out needs --layout dicom, not {args.layout}", None,
                         "give the cohort as one DICOM study folder per case (--layout dicom)")
    AlignPet.parse(getattr(args, "align_pet", None) or AlignPet.AUTO, "--align-pet")   # exit 2 before any work
    folds = parse_folds(args.folds)   # also checked per case by SegmentRequest; here once, before any work
    args.checkpoint = Checkpoint.parse_optional(getattr(args, "checkpoint", None), "--checkpoint")   # the same
    device = _check_device(args.device) if not args.cluster else parse_device(args.device)
    # Absolute paths: the requests must mean the same on a cluster node with another cwd.
    out = Path(args.out).absolute()
    data = Path(args.data).absolute()
    labels = Path(args.labels).absolute() if args.labels else None
    task = resolve_task(args.layout, args.task, args.model)
    cases = discover_cases(args.layout, data, out, task, labels=labels,
                           register_prior=getattr(args, "register_prior", None))
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    _check_paths(cases, out, data, labels, model)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, out, "create the output folder") from None
    # one run per --out at a time, and only this cohort's runs in it (issue 22); the lock goes in every ending
    with OutputLock(out, "--out", "batch"):
        identity = cohort_identity(args.layout, data, task, [c.case_id for c in cases])
        check_same_cohort(out, identity)
        return _run_cases(args, cases, out, task, model, device, folds, identity)


def _run_cases(args, cases, out: Path, task: str, model: str, device: str, folds, identity: dict) -> int:
    """The cohort's work once ``--out`` is ours: run what is not done, score, report, ``batch.json``."""
    from ..batch.cohort import build_request
    from ..batch.local import Job, log_line, run_local
    from ..batch.resume import COHORT_KEYS, fingerprint, is_done, read_marker
    from ..metrics import format_table, write_json
    from ..report.qa_report import QACase, write_qa_report

    dicom_plans = _plan_dicom_outputs(args, cases, out, model, device, folds)  # checked before any work
    jobs, skipped = [], []
    for c in cases:
        request = replace(build_request(c, model, device=device, folds=folds, tta=args.tta),
                          align_pet=getattr(args, "align_pet", None) or AlignPet.AUTO,
                          checkpoint=getattr(args, "checkpoint", None))
        fp = fingerprint(request)
        if is_done(out, c.case_id, c.prediction_path, fp):
            skipped.append(c.case_id)
        else:
            jobs.append(Job(c.case_id, request, str(c.prediction_path), fp))
    log_line("batch", f"{len(cases)} cases ({task}), {len(skipped)} already done, {len(jobs)} to run"
                      + (f" on {args.cluster}" if args.cluster else f" with {args.workers} worker(s)"))
    t0 = time.monotonic()
    if not jobs:
        outcomes = {}
    elif args.cluster:
        from ..batch.ray_backend import run_ray

        outcomes = run_ray(jobs, out, address=args.cluster, python=args.python, timeout_s=args.timeout)
    else:
        outcomes = run_local(jobs, out, workers=args.workers, python=args.python, timeout_s=args.timeout)
    wall = time.monotonic() - t0
    dicom_errors: dict[str, str] = {}
    for c in cases:  # DICOM objects of every case that has its prediction now (run or skipped as done)
        o = outcomes.get(c.case_id)
        if c.case_id in dicom_plans and c.prediction_path.is_file() and (o is None or o.ok):
            try:
                dicom_plans[c.case_id].write(c.prediction_path)
            except ExportIncomplete as exc:   # that case fails; its other format and the other cases go on (issue 25)
                dicom_errors[c.case_id] = str(exc)

    result = _evaluate(cases, outcomes)
    if result is not None:
        write_json(result, out / "metrics.json")
        print(format_table(result))

    qa, summary = [], {}
    for c in cases:
        o = outcomes.get(c.case_id)
        final = None if o is None else o.final
        error = f"{final.kind}: {final.message}" if isinstance(final, ErrorEvent) else None
        error = error or (f"dicom: {dicom_errors[c.case_id]}" if c.case_id in dicom_errors else None)
        marker = read_marker(out, c.case_id) or {}
        seconds = o.seconds if o is not None else (marker.get("timings") or {}).get("total")
        metrics = (result or {}).get("cases", {}).get(c.case_id)
        qa.append(QACase(c.case_id, image=next(iter(c.input_paths.values())), prediction=str(c.prediction_path)
                         if c.prediction_path.is_file() else None, reference=c.reference_path, metrics=metrics,
                         error=error, seconds=seconds,
                         regions=list(((final.info or {}).get("regions") or []) if isinstance(final, ResultEvent) else []),
                         alignment=(final.info or {}).get("alignment") if isinstance(final, ResultEvent) else None))
        summary[c.case_id] = {"status": "skipped" if c.case_id in skipped else ("ok" if error is None else "failed"),
                              "error": error, "seconds": seconds, "prediction": str(c.prediction_path)}
        if qa[-1].alignment:   # the PET placed on the CT: gate, transform, overlaps (issue 24)
            summary[c.case_id]["alignment"] = qa[-1].alignment
        registration = (final.info or {}).get("registration") if isinstance(final, ResultEvent) else None
        if registration:   # --register-prior: the pre-RT -> mid-RT registration's quality (issue 23)
            summary[c.case_id]["registration"] = registration
        warnings = list(final.info.get("warnings") or []) if isinstance(final, ResultEvent) else []
        if warnings:   # constant image, smaller than a patch ... (issue 11): in the report and the log
            summary[c.case_id]["warnings"] = warnings
            for warning in warnings:
                log_line(c.case_id, f"warning: {warning}")
    failed = [k for k, v in summary.items() if v["status"] == "failed"]
    write_json_atomic(out / "batch.json", {**{k: identity[k] for k in COHORT_KEYS}, "model": args.model,
                                           "labels": str(Path(args.labels).absolute()) if args.labels else None,
                                           "workers": args.workers, "cluster": args.cluster,
                                           "wall_s": round(wall, 2), "cases": summary}, indent=1)
    if not args.no_report:
        page = write_qa_report(out / "report", qa, aggregate=(result or {}).get("aggregate"),
                               title=f"HNTumorSeg QA - {task} - {Path(str(args.model)).name}",
                               notes=f"model {Path(str(args.model)).name}, {len(cases)} cases")
        log_line("batch", f"QA report: {page}")
    log_line("batch", f"{len(cases) - len(failed)} of {len(cases)} cases done in {wall:.1f} s"
                      + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_SOME_FAILED if failed else EXIT_OK
