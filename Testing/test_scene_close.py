"""File > Close Scene during a running segmentation, on a real vtkMRMLScene (slicer-core) with a real worker.

What the panel relies on (HNTumorSegLib.scene.scene_close.SceneCloseGuard): the job is cancelled
when the scene starts closing (no worker process or child left, temp and result folders gone),
the module's parameter node is reset by the clear and re-read afterwards (nothing stale), and
the logic runs the next job normally.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import require_module, still_running

require_module("slicer", "pip install slicer-core")

import psutil  # noqa: E402

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.scene.sample_data import load_into_scene, sample_case, shipped_folder  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene  # noqa: E402
from HNTumorSegLib.scene.panel_params import PanelParameters, assign_nodes  # noqa: E402
from HNTumorSegLib.scene.inputs import auto_assign  # noqa: E402
from HNTumorSegLib.scene.run_estimate import device_used, device_used_text  # noqa: E402
from HNTumorSegLib.scene.scene_close import SceneCloseGuard  # noqa: E402

FOLDER = shipped_folder()
MODULE = "HNTumorSeg"


def parameter_node(scene):
    """What ScriptedLoadableModuleLogic.getParameterNode does: the module's singleton node."""
    node = scene.GetSingletonNode(MODULE, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
        node.SetSingletonTag(MODULE)
        node.SetModuleName(MODULE)
    return node


def load_midrt(scene) -> PanelParameters:
    load_into_scene(scene, sample_case("midrt"), FOLDER)
    params = PanelParameters(model="demo-midrt", device="cpu")
    assign_nodes(params, auto_assign(scene, "midrt"))
    return params


def test_scene_clear_cancels_the_job_and_parameters_are_re_read():
    assert FOLDER.is_dir(), f"the Sample Data phantoms are missing: {FOLDER}"
    app = make_scene()
    scene = app.scene
    logic = SegmentationSceneLogic(scene)
    reread = []

    def on_closed():
        node = parameter_node(scene)  # the widget's initializeParameterNode()
        reread.append((node.GetParameterNames(), node.GetNodeReferenceID("t2"), scene.GetNumberOfNodesByClass(
            "vtkMRMLScalarVolumeNode")))

    guard = SceneCloseGuard(scene, logic, on_closed=on_closed)
    params = load_midrt(scene)
    assert params.t2 is not None and params.prior is not None
    pnode = parameter_node(scene)
    pnode.SetParameter("model", params.model)
    pnode.SetNodeReferenceID("t2", params.t2.GetID())
    logic.boxes_from_prior(params.prior, params.t2)

    logic.start(params.to_run_parameters())
    run = logic.wait_started()   # start() returns at once (issue 26: the inputs are written in a thread)
    assert logic.running
    worker = psutil.Process(run.proc.pid)
    time.sleep(0.5)
    tree = [worker.pid] + [c.pid for c in worker.children(recursive=True)]
    temp_dir, result_dir = Path(run.temp_dir), logic.result_dir
    assert temp_dir.is_dir() and result_dir.is_dir()

    scene.Clear(0)  # File > Close Scene

    assert guard.cancelled_runs == 1 and not logic.running and run.state == "cancelled"
    assert still_running(tree) == []  # no orphan worker or worker child
    assert not temp_dir.exists() and not result_dir.exists()
    # the parameter node survived as a singleton but was reset; the panel re-read it after the close
    assert len(reread) == 1
    names, t2_ref, n_volumes = reread[0]
    assert not list(names or [])
    assert t2_ref is None and n_volumes == 0
    assert logic.poll().running is False
    with pytest.raises(InputError, match="no finished segmentation"):
        logic.import_result()

    # the logic survives: the next case runs to the end in the same scene
    params = load_midrt(scene)
    logic.boxes_from_prior(params.prior, params.t2)
    logic.start(params.to_run_parameters())
    t_end = time.monotonic() + 240
    while logic.running and time.monotonic() < t_end:
        logic.poll()
        time.sleep(0.2)
    state = logic.poll()
    assert state.state == "succeeded", state.error
    assert device_used(logic.run) == "cpu" and device_used_text(logic.run).startswith("Last run used: CPU")
    seg = logic.import_result()
    assert seg.GetSegmentation().GetNumberOfSegments() == 2

    # a close with nothing running cancels nothing and still re-reads
    scene.Clear(0)
    assert guard.cancelled_runs == 1 and len(reread) == 2
    guard.remove()
    scene.Clear(0)
    assert len(reread) == 2
