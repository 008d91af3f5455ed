"""`hntumorseg register` gives the same bits whatever the thread settings (issue 23 part 2).

Two separate processes register the same pair (deformable: rigid + B-spline), one with ITK's
global default (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``) and ``OMP_NUM_THREADS`` at 1, the
other at 3. The registration itself runs seeded on one thread
(:mod:`HNTumorSegLib.prompts.registration`, *Determinism*: with 4 threads two runs differed by
up to 0.44 mm); the outputs must be identical, byte for byte.
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
    a, b = (sitk.ReadTransform(str(tmp_path / f"threads{t}" / "t.tfm")) for t in (1, 3))
    assert np.array_equal(one["image"], two["image"])
    assert np.array_equal(one["labels"], two["labels"])
    assert one["transform"] == two["transform"]
    for key in ("similarity", "jacobian", "rigid", "labels"):
        assert one["quality"][key] == two["quality"][key], key
    assert [s["metric"] for s in one["quality"]["stages"]] == [s["metric"] for s in two["quality"]["stages"]]
    assert a.GetName() == "CompositeTransform"
