"""Update while editing on a real MRML scene (slicer-core) with a real session process: Apply goes
through the scene's session; several quick moves of a box give ONE refinement after the debounce
(fake clock); only that lesion's segment changes, inside its box; a manual edit in another segment
survives; undo puts the segments back; closing the scene ends the session."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.prompts.boxes import box_to_index_slices  # noqa: E402
from HNTumorSegLib.scene.inputs import load_case_folder  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene  # noqa: E402
from HNTumorSegLib.scene.refinement import Debouncer, SceneSession, segment_mask, set_segment_mask  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import box_from_roi_node, lesion_roi_nodes  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import segment_ids_by_label  # noqa: E402
from HNTumorSegLib.session import SessionClient  # noqa: E402


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_debouncer_fires_once_after_the_last_change():
    clock = FakeClock()
    d = Debouncer(0.5, clock=clock)
    for _ in range(4):
        d.touch("roi")
        clock.t += 0.2
        assert d.due() == []
    clock.t += 0.31
    assert d.due() == ["roi"] and d.due() == [] and d.pending == []


@pytest.fixture
def scene_case(tmp_path):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    ids = write_hntsmrg_cohort(tmp_path / "cohort", n=1, seed=5, shape=(16, 64, 64), spacing=(0.9, 0.9, 3.0))
    app = make_scene()
    nodes = load_case_folder(app.scene, tmp_path / "cohort" / ids[0])
    return app, nodes


def _wait(ss: SceneSession, clock: FakeClock, timeout: float = 300.0):
    states, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end:
        clock.t += 0.2
        states.append(ss.tick())
        if not ss.refining and not ss.debouncer.pending:
            return states
        time.sleep(0.05)
    raise AssertionError(f"refinement did not finish: {states[-3:]}")


def test_box_moved_in_the_scene_refines_that_lesion_once_and_keeps_manual_edits(scene_case):
    app, nodes = scene_case
    scene = app.scene
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    clock = FakeClock()
    ss = SceneSession(scene, logic, clock=clock,
                      client_factory=lambda python=None, device=None: SessionClient(device=device,
                                                                                     env={"OMP_NUM_THREADS": "1"}))
    try:
        t2 = nodes["midRT_T2"]
        logic.boxes_from_prior(nodes["preRT_mask_registered"], t2, model="demo-midrt")
        params = Parameters(task="midrt", inputs={"T2": t2.GetID()}, prior=nodes["preRT_mask_registered"].GetID(),
                            model="demo-midrt", device="cpu", quality="fast")
        ss.apply(params)                                      # the first Apply starts the session
        t_end = time.monotonic() + 300
        while logic.running and time.monotonic() < t_end:
            logic.poll()
            time.sleep(0.1)
        assert logic.run.state == "succeeded", (logic.run.final, list(ss.client.stderr_tail))
        seg = logic.import_result()
        ss.track(seg, params)
        ss.update_while_editing = True
        reference = image_from_volume_node(t2)
        groups = segment_ids_by_label(seg)
        gtvp, gtvn = groups[1][0], groups[2][0]

        roi = next(n for n in lesion_roi_nodes(scene) if n.GetName().startswith("GTVn"))
        old_box = box_from_roi_node(roi)
        # a manual edit in the GTVp segment, far from the GTVn box (and from where it will move)
        manual = segment_mask(seg, gtvp, t2)
        manual[-2:, :3, :3] = True
        set_segment_mask(seg, gtvp, manual, t2)
        before = {sid: segment_mask(seg, sid, t2) for sid in (gtvp, gtvn)}

        centre = np.array(roi.GetCenter())
        for step in range(4):                       # four quick moves, 0.1 s apart: one refinement
            roi.SetCenter(*(centre + [1.0 * (step + 1), 0.5, 0.0]))
            clock.t += 0.1
            assert not ss.tick().running and ss.job is None
        roi.GetDisplayNode().SetSelected(True)       # display-only change: not a move
        states = _wait(ss, clock)
        assert ss.refinements == 1, [s for s in states if s.message or s.error]
        assert any(s.refined == roi.GetName() for s in states)
        final = ss.last_final
        assert final.info["session"]["model_loads"] == 1 and ss.client.starts == 1   # warm: no reload
        assert final.info["refined_boxes"] == [roi.GetName()]

        new_box = box_from_roi_node(roi)
        assert new_box != old_box
        inside = np.zeros(reference.array.shape, bool)
        inside[box_to_index_slices(new_box, reference)] = True
        after = {sid: segment_mask(seg, sid, t2) for sid in (gtvp, gtvn)}
        np.testing.assert_array_equal(after[gtvn][~inside], before[gtvn][~inside])   # GTVn outside its box
        assert after[gtvp][-2:, :3, :3].all()                                          # the manual edit survived
        np.testing.assert_array_equal(after[gtvp] & ~inside, before[gtvp] & ~inside)
        assert not (after[gtvp] & after[gtvn]).any()

        assert ss.undo() and not ss.undo()                                             # one level of undo
        for sid in (gtvp, gtvn):
            np.testing.assert_array_equal(segment_mask(seg, sid, t2), before[sid])

        client = ss.client
        pid = client.pid
        scene.Clear(0)                                                                 # scene close ends the session
        assert ss.client is None and not client.alive and pid is not None
        assert not client.temp_dir.exists()
    finally:
        ss.cleanup()


def test_one_session_per_scene_restarted_when_model_or_device_changes():
    app = make_scene()
    logic = SegmentationSceneLogic(app.scene)
    ss = SceneSession(app.scene, logic)
    assert logic.run_factory is not None and ss.client is None          # nothing runs before the first Apply
    cpu = Parameters(task="midrt", model="demo-midrt", device="cpu")
    first = ss.client_for(cpu)
    assert ss.client_for(cpu) is first                                   # same model and device: same session
    other_device = ss.client_for(Parameters(task="midrt", model="demo-midrt", device="cuda"))
    assert other_device is not first and not first.temp_dir.exists()     # the old one was closed
    other_model = ss.client_for(Parameters(task="midrt", model="demo-petct", device="cuda"))
    assert other_model is not other_device and not other_device.temp_dir.exists()
    ss.cleanup()                                                         # module cleanup
    assert ss.client is None and not other_model.temp_dir.exists() and logic.run_factory is None
