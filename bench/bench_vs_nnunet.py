"""Our nnU-Net folder inference side by side with nnUNetPredictor: agreement and time, on a CPU.

The folder is the tiny but real nnU-Net v2 folder the test suite trains
(Testing/nnunet_fixture.py: 2 folds, CT+PET, PlainConvUNet, anisotropic spacing); the case is
its first held-out case (other spacing than the plan, so resampling runs both ways). No TTA,
both folds, CPU. Every run is a fresh Python process, so start-up is measured too:

* ``nnunet``: ``nnUNetPredictor.predict_from_files`` with nnUNetv2_predict's defaults
  (3 preprocessing and 3 export worker processes), as a user runs it;
* ``nnunet_seq``: ``nnUNetPredictor.predict_from_files_sequential`` (no worker processes:
  nnU-Net's own fastest path for one case);
* ``ours``: ``load_nnunet_model``, ``read_image`` of each input (one decode, the input checks), then
  ``predict_nnunet_case`` on those images (nnU-Net's preprocessing from the arrays, not the files
  again - issue 27 -, our sliding window, nnU-Net's export).

Reported per mode: import time, folder loading, prediction (reading, preprocessing, network,
export, writing) and the whole process wall time, median of ``--repeats`` runs in alternating
order; voxel agreement of the written label maps.

Usage:
    python bench/bench_vs_nnunet.py [--repeats 3] [--threads 2]
Writes bench/results/vs_nnunet.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "Testing"), str(HERE)]
MODES = ("nnunet", "nnunet_seq", "ours")


def child(mode: str, folder: str, files: list[str], out: str, threads: int) -> dict:
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    if mode == "ours":
        from HNTumorSegLib.image import read_image
        from HNTumorSegLib.inference.nnunet_inference import load_nnunet_model, predict_nnunet_case
    else:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    t_import = time.perf_counter() - t0
    t = time.perf_counter()
    if mode == "ours":
        model = load_nnunet_model(folder, folds=(0, 1))
    else:
        pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                               perform_everything_on_device=True, device=torch.device("cpu"),
                               verbose=False, allow_tqdm=False)
        pred.initialize_from_trained_model_folder(folder, use_folds=(0, 1))
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    timings = {}
    if mode == "ours":
        # num_threads left to the TiledPredictor: it times 2 threads against 1 on the first tiles
        images = [read_image(f, name=f"input {i}") for i, f in enumerate(files)]   # read once, checked
        res = predict_nnunet_case(model, images, device="cpu", tta=False, output_file=out + ".nii.gz")
        timings = {k: round(v, 3) for k, v in res.timings.items()}
    elif mode == "nnunet":
        pred.predict_from_files([files], [out], save_probabilities=False, overwrite=True,
                                num_processes_preprocessing=3, num_processes_segmentation_export=3)
    else:
        pred.predict_from_files_sequential([files], [out], save_probabilities=False, overwrite=True)
    t_predict = time.perf_counter() - t
    return {"import_s": round(t_import, 3), "load_s": round(t_load, 3), "predict_s": round(t_predict, 3),
            "in_process_s": round(time.perf_counter() - t0, 3), "stages": timings}


def run_child(mode: str, folder: Path, files: list, out: Path, threads: int) -> dict:
    env = {**os.environ, "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "8")}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--folder", str(folder), "--out", str(out),
                           "--threads", str(threads), *["--file=" + str(f) for f in files]],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = round(wall, 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--folder")
    ap.add_argument("--out")
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.file, args.out, args.threads)))
        return

    import numpy as np
    import SimpleITK as sitk
    from _machine import load_note, machine_info, machine_line
    from nnunet_fixture import build_tiny_nnunet_results, tiny_nnunet_test_cases

    cache = Path(os.environ.get("HNTUMORSEG_TEST_CACHE") or REPO / "build" / "test-cache")
    folder = build_tiny_nnunet_results(cache)
    files = tiny_nnunet_test_cases(folder)[0]
    work = REPO / "build" / "bench-vs-nnunet"
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    runs: dict[str, list] = {m: [] for m in MODES}
    for r in range(args.repeats):
        order = MODES if r % 2 == 0 else tuple(reversed(MODES))
        for m in order:
            runs[m].append(run_child(m, folder, files, work / m, args.threads))
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    def med(m, key):
        return round(statistics.median(x[key] for x in runs[m]), 3)

    segs = {m: sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"{m}.nii.gz"))) for m in MODES}
    agree = {f"ours_vs_{m}": float((segs["ours"] == segs[m]).mean()) for m in ("nnunet", "nnunet_seq")}
    summary = {m: {k: med(m, k) for k in ("import_s", "load_s", "predict_s", "process_wall_s")} for m in MODES}
    ratio = {f"ours_over_{m}_{k}": round(summary["ours"][k] / summary[m][k], 3)
             for m in ("nnunet", "nnunet_seq") for k in ("predict_s", "process_wall_s")}
    labels_present = sorted(int(v) for v in np.unique(segs["ours"]))
    result = {"benchmark": "vs_nnunet", "folder": str(folder.relative_to(REPO)) if folder.is_relative_to(REPO)
              else str(folder), "case": [f.name for f in files], "image_shape_zyx": list(segs["ours"].shape),
              "labels_in_prediction": labels_present, "threads": args.threads, "machine": info,
              "median": summary, "ratios": ratio, "agreement": agree, "runs": runs,
              "goal": "ours <= 0.35 x nnUNetPredictor's whole-process wall time at equal output (issue 27)"}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "vs_nnunet.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# nnU-Net folder inference: ours vs nnUNetPredictor (CPU, no TTA, 2 folds)", "",
        f"Machine: {machine_line(info)}; load average at end {info['load_average_at_end']}. "
        f"torch threads {args.threads}. " + load_note(info),
        f"Folder: tiny real nnU-Net v2 folder from Testing/nnunet_fixture.py; case {files[0].name} "
        f"({'x'.join(map(str, segs['ours'].shape))} voxels, resampled to the plan and back). "
        f"Median of {args.repeats} fresh processes per mode.", "",
        "| mode | import (s) | load folder (s) | predict (s) | whole process (s) |", "|---|---|---|---|---|"]
    for m in MODES:
        s = summary[m]
        lines.append(f"| {m} | {s['import_s']} | {s['load_s']} | {s['predict_s']} | {s['process_wall_s']} |")
    lines += ["",
              f"Voxel agreement ours vs nnUNetPredictor: {agree['ours_vs_nnunet']:.5f} "
              f"(vs sequential path {agree['ours_vs_nnunet_seq']:.5f}); labels in the prediction: {labels_present}.",
              f"Time ratio ours / nnUNetPredictor.predict_from_files: predict {ratio['ours_over_nnunet_predict_s']}, "
              f"whole process {ratio['ours_over_nnunet_process_wall_s']}; ours / predict_from_files_sequential: "
              f"predict {ratio['ours_over_nnunet_seq_predict_s']}, whole process "
              f"{ratio['ours_over_nnunet_seq_process_wall_s']}. Goal (issue 27): whole process <= 0.35 x "
              "nnUNetPredictor's."]
    (HERE / "results" / "vs_nnunet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
