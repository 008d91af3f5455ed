"""A GradientSegHNTS-layout nnU-Net folder through `hntumorseg segment`: whole image vs --restrict-to-boxes.

The folder is the test suite's tiny REAL one (``Testing/published_fixture.py``: ResEnc M plans,
``3d_fullres_bs8`` inheriting ``3d_fullres``, stock nnUNetTrainer, channels T2 + gradient, patch
16 x 48 x 48, trained 8 iterations): the network is tiny, so the numbers measure the pipeline around
it (reading, the seed-003 gradient map, nnU-Net's preprocessing, the sliding window's tile count,
export), not a full-size ResEnc M. Case: a mid-RT phantom of 48 x 256 x 256 voxels at
0.9 x 0.9 x 3 mm (the plans' spacing: no resampling) with its registered pre-RT mask.

Each mode is the real command line (``python -m HNTumorSegLib segment ... --device cpu --no-tta``) run
from a child Python process, so ``ru_maxrss`` of its children is the worker's peak RSS for that mode
alone. Wall time is the whole command (start-up, model load, gradient map, prediction, writing).

Usage:
    python bench/bench_published_midrt.py [--threads 2]
Writes bench/results/published_midrt.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "Testing")]

SHAPE = (48, 256, 256)
SPACING = (0.9, 0.9, 3.0)
CACHE = REPO / "build" / "bench-cache" / "published_midrt"


def prepare() -> tuple[Path, Path, Path]:
    """(results folder, T2 path, prior path): the folder from the test cache, the case written once."""
    from published_fixture import build_gradientseg_results

    folder = build_gradientseg_results(REPO / "build" / "test-cache")
    t2, prior = CACHE / "t2.nii.gz", CACHE / "prior.nii.gz"
    if not (t2.exists() and prior.exists()):
        from HNTumorSegLib.image import write_image
        from HNTumorSegLib.phantoms import make_midrt_case

        CACHE.mkdir(parents=True, exist_ok=True)
        case = make_midrt_case(seed=7, shape=SHAPE, spacing=SPACING)
        write_image(case["midRT_T2"], t2)
        write_image(case["preRT_mask_registered"], prior)
    return folder, t2, prior


def child(mode: str, folder: str, t2: str, prior: str, out: str, threads: int) -> dict:
    argv = [sys.executable, "-m", "HNTumorSegLib", "segment", "--task", "midrt", "--model", folder,
            "--input", f"T2={t2}", "--prior", prior, "--output", out, "--device", "cpu", "--no-tta",
            "--progress", "json"]
    if mode == "restrict-to-boxes":
        argv.append("--restrict-to-boxes")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(REPO))
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    import numpy as np

    from HNTumorSegLib.image import read_image

    import re

    labels = read_image(out, label=True).array
    tiles = [int(n) for n in re.findall(r"tile \d+/(\d+)", proc.stdout)]
    return {"mode": mode, "seconds_wall": round(seconds, 2), "tiles": max(tiles) if tiles else None,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
            "foreground_voxels": int(np.count_nonzero(labels))}


def run_child(mode: str, folder: Path, t2: Path, prior: Path, threads: int) -> dict:
    out = CACHE / f"labels_{mode}.nii.gz"
    code = ("import json, sys; sys.path[:0] = %r; import bench_published_midrt as b; "
            "print(json.dumps(b.child(%r, %r, %r, %r, %r, %d)))"
            % ([str(REPO), str(HERE)], mode, str(folder), str(t2), str(prior), str(out), threads))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from _machine import load_note, machine_info, machine_line

    info = machine_info()
    folder, t2, prior = prepare()
    runs = {m: run_child(m, folder, t2, prior, args.threads) for m in ("whole-image", "restrict-to-boxes")}
    info_end = machine_info()
    info["load_average_at_end"] = info_end["load_average_1_5_15"]
    result = {"benchmark": "published_midrt", "shape_zyx": SHAPE, "spacing_xyz_mm": SPACING,
              "folder": str(folder.relative_to(REPO)), "threads": args.threads, "machine": info,
              "runs": runs}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "published_midrt.json").write_text(json.dumps(result, indent=2) + "\n")
    w, r = runs["whole-image"], runs["restrict-to-boxes"]
    md = [f"# GradientSegHNTS-layout nnU-Net folder: whole image vs --restrict-to-boxes "
          f"({SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} @ {SPACING[0]}x{SPACING[1]}x{SPACING[2]} mm, CPU)", "",
          f"Machine: {machine_line(info)}; load average at end {info['load_average_at_end']}. "
          f"{load_note(info)}", "",
          "| mode | wall time (s) | sliding-window tiles | worker peak RSS (GB) | labelled voxels |",
          "|---|---|---|---|---|",
          f"| whole image (default) | {w['seconds_wall']} | {w['tiles']} | {w['peak_rss_gb']} | {w['foreground_voxels']} |",
          f"| --restrict-to-boxes | {r['seconds_wall']} | {r['tiles']} | {r['peak_rss_gb']} | {r['foreground_voxels']} |",
          "",
          "The network is the test suite's tiny trained folder (patch 16x48x48), so the times are the pipeline's. "
          "For an nnU-Net folder `--restrict-to-boxes` is a CPU fast path: nnU-Net's own preprocessing still runs "
          "on the whole image (its z-score statistics and crop are unchanged), then only the sliding window's "
          "tiles touching the boxes (+5 mm, mapped onto nnU-Net's preprocessed grid) run; they are the whole-image "
          "run's own tiles, so inside the boxes the labels equal the whole-image run's "
          "(Testing/test_nnunet_restrict_fast.py). Labels outside the boxes (+5 mm) are background: lesions "
          "outside the boxes are lost.",
          ""]
    (HERE / "results" / "published_midrt.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
