"""GPU figure of issue 4: STU-Net-S, 5 folds + mirroring TTA on a 200x200x310 mm crop at 1 mm.

Seed 004 reports 5 s per case (10-fold STU-Net-S, A6000). This times our EnsemblePredictor on the same
workload with random weights (speed does not depend on them): 2 channels (CT, PET), 3 classes,
patch (192, 112, 112) as seed 004's nnU-Net plan (z, y, x), step 0.5, 8 TTA passes, bf16 autocast.
Needs a CUDA GPU; without one it says so and exits 2. Not run yet: no GPU was lent to the
session that wrote it.

Usage:
    python bench/bench_gpu_stunet.py [--folds 5] [--no-tta] [--repeats 3]
Writes bench/results/gpu_stunet.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import machine_info, machine_line  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu_stunet: no CUDA GPU here - run it on a machine with one", file=sys.stderr)
        return 2
    from HNTumorSegLib.inference import EnsemblePredictor, TilingOptions
    from HNTumorSegLib.networks.stunet import build_stunet

    # 112 is not a multiple of 32: the last pooling halves z only (z 32, y/x 16 in total).
    pools = [[2, 2, 2]] * 4 + [[2, 1, 1]]
    nets = [build_stunet("small", 2, 3, pool_op_kernel_sizes=pools).eval() for _ in range(args.folds)]
    x = np.random.default_rng(0).standard_normal((2, 310, 200, 200)).astype(np.float32)
    pred = EnsemblePredictor(nets, (192, 112, 112), 3, device="cuda", tiling=TilingOptions(tta=not args.no_tta))
    pred.predict_probabilities(x)  # warm-up: cuDNN autotune, allocator
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pred.predict_probabilities(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    result = {"machine": machine_info(), "gpu": torch.cuda.get_device_name(0), "folds": args.folds,
              "tta": not args.no_tta, "tiles_per_fold": pred.count_tiles(x.shape[1:]),
              "seconds": sorted(times), "median_seconds": float(np.median(times)),
              "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
              "seed_004_reference": "5 s per case, 10-fold STU-Net-S, RTX A6000"}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "gpu_stunet.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_stunet.md").write_text(
        f"# STU-Net-S, {args.folds} folds, TTA {'on' if result['tta'] else 'off'}, 200x200x310 crop at 1 mm\n\n"
        f"Machine: {machine_line(result['machine'])}; GPU {result['gpu']}.\n\n"
        "| median (s) | runs (s) | tiles per fold | peak GPU memory (GB) |\n|---|---|---|---|\n"
        f"| {result['median_seconds']:.2f} | {', '.join(f'{t:.2f}' for t in times)} | "
        f"{result['tiles_per_fold']} | {result['peak_gpu_memory_gb']:.2f} |\n\n"
        "Seed 004: 5 s per case (10-fold STU-Net-S, RTX A6000).\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
