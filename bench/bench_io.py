"""Image I/O at clinical size (issue 27): reading a 300x512x512 CT .nii.gz and writing hand-off files.

Measured, median of ``--repeats`` runs each, in one process:

* read: ``sitk.ReadImage`` (the floor: one decode, no checks); ``read_image`` now (one decode, the
  checks on the decoded voxels, geometry from ITK's header read); ``read_image`` as before issue 27
  (Python's gzip decodes for the completeness/NaN checks, then ITK decodes again);
* write: ``write_image`` to ``.nii.gz`` (gzip, then read back to verify: what the user keeps);
  ``write_image(..., compress=False, verify=False)`` to ``.nii`` (the hand-off: Slicer's Apply,
  the refinement, nnU-Net's temporary channels); ``sitk.WriteImage`` to ``.nii`` (the floor).

The CT is synthetic and bit-reproducible (a body ellipse with noise, seed 0, int16, 0.98x0.98x2 mm).

Usage:
    python bench/bench_io.py [--repeats 3] [--shape 300 512 512]
Writes bench/results/io.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]


def make_ct(shape):
    import numpy as np

    from HNTumorSegLib.image import Image

    z, y, x = shape
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:y, :x]
    body = ((yy - y / 2) ** 2 / (0.39 * y) ** 2 + (xx - x / 2) ** 2 / (0.31 * x) ** 2) < 1
    arr = np.full(shape, -1000, np.int16)
    arr[:, body] = 40
    arr += rng.normal(0, 20, shape).astype(np.int16)
    return Image(arr, (0.98, 0.98, 2.0))


def old_read(path):
    """``read_image`` as it was before issue 27: Python's gzip for the checks, ITK for the voxels."""
    import gzip
    from unittest import mock

    from HNTumorSegLib import image, image_checks

    with mock.patch.object(image_checks, "open_decompressed", lambda p: gzip.open(p, "rb")), \
            mock.patch.object(image, "_image_from_nifti", lambda nifti, p: None):
        return image.read_image(path)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3), [round(v, 3) for v in times]


def main() -> None:
    import SimpleITK as sitk

    from _machine import load_note, machine_info, machine_line
    from HNTumorSegLib.image import read_image, write_image

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    args = ap.parse_args()
    info = machine_info()
    ct = make_ct(tuple(args.shape))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        gz = Path(tmp) / "ct.nii.gz"
        write_image(ct, gz)
        results["read_sitk_s"] = timed(lambda: sitk.ReadImage(str(gz)), args.repeats)
        results["read_image_s"] = timed(lambda: read_image(gz), args.repeats)
        results["read_image_before_s"] = timed(lambda: old_read(gz), args.repeats)
        results["write_image_gz_verified_s"] = timed(lambda: write_image(ct, Path(tmp) / "out.nii.gz"), args.repeats)
        results["write_image_handoff_s"] = timed(
            lambda: write_image(ct, Path(tmp) / "handoff.nii", compress=False, verify=False), args.repeats)
        results["sitk_write_nii_s"] = timed(lambda: sitk.WriteImage(ct.to_sitk(), str(Path(tmp) / "raw.nii")),
                                            args.repeats)
        try:
            import isal  # noqa: F401
            inflater = "ISA-L (isal)"
        except ImportError:
            inflater = "Python zlib"
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    shape = "x".join(map(str, args.shape))
    out = {"benchmark": "io", "shape_zyx": list(args.shape), "repeats": args.repeats, "inflater": inflater,
           "machine": info, "median_s_and_runs": results}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "io.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = [("read: sitk.ReadImage (floor, no checks)", "read_sitk_s"),
            ("read: read_image now (one decode + checks)", "read_image_s"),
            ("read: read_image before issue 27 (two decodes)", "read_image_before_s"),
            ("write: write_image .nii.gz, verified (outputs kept)", "write_image_gz_verified_s"),
            ("write: write_image .nii, compress=False, verify=False (hand-off)", "write_image_handoff_s"),
            ("write: sitk.WriteImage .nii (floor)", "sitk_write_nii_s")]
    lines = [f"# Image I/O at clinical size: a {shape} int16 CT", "",
             f"Machine: {machine_line(info)}; load average at end {info['load_average_at_end']}. " + load_note(info),
             f"Decompression in read_image: {inflater}. Median of {args.repeats} runs (all runs in the JSON).", "",
             "| what | seconds |", "|---|---|"]
    lines += [f"| {label} | {results[key][0]} |" for label, key in rows]
    (HERE / "results" / "io.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
