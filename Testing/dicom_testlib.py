"""Helpers of the DICOM tests: the independent tools (dciodvfy, plastimatch, dcmqi, Orthanc) and Dice.

A tool that is missing skips the test locally but FAILS it when ``CI=true`` (CI installs
dicom3tools, plastimatch and orthanc from Debian and dcmqi from PyPI), so a CI run can never
pass without the independent readers having looked at our files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import conftest
import numpy as np


def require_tool(name: str) -> str:
    """The path of executable ``name`` (also looked up beside the Python in use), else skip/fail."""
    return conftest.require_tool(name, "Debian: dicom3tools / plastimatch / orthanc; PyPI: dcmqi")


def dciodvfy(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of dicom3tools' validator for one file."""
    tool = require_tool("dciodvfy")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, errors="replace", timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def plastimatch_labels(rtstruct: Path, source_dir: Path, grid, out_dir: Path) -> dict[str, np.ndarray]:
    """RTSTRUCT -> one mask per structure name by plastimatch, resampled (nearest) onto ``grid``."""
    import SimpleITK as sitk

    from HNTumorSegLib.image import Image, resample_to

    tool = require_tool("plastimatch")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([tool, "convert", "--input", str(rtstruct), "--referenced-ct", str(source_dir),
                          "--output-prefix", str(out_dir)], capture_output=True, text=True, errors="replace",
                         timeout=300)   # plastimatch echoes names in the file's own character set
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    masks = {}
    for f in sorted(out_dir.iterdir()):
        if f.suffix in (".mha", ".nrrd"):
            img = Image.from_sitk(sitk.ReadImage(str(f)))
            masks[f.stem] = resample_to(img, grid, label=True).array > 0
    return masks


def dcmqi_labels(seg: Path, grid, out_dir: Path) -> np.ndarray:
    """SEG -> label map (1 GTVp, 2 GTVn by each segment's label in dcmqi's meta JSON) by dcmqi's
    segimage2itkimage, resampled onto ``grid``."""
    import json

    import SimpleITK as sitk

    from HNTumorSegLib.image import Image, resample_to

    tool = require_tool("segimage2itkimage")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([tool, "--inputDICOM", str(seg), "--outputDirectory", str(out_dir), "--prefix", "s",
                          "--outputType", "nifti"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    meta = json.loads((out_dir / "s-meta.json").read_text())
    ours = {"GTVp": 1, "GTVn": 2}
    label_of = {int(a["labelID"]): ours[a["SegmentLabel"]] for group in meta["segmentAttributes"] for a in group}
    out = np.zeros(grid.array.shape, np.uint8)
    files = sorted(out_dir.glob("s-*.nii.gz"))
    assert files, f"dcmqi wrote nothing: {run.stdout[-1000:]}"
    for f in files:  # one file per segment group; voxel values are the segments' label IDs
        img = resample_to(Image.from_sitk(sitk.ReadImage(str(f))), grid, label=True)
        for label_id, label in label_of.items():
            out[img.array == label_id] = label
    return out
