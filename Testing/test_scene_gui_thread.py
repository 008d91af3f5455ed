"""Apply holds Slicer's GUI thread at most 0.1 s at 300x512x512 (issue 26, item 5), on slicer-core.

The panel's Apply slot calls ``SegmentationSceneLogic.start`` (through the scene's session) and
its 200 ms timer calls ``poll``; each call is timed here. Before, ``start`` wrote every input as
``.nii.gz`` and read it back on the GUI thread (3.6 s per 300x512x512 CT on an idle 2-core
machine) and the panel probed the device there (up to 120 s); now a thread does both and the
run has a ``preparing`` stage. The request must still reach the worker with the same content:
the "worker" here is a real child process through the same runner that copies the folder it
was given, and its inputs are compared voxel for voxel with the old path's ``.nii.gz`` files.
The 0.1 s limits are the issue's; they hold with a margin of several times on a busy machine
(the work left on the GUI thread is MRML reads and numpy views, no copies, no I/O).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("slicer", "pip install slicer-core")

from faults_testlib import wait_until  # noqa: E402

from HNTumorSegLib.image import Image, read_image, write_image  # noqa: E402
from HNTumorSegLib.prompts.boxes import write_boxes  # noqa: E402
from HNTumorSegLib.runner import WorkerRun  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import boxes_from_roi_nodes, lesion_roi_nodes  # noqa: E402

pytestmark = pytest.mark.slow   # ~31 s here: the old path's .nii.gz of 300x512x512, written for the comparison

SHAPE = (300, 512, 512)
GUI_LIMIT_S = 0.1
#: the stand-in worker: keeps the folder the runner handed over, answers with a result event
KEEP_WORKER = (
    "import shutil, sys\n"
    "from pathlib import Path\n"
    "from HNTumorSegLib.protocol import ResultEvent\n"
    "shutil.copytree(Path(sys.argv[1]).parent, sys.argv[2])\n"
    "print(ResultEvent(files={}, info={'kept': sys.argv[2]}).to_json(), flush=True)\n")


class StandInJob(WorkerRun):
    """A session job's shape (``start(request, refine=)``) over a stand-in worker script."""

    def start(self, request, refine=None):
        self.refine_spec = refine
        return super().start(request)


class StandInClient:
    """A session client's shape for the scene's refinement: each job runs ``script`` with the request's
    path and ``arg`` (the refinement GUI-thread tests use it with their own scripts)."""

    def __init__(self, script: str, arg: Path):
        self.script, self.arg, self.jobs = script, arg, []

    def new_job(self, timeout_s=None):
        job = StandInJob(timeout_s=600, argv=[sys.executable, "-c", self.script, "{request}", str(self.arg)])
        self.jobs.append(job)
        return job

    def close(self):
        pass


def refinement_scene():
    """A clinical-size scene ready to refine: the T2 and prior (:func:`clinical_size_case`), the prior
    as a segmentation, the scene logic with the prior's lesion boxes. Returns
    ``(scene, t2, prior_image, t2_node, prior_node, seg, logic)``."""
    scene = make_scene().scene
    t2, prior_image, t2_node, prior_node = clinical_size_case(scene)
    from HNTumorSegLib.scene.segmentation_io import import_label_map

    seg = import_label_map(scene, prior_image, t2_node)
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    logic.boxes_from_prior(prior_node, t2_node)
    return scene, t2, prior_image, t2_node, prior_node, seg, logic


def clinical_size_case(scene):
    """A mid-RT T2 (int16, bit-reproducible pattern, slightly oblique) and its prior (two lesions) at
    300x512x512 in ``scene``: (T2 image, prior image, T2 node, prior node). The refinement test uses it too."""
    t2 = (np.arange(np.prod(SHAPE), dtype=np.int64) % 1013).astype(np.int16).reshape(SHAPE)
    direction = np.array([[1.0, 0, 0], [0, 0.9998, -0.02], [0, 0.02, 0.9998]])
    t2 = Image(t2, (0.5, 0.5, 2.0), (-120.0, -110.0, 30.0), direction)
    prior = np.zeros(SHAPE, np.uint8)
    prior[140:160, 200:260, 220:280] = 1
    prior[150:165, 300:330, 120:150] = 2
    prior_image = t2.with_array(prior)
    t2_node = volume_node_from_image(scene, t2, "midRT_T2")
    prior_node = volume_node_from_image(scene, prior_image, "prior", label=True)
    return t2, prior_image, t2_node, prior_node


@pytest.fixture(scope="module")
def big():
    """The clinical-size case in a scene of its own: (scene, T2 node, prior node)."""
    scene = make_scene().scene
    _, _, t2_node, prior_node = clinical_size_case(scene)
    return scene, t2_node, prior_node


def _cpu_wait_s() -> float:
    """Seconds this thread has waited for a CPU so far (Linux schedstat; 0.0 where not available)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def timed(call):
    """(``call()``'s value, the seconds the GUI thread was held by it).

    Held = wall time less the time the thread waited for a CPU that other processes had (a
    loaded machine, issue 22: at load 8 on 2 cores a 20 ms slot can wait 200 ms for a core).
    Work on the thread, and any wait for a file, a lock or another thread, still counts.
    """
    w0, t0 = _cpu_wait_s(), time.perf_counter()
    value = call()
    return value, max(0.0, time.perf_counter() - t0 - (_cpu_wait_s() - w0))


def poll_timed(busy, poll, limit_s: float = 600):
    """The panel's timer: ``poll()`` every 50 ms while ``busy()``, and once more at the end:
    ([seconds of each poll], [each poll's state])."""
    seconds, states = [], []
    t_end = time.monotonic() + limit_s
    while busy() and time.monotonic() < t_end:
        state, s = timed(poll)
        seconds.append(s)
        states.append(state)
        time.sleep(0.05)
    state, s = timed(poll)
    return seconds + [s], states + [state]


def _apply_and_poll(logic, params, argv):
    """The panel's Apply slot and its timer: (start seconds, [poll seconds], [states])."""
    _, start_s = timed(lambda: logic.start(params, argv=argv))
    polls, states = poll_timed(lambda: logic.running, logic.poll)
    return start_s, polls, states


def test_apply_holds_the_gui_thread_at_most_0_1_s_and_the_worker_gets_the_same_inputs(big, tmp_path, ended_logics):
    scene, t2, prior = big
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    ended_logics.append(logic)
    logic.boxes_from_prior(prior, t2)
    params = Parameters(task="midrt", inputs={"T2": t2.GetID()}, prior=prior.GetID(), model="demo-midrt",
                        device="cpu")
    kept = tmp_path / "kept"
    start_s, polls, states = _apply_and_poll(logic, params, [sys.executable, "-c", KEEP_WORKER, "{request}", str(kept)])

    assert logic.run.state == "succeeded", (states[-1].error, list(logic.run.stderr_tail))
    assert states[0].state == "preparing" and states[0].stage == "preparing"   # shown with progress
    assert start_s <= GUI_LIMIT_S, f"Apply held the GUI thread {start_s:.3f} s"
    assert max(polls) <= GUI_LIMIT_S, f"a poll held the GUI thread {max(polls):.3f} s ({len(polls)} polls)"
    print(f"\nGUI thread at {SHAPE}: start {start_s * 1000:.1f} ms, polls max {max(polls) * 1000:.1f} ms "
          f"over {len(polls)} polls")

    # the same request content as the old path (.nii.gz written and read back on the GUI thread)
    request = json.loads((kept / "request.json").read_text())
    assert request["task"] == "midrt" and request["model"] == "demo-midrt" and request["device"] == "cpu"
    assert request["restrict_to_boxes"] is False and request["tta"] is False
    old = tmp_path / "old"
    old.mkdir()
    old_t2 = read_image(write_image(image_from_volume_node(t2), old / "T2.nii.gz"))
    old_prior = read_image(write_image(image_from_volume_node(prior), old / "prior.nii.gz"), label=True)
    for new_path, old_img, label in ((request["input_paths"]["T2"], old_t2, False),
                                     (request["prior_path"], old_prior, True)):
        assert new_path.endswith(".nii")   # uncompressed: only our worker reads it, once
        new = read_image(kept / Path(new_path).name, label=label)
        assert new.same_grid(old_img) and new.array.dtype == old_img.array.dtype
        np.testing.assert_array_equal(new.array, old_img.array)
    old_boxes = write_boxes(boxes_from_roi_nodes(lesion_roi_nodes(scene)), old / "boxes.json")
    assert (kept / "boxes.json").read_bytes() == old_boxes.read_bytes()


def test_cancel_while_preparing_returns_at_once_and_leaves_nothing(big, tmp_path, ended_logics):
    scene, t2, prior = big
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    ended_logics.append(logic)
    params = Parameters(task="midrt", inputs={"T2": t2.GetID()}, prior=prior.GetID(), model="demo-midrt",
                        device="cpu")
    prep, start_s = timed(lambda: logic.start(params, argv=[sys.executable, "-c", "raise SystemExit(3)"]))
    work, out = prep.work, prep.out
    state = logic.poll()
    assert state.running and state.state == "preparing"
    _, cancel_s = timed(logic.cancel)
    assert cancel_s <= GUI_LIMIT_S and start_s <= GUI_LIMIT_S
    assert not logic.running and logic.poll().running is False
    wait_until(lambda: prep.done and not work.exists() and not out.exists(), "the preparation's clean-up")
    assert logic.run is None   # no worker was started

    # the device probe runs in the thread too (a child Python), and the next Apply works
    logic.check_device = True
    kept = tmp_path / "kept"
    start_s, polls, states = _apply_and_poll(logic, params, [sys.executable, "-c", KEEP_WORKER, "{request}", str(kept)])
    assert logic.run.state == "succeeded", states[-1].error
    assert start_s <= GUI_LIMIT_S and max(polls) <= GUI_LIMIT_S, (start_s, max(polls))
    assert any(s.device == "cpu" for s in states) and logic.devices == {"cpu": "cpu"}


def test_held_time_counts_blocking_but_not_waiting_for_a_cpu_others_hold():
    """``timed``: a sleep (a lock, a file) counts whole; a CPU shared with a busy process counts
    only the thread's own share (the GUI-thread limits hold on a loaded machine, issue 22)."""
    import os
    import subprocess

    _, slept = timed(lambda: time.sleep(0.2))
    assert slept >= 0.19
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        pytest.fail("no Linux schedstat: the GUI-thread limits would count a loaded machine's waits")
    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        os.sched_setaffinity(0, {cpu})        # this thread and the hog on one CPU: about half each
        time.sleep(0.3)                        # the hog is running

        def spin():
            t_end = time.thread_time() + 0.3   # 0.3 s of this thread's own CPU time
            while time.thread_time() < t_end:
                pass

        w0 = time.perf_counter()
        _, held = timed(spin)
        wall = time.perf_counter() - w0
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait()
    assert 0.25 <= held < 0.8 * wall, (held, wall)   # its own 0.3 s, not the time the hog had the CPU
