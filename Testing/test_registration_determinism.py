"""`hntumorseg register` gives the same result whatever the thread settings (issue 23 part 2).

Two separate processes register the same pair (deformable: rigid + B-spline), one with ITK's
global default (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``) and ``OMP_NUM_THREADS`` at 1, the
other at 3. The registration itself always runs on ``REGISTRATION_THREADS`` with seeded samples
(:mod:`HNTumorSegLib.prompts.registration`, *Determinism*), so the results agree; not to the
last bit, because ITK's Mattes metric adds threads' derivative contributions in the order the
threads finish (measured: about 1e-4 mm between two runs). Hence the tolerances: the mapping
within 0.01 mm at every landmark, the image within 0.5 % of its range (a float32 step at a
steep edge moved 1e-4 mm), the labels the same but for voxels exactly at the 0.5 level.
Without the fixed thread count the difference was 0.26 mm and 9 label voxels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(folder, inputs, threads: int, itk_threads: int) -> dict:
    out = folder / f"threads{threads}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(itk_threads),
               PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "HNTumorSegLib", "register", "--fixed", str(inputs["fixed"]),
           "--moving", str(inputs["moving"]), "--labels", str(inputs["labels"]),
           "--output-image", str(out / "image.nii.gz"), "--output-labels", str(out / "labels.nii.gz"),
           "--transform", str(out / "t.tfm"), "--json", str(out / "q.json"), "--progress", "none"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    quality = json.loads((out / "q.json").read_text())
    return {"image": read_image(out / "image.nii.gz").array, "labels": read_image(out / "labels.nii.gz", label=True).array,
            "transform": (out / "t.tfm").read_text(), "quality": quality}


def test_same_output_with_other_thread_counts(tmp_path):
    pair = make_registration_pair(seed=3, shape=(16, 64, 64), spacing=(2.3, 2.3, 4.5))
    inputs = {"fixed": tmp_path / "mid.nii.gz", "moving": tmp_path / "pre.nii.gz", "labels": tmp_path / "mask.nii.gz"}
    for key, name in (("fixed", "fixed"), ("moving", "moving"), ("labels", "moving_mask")):
        write_image(pair[name], inputs[key])
    one, two = _run(tmp_path, inputs, 1, 1), _run(tmp_path, inputs, 3, 3)
    image_diff = float(np.abs(one["image"] - two["image"]).max())
    label_diff = int((one["labels"] != two["labels"]).sum())
    a, b = (sitk.ReadTransform(str(tmp_path / f"threads{t}" / "t.tfm")) for t in (1, 3))
    points = [tuple(float(v) for v in p) for p in pair["landmarks_mm"]]
    point_diff = max(float(np.abs(np.subtract(a.TransformPoint(p), b.TransformPoint(p))).max()) for p in points)
    print(f"between the runs: mapping {point_diff:.2e} mm, image {image_diff:.3g}, labels {label_diff} voxels")
    assert point_diff <= 0.01
    assert image_diff <= 0.005 * float(np.ptp(one["image"]))
    assert label_diff <= 0.001 * one["labels"].size
    for key in ("rigid",):
        assert np.allclose(one["quality"][key]["translation_mm"], two["quality"][key]["translation_mm"], atol=1e-3)
    assert a.GetName() == "CompositeTransform"
