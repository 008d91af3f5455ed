"""Overlay pictures: axial slices through each lesion with the contours of the prediction and the reference.

One panel per lesion (26-connected components of the reference, largest first, then predicted
lesions that touch no reference lesion; at most ``max_panels``), on the axial slice where that lesion is largest, cropped around it with
``context_mm`` of surroundings, drawn in millimetres so pixels keep their true aspect. Colours:
GTVp red, GTVn cyan; prediction solid, reference dashed (yellow-orange). The image is shown
radiologically as stored (column index to the right), windowed to its 1-99 % percentiles.

matplotlib's Agg canvas is used directly (no pyplot, no display, no global state), and the PNG is
written to a temporary file then renamed.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> case = make_midrt_case(seed=0, shape=(8, 32, 32))     # the registered pre-RT mask as "prediction"
    >>> t2, prediction, reference = case["midRT_T2"], case["preRT_mask_registered"], case["midRT_mask"]
    >>> render_overlay(t2, prediction, reference, "demo/overlay.png", title="demo-midrt, phantom 0")
    PosixPath('demo/overlay.png')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import LABEL_NAMES
from .fileio import atomic_path
from .image import Image, resample_to

PRED_COLOURS = {1: "#ff3030", 2: "#00e5ff"}
REF_COLOURS = {1: "#ffd400", 2: "#ff9f1a"}
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    comps, n = ndimage.label(mask, structure=STRUCTURE_26)
    if n == 0:
        return []
    sizes = ndimage.sum_labels(np.ones_like(comps), comps, index=np.arange(1, n + 1))
    return [comps == i + 1 for i in np.argsort(-sizes)]


def lesion_slices(pred: np.ndarray, ref: np.ndarray | None, max_panels: int = 6) -> list[tuple[int, tuple[slice, slice], str]]:
    """(axial index, in-plane bounding box, caption) per lesion: reference lesions first (largest
    first), then predicted lesions that touch no reference lesion (false positives)."""
    groups: list[tuple[np.ndarray, np.ndarray, str]] = []
    if ref is not None:
        groups += [(c, ref, "") for c in _components(ref > 0)]
        ref_any = ref > 0
        groups += [(c, pred, " (predicted only)") for c in _components(pred > 0) if not np.any(ref_any[c])]
    else:
        groups += [(c, pred, "") for c in _components(pred > 0)]
    out = []
    for comp, source, suffix in groups[:max_panels]:
        z = int(np.argmax(comp.sum(axis=(1, 2))))
        ys, xs = np.nonzero(comp.any(axis=0))
        label = int(np.bincount(source[comp], minlength=3)[1:].argmax() + 1)
        out.append((z, (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1)),
                    LABEL_NAMES.get(label, "lesion") + suffix))
    return out


def _window(arr: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(arr, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1)


def render_overlay(image: Image, prediction: Image, reference: Image | None = None,
                   path: str | os.PathLike = "overlay.png", title: str = "", max_panels: int = 6,
                   context_mm: float = 25.0, panel_inches: float = 3.2, dpi: int = 110,
                   window: tuple[float, float] | None = None) -> Path:
    """Write the overlay PNG (module docstring) and return its path.

    ``prediction`` and ``reference`` are label maps (0, 1 GTVp, 2 GTVn); they are put on
    ``image``'s grid (nearest neighbour) when they lie elsewhere. ``window`` (lo, hi) fixes the
    grey levels (e.g. a CT soft-tissue window); by default the 1-99 % percentiles.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pred = prediction if prediction.same_grid(image) else resample_to(prediction, image, label=True)
    ref = None
    if reference is not None:
        ref = reference if reference.same_grid(image) else resample_to(reference, image, label=True)
    p_arr = pred.array.astype(np.uint8)
    r_arr = None if ref is None else ref.array.astype(np.uint8)
    panels = lesion_slices(p_arr, r_arr, max_panels)
    if not panels:
        nz, ny, nx = image.array.shape
        panels = [(nz // 2, (slice(0, ny), slice(0, nx)), "no lesion")]

    sx, sy = image.spacing[0], image.spacing[1]
    ny, nx = image.array.shape[1:]
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    # at least two panels wide, so the title and the legend always fit
    fig = Figure(figsize=(panel_inches * max(ncols, 2), panel_inches * nrows + 0.9), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    lo, hi = window if window is not None else _window(image.array)
    for i, (z, (ys, xs), caption) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.set_facecolor("black")
        pad_y, pad_x = int(round(context_mm / sy)), int(round(context_mm / sx))
        y0, y1 = max(0, ys.start - pad_y), min(ny, ys.stop + pad_y)
        x0, x1 = max(0, xs.start - pad_x), min(nx, xs.stop + pad_x)
        extent = (x0 * sx, x1 * sx, y1 * sy, y0 * sy)  # mm, so the aspect is true
        ax.imshow(image.array[z, y0:y1, x0:x1], cmap="gray", vmin=lo, vmax=hi, extent=extent,
                  interpolation="nearest")
        yy = (np.arange(y0, y1) + 0.5) * sy
        xx = (np.arange(x0, x1) + 0.5) * sx
        for label in (1, 2):
            if r_arr is not None and np.any(r_arr[z, y0:y1, x0:x1] == label):
                ax.contour(xx, yy, (r_arr[z, y0:y1, x0:x1] == label).astype(float), levels=[0.5],
                           colors=REF_COLOURS[label], linewidths=1.4, linestyles="--")
            if np.any(p_arr[z, y0:y1, x0:x1] == label):
                ax.contour(xx, yy, (p_arr[z, y0:y1, x0:x1] == label).astype(float), levels=[0.5],
                           colors=PRED_COLOURS[label], linewidths=1.6)
        ax.set_title(f"{caption} - slice {z}", color="white", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color=PRED_COLOURS[1], lw=2, label="GTVp prediction"),
               Line2D([], [], color=PRED_COLOURS[2], lw=2, label="GTVn prediction")]
    if r_arr is not None:
        handles += [Line2D([], [], color=REF_COLOURS[1], lw=2, ls="--", label="GTVp reference"),
                    Line2D([], [], color=REF_COLOURS[2], lw=2, ls="--", label="GTVn reference")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False, labelcolor="white")
    if title:
        fig.suptitle(title, color="white", fontsize=9, wrap=True)
    legend_h = 0.55 / (panel_inches * nrows + 0.9)
    fig.tight_layout(rect=(0, legend_h, 1, 1 - 0.35 / (panel_inches * nrows + 0.9) if title else 1))

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return Path(path)
