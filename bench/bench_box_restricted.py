"""Box-restricted vs full-volume inference on an HNTS-MRG-sized volume with a STU-Net-S network.

Volume 123 x 512 x 512 voxels at 0.5 x 0.5 x 1.2 mm (an HNTS-MRG 2024 T2w scan), one channel,
STU-Net small (14.6 M parameters, random weights: only time and memory are measured),
patch 48 x 192 x 192, 3 classes, CPU. Two lesion boxes (a GTVp and a GTVn) from a phantom mask
plus a 5 mm margin. Each mode runs in its own child process, so its peak RSS (ru_maxrss) is
its own (the phantom is made once and cached in build/bench-cache, memory-mapped).

Modes:
* ``shrink``: box-restricted, one tile per box sized to the box (rounded up to the network's
  divisor 8 x 32 x 32, at most the patch) - the CPU fast path;
* ``fit``: box-restricted, one full 48 x 192 x 192 patch centred on each box;
* ``full``: the whole volume (125 tiles at step 0.5). Running it takes far longer than the
  rest together on 2 cores, so by default its time is *estimated* from its tile count and the
  per-voxel cost measured in ``fit`` (``--run-full`` runs it for real).

Usage:
    python bench/bench_box_restricted.py [--threads 2] [--run-full]
Writes bench/results/box_restricted.json and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SHAPE = (123, 512, 512)
SPACING = (0.5, 0.5, 1.2)
PATCH = (48, 192, 192)
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]   # divisor 8 x 32 x 32
MARGIN_MM = 5.0
CACHE = HERE.parent / "build" / "bench-cache"


def make_case():
    """The phantom image (z-scored) and its two lesion boxes as index slices (not cached)."""
    import numpy as np

    from HNTumorSegLib.phantoms import make_prert_case
    from HNTumorSegLib.prompts.boxes import box_to_index_slices, boxes_from_mask

    case = make_prert_case(seed=3, shape=SHAPE, spacing=SPACING, n_nodes=1)
    t2 = case["T2"].array.astype(np.float32)
    x = ((t2 - t2.mean()) / (t2.std() + 1e-6))[None]
    boxes = boxes_from_mask(case["mask"], margin_mm=MARGIN_MM)
    return x, [box_to_index_slices(b, case["T2"]) for b in boxes]


def cached_case():
    """The phantom from the cache (memory-mapped, so its generation does not count in the RSS)."""
    import numpy as np

    xf, bf = CACHE / "hntsmrg_phantom_x.npy", CACHE / "hntsmrg_phantom_boxes.json"
    if not (xf.exists() and bf.exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        x, boxes = make_case()
        np.save(xf, x)
        bf.write_text(json.dumps([[[s.start, s.stop] for s in b] for b in boxes]))
    x = np.load(xf, mmap_mode="r")
    boxes = [tuple(slice(a, b) for a, b in box) for box in json.loads(bf.read_text())]
    return x, boxes


def child(mode: str, threads: int) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from HNTumorSegLib.inference import EnsemblePredictor, TilingOptions
    from HNTumorSegLib.networks.stunet import build_stunet

    t_import = time.perf_counter() - t0
    t = time.perf_counter()
    x, boxes = cached_case()
    t_case = time.perf_counter() - t
    torch.manual_seed(0)
    net = build_stunet("small", 1, 3, pool_op_kernel_sizes=STRIDES).eval()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tiling = {"shrink": "shrink", "fit": "fit", "full": "fit"}[mode]
    pred = EnsemblePredictor(net, PATCH, 3, device="cpu", tiling=TilingOptions(region_tiling=tiling, num_threads=threads))
    region = None if mode == "full" else boxes
    shapes = []
    net.register_forward_hook(lambda m, i, o: shapes.append(list(i[0].shape[2:])))
    t = time.perf_counter()
    res = pred.predict(x, region=region)
    labels = res.probabilities.argmax(0).astype(np.uint8)
    t_predict = time.perf_counter() - t
    return {"mode": mode, "threads": threads, "seconds_predict": round(t_predict, 2),
            "seconds_import": round(t_import, 2), "seconds_load_phantom": round(t_case, 2),
            "n_tiles": res.n_tiles, "tile_shapes": shapes, "n_tiles_full_volume": pred.count_tiles(SHAPE),
            "boxes": [[[s.start, s.stop] for s in b] for b in boxes],
            "foreground_voxels": int((labels > 0).sum()),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "rss_before_predict_gb": round(rss_before, 2)}


def run_child(mode: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--threads", str(threads)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run-full", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return
    import os

    import numpy as np

    from _machine import load_note, machine_info, machine_line

    info = machine_info()
    subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = %r; import bench_box_restricted as b; "
                    "b.cached_case()" % [str(HERE.parent), str(HERE)]], check=True)
    runs = {m: run_child(m, args.threads) for m in ("shrink", "fit")}
    fit = runs["fit"]
    voxels_fit = sum(int(np.prod(s)) for s in fit["tile_shapes"])
    per_voxel = fit["seconds_predict"] / voxels_fit
    n_full = fit["n_tiles_full_volume"]
    if args.run_full:
        runs["full"] = run_child("full", args.threads)
        full_s, full_kind = runs["full"]["seconds_predict"], "measured"
    else:
        full_s, full_kind = round(per_voxel * n_full * PATCH[0] * PATCH[1] * PATCH[2], 1), "estimated"
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"benchmark": "box_restricted", "volume_shape_zyx": SHAPE, "spacing_xyz_mm": SPACING,
              "network": "STU-Net small (random weights), 1 input channel, 3 classes", "patch": PATCH,
              "box_margin_mm": MARGIN_MM, "machine": info, "runs": runs,
              "full_volume": {"n_tiles": n_full, "seconds": full_s, "kind": full_kind},
              "goals": {"box_restricted_seconds": 30, "peak_rss_gb": 3}}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "box_restricted.json").write_text(json.dumps(result, indent=2))
    sh = runs["shrink"]
    lines = [
        "# Box-restricted vs full-volume inference (STU-Net-S, 123x512x512 @ 0.5x0.5x1.2 mm, CPU)", "",
        f"Machine: {machine_line(info)}; load average at end {info['load_average_at_end']}. "
        f"torch threads: {args.threads}. " + load_note(info), "",
        "| mode | tiles | tile shapes (z,y,x) | predict time (s) | peak RSS (GB) |", "|---|---|---|---|---|"]
    for m, r in runs.items():
        shapes = ", ".join("x".join(map(str, s)) for s in r["tile_shapes"][:4]) or "-"
        lines.append(f"| {m} | {r['n_tiles']} | {shapes} | {r['seconds_predict']} | {r['peak_rss_gb']} |")
    if full_kind == "estimated":
        lines.append(f"| full (estimated) | {n_full} | 48x192x192 | ~{full_s} | - |")
    goal_t = "met" if sh["seconds_predict"] <= 30 else f"missed by {sh['seconds_predict'] - 30:.1f} s"
    goal_m = "met" if sh["peak_rss_gb"] <= 3 else f"missed by {sh['peak_rss_gb'] - 3:.2f} GB"
    lines += ["", f"Goal <= 30 s (box-restricted, `shrink`): **{goal_t}**. Goal peak RSS <= 3 GB: **{goal_m}**.",
              f"Speed-up of `shrink` over the full volume: ~{full_s / max(sh['seconds_predict'], 1e-9):.0f}x "
              f"({full_kind} full-volume time).",
              "Peak RSS is the child's ru_maxrss: Python + torch + the phantom + the network + "
              "a (3, 123, 512, 512) float32 probability map (0.39 GB)."]
    (HERE / "results" / "box_restricted.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
