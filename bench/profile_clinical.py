"""Where a whole-image run's time goes at clinical size (issue 27, Build item 1), per stage and per tile.

Cases, built from the project's phantom generators and resampled onto clinical grids (linear for
images, nearest neighbour for labels; SimpleITK's resampling is deterministic, so the files are
bit-reproducible):

* ``midrt``: a mid-RT T2 80x512x512 at 0.5x0.5x2 mm (+ its registered pre-RT mask as the prior),
  from ``make_midrt_case(seed=0)`` generated over a 256x256x162 mm field of view;
* ``petct``: a CT 300x512x512 at 0.98x0.98x2 mm and a PET 200x200x300 at 4x4x2 mm, from
  ``make_petct_case(seed=0, tall=True)``.

Each case runs once through the worker's pipeline (``run_segmentation``: read and checks,
resampling to the model's grid, derived channels, tiled network, resampling back, post-processing,
writing) with the bundled demo model (demo-midrt / demo-petct: one fold, no TTA - their cards'
defaults), under :mod:`cProfile`. Reported: the pipeline's own stage timers, and from the profile
the cumulative seconds of the functions that make up each stage (reading, resampling, network
forward, accumulation = tile loop minus forward, writing), with shares of the whole run, and per
tile the network and the accumulation time.

Usage:
    python bench/profile_clinical.py [--case midrt petct] [--threads 2]
Writes bench/results/profile_clinical.md and .json (cases not run this time keep their last entry).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

#: profile rows: label -> (file name ending, function name); cumulative seconds of those calls
PROFILE_ROWS = {
    "read + checks (read_image, PET units)": [("image.py", "read_image"), ("pet_units.py", "read_pet")],
    "resample (resample_to)": [("image.py", "resample_to")],
    "derived channels (gradient map)": [("gradient_map.py", "gradient_map")],
    "tile loop (all)": [("tiled.py", "_aggregate")],
    "network forward": [("tiled.py", "_forward")],
    "post-process": [("postprocess.py", "clean_up")],
    "write outputs": [("outputs.py", "__exit__"), ("image.py", "write_image")],
}


def clinical_grid(shape_zyx, spacing_xyz, centre_lps):
    import numpy as np

    from HNTumorSegLib.image import Image

    extent = (np.array(shape_zyx[::-1]) - 1) * np.array(spacing_xyz)
    origin = np.asarray(centre_lps) - extent / 2
    return Image(np.zeros(shape_zyx, np.uint8), spacing_xyz, tuple(origin))


def build_midrt(folder: Path) -> dict:
    from HNTumorSegLib.image import resample_to, write_image
    from HNTumorSegLib.phantoms import make_midrt_case

    case = make_midrt_case(seed=0, shape=(54, 285, 285))          # 256 x 256 x 162 mm at 0.9 x 0.9 x 3 mm
    t2 = case["midRT_T2"]
    grid = clinical_grid((80, 512, 512), (0.5, 0.5, 2.0), t2.corners_lps().mean(axis=0))
    files = {"T2": write_image(resample_to(t2, grid, interpolator="linear"), folder / "midrt_T2.nii.gz"),
             "prior": write_image(resample_to(case["preRT_mask_registered"], grid, label=True),
                                  folder / "midrt_prior.nii.gz")}
    return {k: str(v) for k, v in files.items()}


def build_petct(folder: Path) -> dict:
    from HNTumorSegLib.image import resample_to, write_image
    from HNTumorSegLib.phantoms import make_petct_case

    case = make_petct_case(seed=0, tall=True)
    centre = case["CT"].corners_lps().mean(axis=0)
    ct_grid = clinical_grid((300, 512, 512), (0.98, 0.98, 2.0), centre)
    pet_grid = clinical_grid((300, 200, 200), (4.0, 4.0, 2.0), centre)
    ct = resample_to(case["CT"], ct_grid, interpolator="linear")
    ct.array = ct.array.astype("int16")
    files = {"CT": write_image(ct, folder / "petct_CT.nii.gz"),
             "PET": write_image(resample_to(case["PET"], pet_grid, interpolator="linear"), folder / "petct_PET.nii.gz")}
    return {k: str(v) for k, v in files.items()}


def profile_rows(stats: pstats.Stats) -> dict:
    totals = {label: 0.0 for label in PROFILE_ROWS}
    calls = {label: 0 for label in PROFILE_ROWS}
    for (filename, _, func), (_, ncalls, _, cumtime, _) in stats.stats.items():   # type: ignore[attr-defined]
        for label, targets in PROFILE_ROWS.items():
            if any(filename.endswith(f) and func == name for f, name in targets):
                totals[label] += cumtime
                calls[label] += ncalls
    return {label: {"s": round(totals[label], 3), "calls": calls[label]} for label in PROFILE_ROWS}


def run_case(name: str, files: dict, out: Path) -> dict:
    from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation

    if name == "midrt":
        request = SegmentRequest(model="demo-midrt", task="midrt", input_paths={"T2": files["T2"]},
                                 prior_path=files["prior"], output_path=str(out / "midrt_labels.nii.gz"))
    else:
        request = SegmentRequest(model="demo-petct", input_paths={"CT": files["CT"], "PET": files["PET"]},
                                 output_path=str(out / "petct_labels.nii.gz"))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    res = run_segmentation(request)
    prof.disable()
    wall = time.perf_counter() - t
    rows = profile_rows(pstats.Stats(prof))
    loop, fwd = rows["tile loop (all)"]["s"], rows["network forward"]["s"]
    n_tiles = int(res.n_tiles or 0)
    return {"wall_s": round(wall, 3), "stage_timers_s": res.timings, "profile": rows, "n_tiles": n_tiles,
            "per_tile_s": {"network": round(fwd / n_tiles, 4) if n_tiles else None,
                           "accumulation": round((loop - fwd) / n_tiles, 4) if n_tiles else None},
            "overhead_outside_forward_share": round(1 - fwd / wall, 3) if wall else None,
            "model": request.model, "inputs": {k: Path(v).name for k, v in files.items()}}


def write_report(results: dict, info: dict) -> None:
    from _machine import load_note, machine_line

    lines = ["# Whole-image runs at clinical size: where the time goes (issue 27)", "",
             f"Machine: {machine_line(info)}; load average at end {info['load_average_at_end']}. " + load_note(info),
             "One run per case under cProfile (adds a little to Python-heavy stages), demo models: one fold, "
             "no TTA (their cards' defaults). Shares are of the whole run's wall time.", ""]
    for name, r in results.items():
        lines += [f"## {name}: {', '.join(r['inputs'].values())} with {r['model']}", "",
                  f"Wall {r['wall_s']} s, {r['n_tiles']} tiles; per tile: network {r['per_tile_s']['network']} s, "
                  f"accumulation and tile handling {r['per_tile_s']['accumulation']} s. Time outside the network "
                  f"forward passes: {r['overhead_outside_forward_share']:.0%} of the run.", "",
                  "| stage (pipeline timer) | s | share |", "|---|---|---|"]
        lines += [f"| {k} | {v} | {v / r['wall_s']:.1%} |" for k, v in r["stage_timers_s"].items()
                  if k != "total" and isinstance(v, (int, float))]
        lines += ["", "| function group (cProfile, cumulative) | s | calls | share |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['s']} | {v['calls']} | {v['s'] / r['wall_s']:.1%} |" for k, v in r["profile"].items()]
        lines.append("")
    (HERE / "results" / "profile_clinical.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", nargs="+", choices=("midrt", "petct"), default=["midrt", "petct"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from _machine import machine_info

    torch.set_num_threads(args.threads)
    info = machine_info()
    path = HERE / "results" / "profile_clinical.json"
    results = json.loads(path.read_text())["cases"] if path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="profile-clinical-") as tmp:
        folder = Path(tmp)
        for name in args.case:
            files = (build_midrt if name == "midrt" else build_petct)(folder)
            results[name] = run_case(name, files, folder)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    (HERE / "results").mkdir(exist_ok=True)
    path.write_text(json.dumps({"benchmark": "profile_clinical", "machine": info, "cases": results}, indent=2) + "\n")
    write_report(results, info)


if __name__ == "__main__":
    main()
