"""Each panel action's library path runs in a fresh Slicer 5.12's Python plus what the installer installs (issue 26).

A fresh Slicer has only its bundled packages (Testing/data/slicer_5_12_python_packages.txt, with
its source); once the installer ran for an action (``HNTumorSegLib.install.requirements_for``),
the action must work. Here: a venv (Python 3.12 like Slicer 5.12 when this machine has it) holding
exactly the bundled list, pinned, from PyPI; then the installer's own decision (``missing`` +
``constraints_text``, run inside that venv: nothing bundled is replaced) with the project's tested
versions pinned. Inside it, a driver runs each action's library path on phantoms:

* download: ``hntumorseg models fetch`` of a hub entry (a child, as the panel starts it) from a hub
  on 127.0.0.1 (:mod:`hub_server`); on the old installer it died of ModuleNotFoundError (huggingface_hub);
* import: ``models import`` of a model folder; review: volumes, lesions, comparison rows; boxes from a
  prior; export: NIfTI, CSV, DICOM SEG and RTSTRUCT on a phantom DICOM series; the model box's state.

Not here: Apply (the worker imports torch and nnU-Net; the PyTorch extension installs torch,
gigabytes) and MRML (Slicer's own build: ``test_scene_*`` cover it on slicer-core).
Everything - the venv, pip's downloads (``--no-cache-dir``), the hub's files - lies in the test's
temp folder. Needs the network (PyPI); it is marked slow (about a minute to build the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from HNTumorSegLib.install import ACTION_REQUIREMENTS, TORCH_ACTIONS
from hub_server import FakeHub

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "Testing" / "data" / "slicer_5_12_python_packages.txt"
#: The versions the installer's floors resolve to on this project's machines (requirements.txt's set).
TESTED_PINS = {"huggingface_hub": "2.4.0", "scikit-image": "0.26.0", "psutil": "7.2.2", "highdicom": "0.28.2",
               "pydicom": "3.0.2"}
#: The actions checked here: every panel action but the torch ones (and the self-test's pytest).
ACTIONS = sorted(a for a in ACTION_REQUIREMENTS if a not in TORCH_ACTIONS and a != "selftest")
REPO, FOLDER = "someone/tiny-model", "nnUNetTrainer__nnUNetPlans__3d_fullres"


def slicer_like_python() -> str:
    """A Python 3.12 (Slicer 5.12's) when there is one here, else this Python (same pins, its own wheels)."""
    pyenv = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    candidates = [shutil.which("python3.12"), *pyenv]
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys, venv; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 12)":
            return exe
    return sys.executable


def run(argv, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{argv[:4]} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def bundled_requirements() -> list[str]:
    lines = [ln.strip() for ln in BUNDLED.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


@pytest.fixture(scope="module")
def fresh_slicer_python(tmp_path_factory):
    """A venv: Slicer 5.12's bundled packages, then what the installer installs for the actions checked."""
    where = tmp_path_factory.mktemp("fresh-slicer")
    venv = where / "venv"
    run([slicer_like_python(), "-m", "venv", venv])
    python = venv / "bin" / "python"
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    (where / "bundled.txt").write_text("\n".join(bundled_requirements()) + "\n")
    run([python, "-m", "pip", "install", "-q", "-r", where / "bundled.txt"], env=env)
    # the installer's decision, taken inside the venv as in Slicer: what is missing, and the constraints
    # that keep every bundled package where it is
    wanted = sorted({r for a in ACTIONS for r in ACTION_REQUIREMENTS[a]})
    decide = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from HNTumorSegLib.install import constraints_text, installed_versions, missing
        print(json.dumps({{"todo": missing({wanted!r}), "constraints": constraints_text(installed_versions())}}))
    """)
    decision = json.loads(run([python, "-c", decide], env=env).stdout)
    (where / "constraints.txt").write_text(decision["constraints"])
    if decision["todo"]:
        from packaging.requirements import Requirement

        pinned = []
        for req in decision["todo"]:
            name = Requirement(req).name
            pinned.append(f"{name}=={TESTED_PINS[name]}" if name in TESTED_PINS else req)
        run([python, "-m", "pip", "install", "-q", *pinned, "-c", where / "constraints.txt"], env=env)
    return python, env, decision["todo"]


def test_the_bundled_list_names_its_source():
    text = BUNDLED.read_text()
    assert "Slicer/Slicer, SuperBuild/requirements" in text and "Python is 3.12" in text
    names = {ln.split("==")[0].lower() for ln in bundled_requirements()}
    assert {"numpy", "simpleitk", "pydicom", "requests", "scipy", "highdicom", "pillow"} <= names
    assert "huggingface_hub" not in names and "torch" not in names   # the point: a fresh Slicer lacks them
    assert all("==" in ln for ln in bundled_requirements())          # pinned


DRIVER = r'''
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
root, work = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root))
done = {}
from HNTumorSegLib.childproc import default_python
from HNTumorSegLib.phantoms import make_midrt_case
case = make_midrt_case(seed=0, shape=(8, 48, 48))
labels, t2 = case["midRT_mask"], case["midRT_T2"]

# boxes from the prior (inputs panel)
from HNTumorSegLib.prompts.boxes import boxes_from_mask
done["boxes"] = len(boxes_from_mask(case["preRT_mask_registered"]))

# review (volumes, lesions, comparison with a reference)
from HNTumorSegLib.scene.review import comparison_rows, lesion_rows, volume_rows
done["review"] = [len(volume_rows(labels)), len(lesion_rows(labels)), len(comparison_rows(labels, labels))]

# export: NIfTI, CSV, DICOM SEG, RTSTRUCT on a DICOM series of the phantom
from HNTumorSegLib.export._dicom_source import source_geometry
from HNTumorSegLib.export.dicom_seg import write_dicom_seg
from HNTumorSegLib.export.nifti import write_label_nifti
from HNTumorSegLib.export.rtstruct import write_rtstruct
from HNTumorSegLib.export.stats_csv import write_stats_csv
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
series = write_dicom_series(t2, work / "dicom", modality="MR")
source = source_geometry(series)
out = work / "export"
files = [write_label_nifti(labels, out / "gtv.nii.gz"), write_stats_csv(labels, out / "stats.csv"),
         write_dicom_seg(labels, source, out / "seg.dcm"), write_rtstruct(labels, source, out / "rtstruct.dcm")]
done["export"] = sorted(f.name for f in files if f.stat().st_size > 0)

# the model box and Apply's offer (model panel)
from HNTumorSegLib.scene.model_choice import apply_offer, model_box_state
done["model_box"] = [model_box_state("demo-midrt", "midrt").can_run, apply_offer("tiny", "midrt").action]

# download and import: the panel's child processes (python -m HNTumorSegLib models ... --progress json)
def child(*argv):
    p = subprocess.run([default_python(), "-m", "HNTumorSegLib", *argv, "--progress", "json"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)), timeout=600)
    return p.returncode, p.stdout, p.stderr[-2000:]
code, stdout, stderr = child("models", "fetch", "tiny")
events = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
done["download"] = [code, stderr, [e.get("message", "") for e in events][:2]]
from HNTumorSegLib.models.catalogue import installed_path
shutil.copytree(installed_path("demo-midrt"), work / "my-model")
code, stdout, stderr = child("models", "import", str(work / "my-model"), "--id", "my-model", "--accept-licence")
done["import"] = [code, stderr]
print("RESULT " + json.dumps(done))
'''


def test_each_panel_action_runs_with_slicers_packages_plus_the_installers(fresh_slicer_python, tmp_path):
    python, env, installed = fresh_slicer_python
    assert any(r.startswith("huggingface_hub") for r in installed), installed   # a fresh Slicer lacks it
    files = {f"Dataset001_x/{FOLDER}/plans.json": b"{}", f"Dataset001_x/{FOLDER}/dataset.json": b"{}",
             f"Dataset001_x/{FOLDER}/fold_0/checkpoint_final.pth": b"\1" * 300_000}
    catalogue = json.loads((ROOT / "HNTumorSegLib" / "resources" / "models.json").read_text())
    catalogue["models"] = [m for m in catalogue["models"] if m["id"].startswith("demo-")]
    with FakeHub(REPO, files, lfs={f"Dataset001_x/{FOLDER}/fold_0/checkpoint_final.pth"}) as hub:
        catalogue["models"].append({"id": "tiny", "title": "t", "task": "midrt", "inputs": ["T2", "gradient_map"],
                                    "kind": "nnunet", "licence": "Apache-2.0", "citation": "c",
                                    "hub": {"repo_id": REPO, "revision": hub.commit, "folder": FOLDER}})
        resources = tmp_path / "models.json"
        resources.write_text(json.dumps(catalogue))
        (tmp_path / "driver.py").write_text(DRIVER)
        child_env = dict(env, HNTUMORSEG_CATALOGUE=str(resources), HNTUMORSEG_CACHE=str(tmp_path / "cache"),
                         HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                         HF_HUB_DISABLE_XET="1", MPLCONFIGDIR=str(tmp_path / "mpl"))
        child_env.pop("HF_HUB_OFFLINE", None)
        out = run([python, tmp_path / "driver.py", ROOT, tmp_path], env=child_env, cwd=tmp_path)
    result = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert result["boxes"] >= 2
    assert result["review"] == [2, result["review"][1], 2] and result["review"][1] >= 2
    assert result["export"] == ["gtv.nii.gz", "rtstruct.dcm", "seg.dcm", "stats.csv"]
    assert result["model_box"] == [True, "download"]
    code, stderr, first_messages = result["download"]
    assert code == 0, stderr
    assert "to download; licence Apache-2.0" in " ".join(first_messages)   # size and licence before the first byte
    assert (tmp_path / "cache" / "models" / "tiny" / FOLDER / "fold_0" / "checkpoint_final.pth").is_file()
    assert result["import"][0] == 0, result["import"][1]
