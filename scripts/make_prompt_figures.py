#!/usr/bin/env python
"""Draw the README pictures of the seeds' prompts from synthetic phantoms (no patient data).

* ``docs/images/prompts_midrt.png``: a mid-RT T2 phantom slice with the lesion boxes made from
  the registered pre-RT mask (seed 003), beside the gradient map computed inside them;
* ``docs/images/prompts_petct.png``: a tall PET/CT phantom (coronal PET maximum intensity
  projection and CT slice) with seed 004's 200 x 200 x 310 mm head crop.

The boxes use the bundled demo-midrt card's ``box_margin_vox`` (4 voxels), the margin the pipeline
and Slicer's "Boxes from prior" use (README sections 1 and 5); the title prints that number.

Usage:
    python scripts/make_prompt_figures.py [--out DIR] [--seed 0]    # default DIR: build/pictures
    python scripts/make_prompt_figures.py --out docs/images          # overwrite the tracked README pictures
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case  # noqa: E402
from HNTumorSegLib.prompts.boxes import box_to_index_range, boxes_from_mask  # noqa: E402
from HNTumorSegLib.prompts.gradient_map import gradient_map  # noqa: E402
from HNTumorSegLib.models.loader import box_margin_vox_of  # noqa: E402
from HNTumorSegLib.prompts.head_localisation import plan_head_crop  # noqa: E402

COLOURS = {1: "#ff5a36", 2: "#36c2ff"}


def midrt_figure(out: Path, seed: int) -> Path:
    case = make_midrt_case(seed=seed)
    t2, truth = case["midRT_T2"], case["midRT_mask"].array
    margin = box_margin_vox_of("demo-midrt")   # the card's margin: what the pipeline and Slicer use
    boxes = boxes_from_mask(case["preRT_mask_registered"], margin_vox=margin)
    grad = gradient_map(t2, boxes).array
    k = int(np.argmax((truth == 1).sum(axis=(1, 2))))        # the slice with most GTVp
    sx, sy = t2.spacing[:2]
    extent = (0, t2.shape_xyz[0] * sx, t2.shape_xyz[1] * sy, 0)   # mm, rows top to bottom
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.4), dpi=100)
    panels = [(t2.array[k], "gray", "mid-RT T2 with lesion boxes"), (grad[k], "magma", "gradient map (channel 2)")]
    for ax, (img, cmap, title) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, extent=extent, interpolation="nearest")
        for label in (1, 2):
            if (truth[k] == label).any():
                ax.contour(np.linspace(sx / 2, extent[1] - sx / 2, img.shape[1]),
                           np.linspace(sy / 2, extent[2] - sy / 2, img.shape[0]),
                           truth[k] == label, levels=[0.5], colors=COLOURS[label], linewidths=0.8,
                           linestyles="dotted")
        for b in boxes:
            lo, hi = box_to_index_range(b, t2)
            if lo[2] <= k <= hi[2]:
                ax.add_patch(Rectangle((lo[0] * sx, lo[1] * sy), (hi[0] - lo[0] + 1) * sx, (hi[1] - lo[1] + 1) * sy,
                                       fill=False, edgecolor=COLOURS[b.label], linewidth=1.4))
                ax.text(lo[0] * sx, lo[1] * sy - 1.5, b.name, color=COLOURS[b.label], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("mm")
        if cmap == "magma":
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(f"Seed 003 prompts: boxes from the registered pre-RT mask ({margin}-voxel margin), slice {k}; "
                 "dotted = mid-RT truth", fontsize=9)
    fig.tight_layout()
    path = out / "prompts_midrt.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def petct_figure(out: Path, seed: int) -> Path:
    case = make_petct_case(seed=seed, tall=True)
    ct, pet, mask = case["CT"], case["PET"], case["mask"]
    plan = plan_head_crop(ct, pet)
    lo, hi = plan.bounds_lps

    def coronal_extent(img):
        c = img.corners_lps()
        return (c[:, 0].min(), c[:, 0].max(), c[:, 2].min(), c[:, 2].max())   # x (L), z (S) in mm

    pet_mip = pet.array.max(axis=1)                           # [z, x]
    j = int(np.argmax((mask.array > 0).sum(axis=(0, 2))))    # the coronal slice with most lesion
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 6.6), dpi=100)
    panels = [(pet_mip, pet, "gray_r", (0, 6), "PET coronal MIP (SUV 0-6)"),
              (ct.array[:, j, :], ct, "gray", (-300, 300), f"CT coronal slice {j}")]
    for ax, (img, ref, cmap, clim, title) in zip(axes, panels):
        ext = coronal_extent(ref)
        ax.imshow(img, cmap=cmap, vmin=clim[0], vmax=clim[1], origin="lower", extent=ext, aspect="equal",
                  interpolation="nearest")
        lesions = (mask.array > 0).max(axis=1)
        ce = coronal_extent(mask)
        ax.contour(np.linspace(ce[0], ce[1], lesions.shape[1]), np.linspace(ce[2], ce[3], lesions.shape[0]),
                   lesions, levels=[0.5], colors="#ff5a36", linewidths=0.8)
        ax.add_patch(Rectangle((lo[0], lo[2]), hi[0] - lo[0], hi[2] - lo[2], fill=False, edgecolor="#1fbf4f",
                               linewidth=1.8))
        ax.plot(plan.centre_lps[0], plan.centre_lps[2], "+", color="#1fbf4f", markersize=10)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x (LPS, mm)")
        ax.set_ylabel("z (superior up, mm)")
    fig.suptitle("Seed 004 head crop: 200 x 200 x 310 mm around the largest PET hot region of the top 25 %\n"
                 "(green; + its centroid), lesions in red", fontsize=9)
    fig.tight_layout()
    path = out / "prompts_petct.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "build" / "pictures",
                        help="folder for the pictures (default build/pictures; docs/images overwrites README's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (midrt_figure(args.out, args.seed), petct_figure(args.out, args.seed)):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
