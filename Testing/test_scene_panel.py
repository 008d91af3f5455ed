"""The panel's library side: the model list per task, a typed/browsed model path, the typed
parameter pack and its mirror in the module, and the device / CPU-time estimate.

Runs on plain Python; the parts that need MRML nodes use slicer-core's real vtkMRMLScene.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import require_module

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.models.catalogue import PACKAGE_DIR
from HNTumorSegLib.scene.model_choice import LICENCE_UNKNOWN, choose_model, models_for_task
from HNTumorSegLib.scene.panel_params import PanelParameters, field_annotations, from_object
from HNTumorSegLib.scene.run_estimate import LONG_RUN_S, RunEstimate, estimate_run, planned_device
from HNTumorSegLib.vocab import Device, Quality, Task

ROOT = Path(__file__).resolve().parent.parent
# source tree: <repo>/HNTumorSeg/HNTumorSegSlicer; build tree / installed: <scripted modules>/HNTumorSegSlicer
SLICER_LOGIC_PY = next((p for p in (ROOT / "HNTumorSeg" / "HNTumorSegSlicer" / "logic.py",
                                    ROOT / "HNTumorSegSlicer" / "logic.py") if p.is_file()),
                       ROOT / "HNTumorSeg" / "HNTumorSegSlicer" / "logic.py")
DEMO = {task: PACKAGE_DIR / "resources" / "models" / f"demo-{task}" for task in ("midrt", "petct")}


@pytest.fixture(autouse=True)
def empty_model_cache(tmp_path, monkeypatch):
    """No user-installed models: the lists show the catalogue as shipped."""
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))


def _needs_slicer():
    require_module("slicer", "pip install slicer-core")


# ---- model list and typed paths ------------------------------------------------------------------
def test_model_list_for_each_task_hides_other_tasks_and_marks_what_is_not_installed():
    from HNTumorSegLib.models.catalogue import read_catalogue

    lists = {task: [c.id for c in models_for_task(task)] for task in Task}
    assert lists[Task.MIDRT][0] == "demo-midrt" and lists[Task.PETCT][0] == "demo-petct"  # bundled: first
    entries = {e.id: e for e in read_catalogue()}
    for task in Task:
        assert sorted(lists[task]) == sorted(e.id for e in entries.values() if e.task == task)  # all of the task
        for choice in models_for_task(task):
            entry = entries[choice.id]
            assert choice.task is task and entry.task == task
            assert choice.licence == entry.licence and choice.source
            if not choice.installed:   # (cache is empty) marked, and says what to click - never a command
                assert choice.label.startswith(choice.id + "  [") and choice.action in ("download", "import", "train")
                assert "press " in choice.instructions and "hntumorseg" not in choice.info_text()
            else:
                assert entry.bundled and choice.label == choice.id
    assert not set(lists[Task.PRERT]) & {"demo-midrt", "demo-petct"}


def test_model_list_orders_installed_first_and_says_what_to_click(tmp_path):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [
        {"id": "zz-bundled", "title": "bundled", "task": "prert", "inputs": ["T2"], "licence": "MIT",
         "citation": "c", "path": "resources/models/demo-midrt"},
        {"id": "aa-fetchable", "title": "fetchable", "task": "prert", "inputs": ["T2"], "licence": "CC-BY-4.0",
         "citation": "c", "kind": "nnunet", "url": "https://example.org/w.zip", "sha256": "0" * 64,
         "homepage": "https://example.org"},
        {"id": "no-checksum", "title": "no checksum", "task": "prert", "inputs": ["T2"], "licence": "?",
         "citation": "c", "kind": "nnunet", "url": "https://example.org/x.zip"},
        {"id": "code-only", "title": "code", "task": "prert", "inputs": ["T2"], "licence": "?", "citation": "c",
         "kind": "source-only", "url": "https://example.org/code"},
    ]}))
    choices = models_for_task("prert", catalogue=catalogue)
    assert [c.id for c in choices] == ["zz-bundled", "aa-fetchable", "no-checksum", "code-only"]
    assert [c.label for c in choices][1:] == ["aa-fetchable  [not installed: Download]",
                                              "no-checksum  [not installed: Import]", "code-only  [code only]"]
    assert choices[1].info_text() == "Licence: CC-BY-4.0 | Source: https://example.org | Not installed: press Download."
    assert "then press Import" in choices[2].instructions   # no checksum published: by hand, then Import
    assert choose_model("code-only  [code only]", "prert", catalogue=catalogue).action == "train"  # shown, not refused
    with pytest.raises(InputError, match="publishes code, not weights") as err:
        choose_model("code-only", "prert", catalogue=catalogue, require_installed=True)   # Apply
    assert "press Browse..." in str(err.value)


def test_typed_or_browsed_folder_is_accepted_with_its_licence(tmp_path):
    folder = tmp_path / "my models" / "midrt-copy"
    shutil.copytree(DEMO["midrt"], folder)
    choice = choose_model(f"  {folder}  ", "midrt")
    assert choice.is_path and choice.id == str(folder) and choice.installed
    assert choice.licence == "Apache-2.0" and choice.task is Task.MIDRT and "Licence: Apache-2.0" in choice.info_text()
    # a folder without a card (e.g. an nnU-Net results folder) is accepted; its licence is flagged unknown
    bare = tmp_path / "Dataset501_midRT"
    bare.mkdir()
    assert choose_model(str(bare), "midrt").licence == LICENCE_UNKNOWN
    # a card of another task is refused with the fix
    other = tmp_path / "petct-copy"
    shutil.copytree(DEMO["petct"], other)
    with pytest.raises(InputError, match="the model card says task petct, not midrt"):
        choose_model(str(other), "midrt")


def test_typed_path_reaches_the_worker_request(tmp_path):
    _needs_slicer()
    from HNTumorSegLib.scene.sample_data import load_into_scene, sample_case, shipped_folder
    from HNTumorSegLib.scene.inputs import auto_assign
    from HNTumorSegLib.scene.logic import SegmentationSceneLogic
    from HNTumorSegLib.scene.mrml import make_scene
    from HNTumorSegLib.scene.panel_params import assign_nodes

    folder = tmp_path / "typed model"
    shutil.copytree(DEMO["midrt"], folder)
    app = make_scene()
    load_into_scene(app.scene, sample_case("midrt"), shipped_folder())
    params = PanelParameters(model=choose_model(str(folder), "midrt").id)
    assign_nodes(params, auto_assign(app.scene, "midrt"))
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    request = SegmentationSceneLogic(app.scene).build_request(params.to_run_parameters(), work, out)
    assert request.model == str(folder) and request.task == "midrt"
    assert set(request.input_paths) == {"T2"} and Path(request.prior_path).is_file()


def test_unknown_names_and_other_tasks_are_refused_with_the_fix():
    with pytest.raises(InputError, match="did you mean 'demo-midrt'"):
        choose_model("demo-midrtt", "midrt")
    with pytest.raises(InputError, match="is for the petct task, not midrt"):
        choose_model("demo-petct", "midrt")
    with pytest.raises(InputError, match="no model selected"):
        choose_model("   ", "midrt")


# ---- the typed parameter pack ------------------------------------------------------------------------
def _wrapper_class() -> ast.ClassDef:
    tree = ast.parse(SLICER_LOGIC_PY.read_text())
    found = [n for n in tree.body if isinstance(n, ast.ClassDef)
             and any(ast.unparse(d) == "parameterNodeWrapper" for d in n.decorator_list)]
    assert len(found) == 1, "HNTumorSegSlicer/logic.py must declare one @parameterNodeWrapper class"
    return found[0]


def test_module_wrapper_mirrors_the_parameter_pack():
    cls = _wrapper_class()
    fields = {n.target.id: (ast.unparse(n.annotation), ast.unparse(n.value) if n.value else None)
              for n in cls.body if isinstance(n, ast.AnnAssign)}
    assert {k: v[0] for k, v in fields.items()} == field_annotations()
    defaults = PanelParameters()
    for name, (_, default_src) in fields.items():
        value = getattr(defaults, name)
        expected = {None: "None", True: "True", False: "False"}.get(value) if isinstance(value, (bool, type(None))) \
            else f"{type(value).__name__}.{value.name}" if hasattr(value, "name") else repr(value)
        assert default_src == expected, (name, default_src, expected)


def test_parameter_pack_gives_the_logic_node_ids_and_typed_values():
    _needs_slicer()
    from HNTumorSegLib.scene.mrml import make_scene

    scene = make_scene().scene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom_CT")
    pet = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom_PET")
    wrapper_like = type("W", (), {})()
    for name, value in vars(PanelParameters(task=Task.PETCT, model="demo-petct", device=Device.CPU,
                                            quality=Quality.FULL, use_boxes=False, ct=ct, pet=pet)).items():
        setattr(wrapper_like, name, value)
    run = from_object(wrapper_like).to_run_parameters()
    assert run.task is Task.PETCT and run.inputs == {"CT": ct.GetID(), "PET": pet.GetID()} and run.prior == ""
    assert run.device == "cpu" and run.quality is Quality.FULL and run.use_boxes is False


# ---- device and CPU time -----------------------------------------------------------------------------
def test_estimate_on_cpu_scales_with_tiles_folds_and_flips():
    fast = estimate_run("demo-midrt", (32, 96, 96), (0.9, 0.9, 3.0), device="cpu", cores=2)
    full = estimate_run("demo-midrt", (32, 96, 96), (0.9, 0.9, 3.0), device="cpu", cores=2, all_folds=True, tta=True)
    assert fast.device == "cpu" and fast.n_tiles == 27 and fast.n_networks == 1
    assert full.n_networks == 8 and full.seconds == pytest.approx(8 * fast.seconds)
    big = estimate_run("demo-midrt", (128, 384, 384), (0.45, 0.45, 1.5), device="cpu", cores=2, tta=True)
    assert big.n_tiles > 10 * fast.n_tiles
    assert big.seconds == pytest.approx(fast.seconds * big.n_tiles / fast.n_tiles * big.n_networks)
    assert not fast.long_cpu_run  # the demo on the phantom: seconds, no warning


def test_long_cpu_run_warning_text():
    est = RunEstimate("cpu", 25 * 60.0, 900, 8)
    assert est.long_cpu_run and "about 25 minutes" in est.warning_text() and "No GPU" in est.warning_text()
    assert not RunEstimate("cuda:0", None, 900, 8).long_cpu_run
    assert not RunEstimate("cpu", LONG_RUN_S - 1, 10, 1).long_cpu_run


def test_planned_device_names_what_torch_will_use():
    import torch

    assert planned_device("cpu") == "cpu"
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert planned_device("auto") == expected


def test_probe_device_asks_a_child_python_and_keeps_torch_out_of_this_one():
    import subprocess

    from HNTumorSegLib.errors import DeviceError
    from HNTumorSegLib.runner import PACKAGE_ROOT, default_python
    from HNTumorSegLib.scene.run_estimate import probe_device

    assert probe_device("cpu") == "cpu"
    # a fresh interpreter: probing the device there does not import torch here
    code = ("import sys\nfrom HNTumorSegLib.scene.run_estimate import probe_device\n"
            "d = probe_device('auto')\nprint(d, 'torch' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]))
    # default_python: PythonSlicer when this runs inside Slicer's self-test, else this interpreter
    out = subprocess.run([default_python(), "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env=env)
    device, torch_imported = out.stdout.split()
    assert device == planned_device("auto") and torch_imported == "False"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            probe_device("cuda")
