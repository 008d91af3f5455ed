"""The overlay picture: one panel per lesion (reference first, then predicted-only), a readable PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from HNTumorSegLib.image import Image
from HNTumorSegLib.overlay import lesion_slices, render_overlay


def _case():
    arr = np.random.default_rng(0).normal(100, 10, (12, 64, 64)).astype(np.float32)
    ref = np.zeros(arr.shape, np.uint8)
    ref[4:8, 10:20, 10:20] = 1          # GTVp, largest
    ref[5:7, 40:46, 40:46] = 2          # GTVn
    pred = ref.copy()
    pred[5:7, 40:46, 40:46] = 0         # node missed
    pred[2:4, 50:54, 5:9] = 2           # a false-positive node
    img = Image(arr, (0.8, 0.8, 3.0))
    return img, img.with_array(pred), img.with_array(ref)


def test_lesion_slices_reference_first_then_false_positives():
    img, pred, ref = _case()
    panels = lesion_slices(pred.array, ref.array)
    assert [p[2] for p in panels] == ["GTVp", "GTVn", "GTVn (predicted only)"]
    z, (ys, xs), _ = panels[0]
    assert 4 <= z < 8 and ys == slice(10, 20) and xs == slice(10, 20)
    assert [p[2] for p in lesion_slices(pred.array, None)] == ["GTVp", "GTVn"]


def test_render_overlay_writes_a_png_and_nothing_else(tmp_path):
    img, pred, ref = _case()
    path = render_overlay(img, pred, ref, tmp_path / "o" / "overlay.png", title="test")
    png = PILImage.open(path)
    assert png.format == "PNG" and png.size[0] > png.size[1] > 200
    rgb = np.asarray(png.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red.sum() > 20  # the GTVp prediction contour is drawn
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["overlay.png"]
    # no lesion at all: still one readable panel
    empty = render_overlay(img, img.with_array(np.zeros(img.array.shape, np.uint8)), None, tmp_path / "e.png")
    assert PILImage.open(empty).size[0] > 200
