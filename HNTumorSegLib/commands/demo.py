"""`hntumorseg demo`: a synthetic case segmented end to end with the bundled demo model (offline).

    hntumorseg demo [--out DIR] [--task midrt|petct] [--seed N] [--device auto] [--tta] [--force]

``--out`` must be new or empty; ``--force`` writes into a folder that holds files (the demo's
own files there are replaced, others are left alone).

1. makes a phantom (:mod:`HNTumorSegLib.phantoms`; mid-RT by default: the mid-RT T2 and the
   registered pre-RT mask; ``--task petct``: CT + PET) and writes it to ``DIR/inputs/``;
2. segments it through the same path as ``hntumorseg segment`` (mid-RT: boxes from the
   registered prior -> gradient map -> box-restricted inference; PET/CT: head crop ->
   inference) with the bundled model ``demo-<task>`` -> clean-up -> ``DIR/labels.nii.gz``;
3. scores it against the phantom's truth (:func:`HNTumorSegLib.metrics.evaluate_pairs`) ->
   ``DIR/metrics.json``, and draws ``DIR/overlay.png`` (prediction solid, truth dashed);
4. prints a short summary and where the files are.

The demo models are trained on phantoms only (``training/hntumorseg_training/demo_model.py``):
they show the workflow, they are not for patient images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..vocab import OutputKind, ProgressMode, Task

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "hntumorseg-demo"
#: The tasks with a bundled demo model (resources/models/demo-midrt, demo-petct).
DEMO_TASKS = (Task.MIDRT.value, Task.PETCT.value)


def demo_model_folder(task: str) -> Path:
    """The bundled demo model of ``task`` (inside the installed package)."""
    return PACKAGE_DIR / "resources" / "models" / f"demo-{task}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"folder for inputs, labels, overlay and metrics (default ./{DEFAULT_OUT})")
    parser.add_argument("--task", choices=DEMO_TASKS, default=Task.MIDRT.value,
                        help="midrt (mid-RT T2 + registered pre-RT mask, default) or petct (CT + PET)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="mirroring test-time augmentation (8x the time)")
    parser.add_argument("--progress", choices=ProgressMode.values(), default="bar", help="bar (default), json or none")
    parser.add_argument("--force", action="store_true",
                        help="write into --out even when it already holds files (they may be replaced)")


def write_phantom(task: str, seed: int, folder: Path) -> tuple[dict[str, Path], Path | None, Path]:
    """Write the phantom's inputs into ``folder``: (inputs by name, prior or None, truth)."""
    from ..image import write_image
    from ..phantoms import make_midrt_case, make_petct_case

    folder.mkdir(parents=True, exist_ok=True)
    if task == "midrt":
        case = make_midrt_case(seed=seed)
        t2 = write_image(case["midRT_T2"], folder / "midRT_T2.nii.gz")
        prior = write_image(case["preRT_mask_registered"], folder / "preRT_mask_registered.nii.gz")
        truth = write_image(case["midRT_mask"], folder / "midRT_mask_truth.nii.gz")
        return {"T2": t2}, prior, truth
    case = make_petct_case(seed=seed)
    ct = write_image(case["CT"], folder / "CT.nii.gz")
    pet = write_image(case["PET"], folder / "PET.nii.gz")
    truth = write_image(case["mask"], folder / "mask_truth.nii.gz")
    return {"CT": ct, "PET": pet}, None, truth


def run_demo(out: Path, task: str = "midrt", seed: int = 0, device: str = "auto", tta: bool = False,
             progress: str = "bar", stdout=None) -> dict:
    """Run the demo (module docstring); returns ``{"files": ..., "metrics": ..., "seconds": ...}``."""
    from ..errors import InputError
    from ..image import read_image
    from ..metrics import evaluate_pairs, write_json
    from ..overlay import render_overlay
    from ..pipeline.request import SegmentRequest
    from ..worker_cli import raise_for_failure, run_worker

    stdout = stdout or sys.stdout
    t0 = time.perf_counter()
    model = demo_model_folder(task)
    if not (model / "model.json").is_file():
        raise InputError(f"the bundled demo model demo-{task} is missing", model,
                         "reinstall HNTumorSeg, or train it: python -m hntumorseg_training.demo_model "
                         f"--task {task} --out {model}")
    out = Path(out)
    inputs, prior, truth_path = write_phantom(task, seed, out / "inputs")
    request = SegmentRequest(model=str(model), task=task, input_paths={k: str(v) for k, v in inputs.items()},
                             prior_path=str(prior) if prior else None, output_path=str(out / "labels.nii.gz"),
                             device=device, tta=tta,
                             boxes_output_path=str(out / "boxes.json") if task == "midrt" else None)
    result = raise_for_failure(run_worker(request, progress, out=stdout))

    pred = read_image(result.files[OutputKind.LABELS], label=True, name="prediction")
    truth = read_image(truth_path, label=True, name="phantom truth")
    case_id = f"phantom-{task}-{seed}"
    metrics = evaluate_pairs([(case_id, pred, truth)])
    metrics["demo"] = {"task": task, "seed": seed, "model": f"demo-{task}", "timings_s": result.timings,
                       "note": "synthetic phantom and demonstration model: not a clinical result"}
    metrics_path = write_json(metrics, out / "metrics.json")
    reference_image = read_image(inputs["T2" if task == "midrt" else "CT"])
    overlay = render_overlay(reference_image, pred, truth, out / "overlay.png",
                             title=f"hntumorseg demo - {task} phantom {seed} - prediction (solid) vs truth (dashed)",
                             window=None if task == "midrt" else (-160.0, 240.0))  # CT soft-tissue window
    seconds = time.perf_counter() - t0
    files = dict(result.files, overlay=str(overlay), metrics=str(metrics_path), inputs=str(out / "inputs"))
    if progress != "json":
        scores = metrics["cases"][case_id]
        print(f"hntumorseg demo ({task}, phantom seed {seed}, model demo-{task}, {result.info.get('device')}): "
              f"{seconds:.1f} s", file=stdout)
        for name in ("GTVp", "GTVn"):
            s = scores.get(name, {})
            dsc = s.get("DSC")
            print(f"  {name}: DSC {dsc:.3f}, predicted {s.get('volume_pred_ml', 0):.2f} mL, "
                  f"truth {s.get('volume_ref_ml', 0):.2f} mL" if dsc is not None else f"  {name}: no lesion",
                  file=stdout)
        print(f"  labels   {files['labels']}", file=stdout)
        print(f"  overlay  {files['overlay']}", file=stdout)
        print(f"  metrics  {files['metrics']}", file=stdout)
        print(f"  inputs   {files['inputs']}/ (try: hntumorseg segment --help)", file=stdout)
    return {"files": files, "metrics": metrics, "seconds": seconds}


def check_out_folder(out: Path, force: bool) -> None:
    """Refuse a non-empty ``--out`` unless ``--force``: the demo writes inputs/, labels.nii.gz,
    metrics.json ... and must never replace a user's files silently (issue 11)."""
    from ..errors import InputError

    if out.exists() and not out.is_dir():
        from ..protect import check_path_kind

        check_path_kind(out, "--out", "folder", "give a new folder name")   # names a FIFO so (issue 22)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("--out already holds files", out,
                         "give a new or empty folder, or add --force to write into it (its demo files are replaced)")


def run(args: argparse.Namespace) -> int:
    check_out_folder(Path(args.out), bool(getattr(args, "force", False)))
    run_demo(Path(args.out), task=args.task, seed=args.seed, device=args.device, tta=args.tta,
             progress=args.progress)
    return 0
