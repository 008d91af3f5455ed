"""The real worker (``python -m HNTumorSegLib.worker``) running the real pipeline and the bundled
demo model, in real child processes: event order, cancel, crash, error kinds, no leaks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import still_running

from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.progress import STAGES
from HNTumorSegLib.protocol import ErrorEvent, ProgressEvent, ResultEvent
from HNTumorSegLib.runner import WorkerRun

MODEL = os.environ.get("HNTUMORSEG_TEST_MODEL", "demo-midrt")  # the bundled demo model


def _case(root: Path, shape=(24, 64, 64), seed=2) -> dict:
    case = make_midrt_case(seed=seed, shape=shape, n_nodes=2)
    root.mkdir(parents=True, exist_ok=True)
    t2, prior = root / "mid_T2.nii.gz", root / "prior.nii.gz"
    write_image(case["midRT_T2"], t2)
    write_image(case["preRT_mask_registered"], prior)
    return {"task": "midrt", "model": MODEL, "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
            "output_path": str(root / "out" / "labels.nii.gz"), "device": "cpu"}


@pytest.fixture(scope="module")
def small_request(tmp_path_factory) -> dict:
    return _case(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def long_request(tmp_path_factory) -> dict:
    # Big enough, with TTA, that inference lasts seconds: time to cancel or kill in the middle of it.
    req = _case(tmp_path_factory.mktemp("long"), shape=(40, 192, 192), seed=4)
    req["tta"] = True
    return req


def _run(req: dict, tmp_path: Path, **kw) -> WorkerRun:
    run = WorkerRun(temp_parent=tmp_path, env={"OMP_NUM_THREADS": "1"}, **kw)
    return run.start(SegmentRequest.from_dict(req))   # the request is made (and checked) here


def _until_inference(run: WorkerRun, timeout: float = 120) -> list:
    seen, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end and run.running:
        seen += run.poll()
        if any(isinstance(e, ProgressEvent) and e.stage == "inference" and 0 < (e.stage_fraction or 0) < 1
               for e in seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"no inference progress: {seen} {run.final} {list(run.stderr_tail)}")


def test_events_in_order_with_rising_fraction(small_request, tmp_path):
    req = dict(small_request, output_path=str(tmp_path / "labels.nii.gz"))
    run = _run(req, tmp_path)
    final = run.wait(timeout=300)
    assert run.state == "succeeded", (final, list(run.stderr_tail))
    progress = [e for e in run.events if isinstance(e, ProgressEvent)]
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    order = [name for name, _ in STAGES]
    stages = [order.index(e.stage) for e in progress]
    assert stages == sorted(stages), [e.stage for e in progress]
    assert {"load", "inference", "write"} <= {e.stage for e in progress}
    assert any("tile" in e.message for e in progress if e.stage == "inference")
    assert any(e.eta_s is not None for e in progress[1:])
    assert isinstance(final, ResultEvent) and final is run.events[-1]
    labels = read_image(final.files["labels"], label=True)
    assert set(map(int, set(labels.array.ravel()))) <= {0, 1, 2}
    assert {"load", "inference", "write", "total"} <= set(final.timings)
    # case-neutral progress: no input path, no file name in any message
    assert not any("mid_T2" in e.message or str(tmp_path) in e.message for e in progress)


def test_cancel_during_inference_leaves_no_process_temp_or_output(long_request, tmp_path):
    req = dict(long_request, output_path=str(tmp_path / "out" / "labels.nii.gz"))
    run = _run(req, tmp_path)
    _until_inference(run)
    tree = [run.proc.pid] + [p.pid for p in psutil.Process(run.proc.pid).children(recursive=True)]
    t0 = time.monotonic()
    run.cancel()
    # bounded by the kill's grace period + ~0.5 s; 30 s leaves room for a loaded machine and
    # is far below the seconds of inference left
    assert time.monotonic() - t0 < 30.0
    assert run.state == "cancelled" and run.final.kind == "cancelled"
    assert still_running(tree) == []
    assert not run.temp_dir.exists() and list(tmp_path.glob("hntumorseg-run-*")) == []
    assert not Path(req["output_path"]).exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_sigkill_during_inference_is_reported_as_crash(long_request, tmp_path):
    req = dict(long_request, output_path=str(tmp_path / "labels.nii.gz"))
    run = _run(req, tmp_path)
    _until_inference(run)
    os.kill(run.proc.pid, signal.SIGKILL)
    final = run.wait(timeout=120)
    assert run.state == "crashed" and isinstance(final, ErrorEvent) and final.kind == "crashed"
    assert "stopped unexpectedly" in final.message and "SIGKILL" in final.message
    assert not run.temp_dir.exists()
    assert not Path(req["output_path"]).exists()


def test_missing_input_is_bad_input_naming_the_file(small_request, tmp_path):
    req = dict(small_request, input_paths={"T2": str(tmp_path / "no_such_T2.nii.gz")},
               output_path=str(tmp_path / "labels.nii.gz"))
    run = _run(req, tmp_path)
    final = run.wait(timeout=120)
    assert run.state == "failed" and run.returncode == 2
    assert final.kind == "bad_input" and "no_such_T2.nii.gz" in final.message
    assert "Traceback" not in final.message and not Path(req["output_path"]).exists()


def test_unknown_model_is_model_error(small_request, tmp_path):
    req = dict(small_request, model=str(tmp_path / "no-model-here"), output_path=str(tmp_path / "l.nii.gz"))
    run = _run(req, tmp_path)
    final = run.wait(timeout=120)
    assert run.state == "failed" and final.kind in ("model", "bad_input") and run.returncode == 2


def test_error_kinds_map_real_exceptions():
    import torch

    from HNTumorSegLib.errors import DeviceError, InputError, ModelError
    from HNTumorSegLib.worker import error_event, is_out_of_memory

    assert error_event(InputError("bad", "x.nii.gz", "fix it")).kind == "bad_input"
    assert error_event(ModelError("bad card")).kind == "model"
    assert error_event(DeviceError("no cuda")).kind == "device"
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(oom) and error_event(oom).kind == "out_of_memory"
    ev = error_event(KeyError("secret_patient_name"))
    assert ev.kind == "internal" and "secret_patient_name" not in ev.message


@pytest.mark.slow
def test_twenty_runs_leave_no_fds_processes_or_temp_folders(small_request, tmp_path):
    """20 runs ending every way (success, bad input, cancel, SIGKILL): nothing grows in the parent."""
    me = psutil.Process()

    def snapshot():
        return me.num_fds(), len(me.children(recursive=True)), len(list(tmp_path.glob("hntumorseg-run-*")))

    # one warm-up run so lazily opened files of this process (imports, logging) are not counted
    _run(dict(small_request, output_path=str(tmp_path / "w.nii.gz")), tmp_path).wait(timeout=300)
    before = snapshot()
    endings = []
    for i in range(20):
        mode = ("ok", "bad", "cancel", "kill")[i % 4]
        req = dict(small_request, output_path=str(tmp_path / f"l{i}.nii.gz"))
        if mode == "bad":
            req["input_paths"] = {"T2": str(tmp_path / "missing.nii.gz")}
        run = _run(req, tmp_path)
        if mode in ("cancel", "kill"):
            while run.running and not any(isinstance(e, ProgressEvent) for e in run.events):
                run.poll()
                time.sleep(0.01)
            if mode == "cancel":
                run.cancel()
            else:
                os.kill(run.proc.pid, signal.SIGKILL)
        run.wait(timeout=300)
        endings.append(run.state)
        del run
    assert endings.count("succeeded") == 5 and endings.count("failed") == 5
    assert endings.count("cancelled") == 5 and endings.count("crashed") == 5
    t_end = time.monotonic() + 30  # ended children may take a moment to go on a loaded machine
    while (after := snapshot()) != before and time.monotonic() < t_end:
        time.sleep(0.1)
    assert after == before, f"fds/children/temp folders before {before}, after {after}"


def test_gpu_oom_retries_once_in_low_memory_mode(small_request, tmp_path, monkeypatch):
    """Fault injection (no GPU on the test machines): the first pipeline call raises torch's real
    OutOfMemoryError; the worker must retry once with low_memory=True through the real pipeline,
    and report out_of_memory when the retry runs out of memory too."""
    import torch

    import HNTumorSegLib.pipeline as pipeline
    from HNTumorSegLib.worker import error_event, run_request

    real = pipeline.run_segmentation
    calls = []

    def first_call_ooms(request, progress=None, low_memory=False):
        calls.append(low_memory)
        if not low_memory:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(request, progress=progress, low_memory=low_memory)

    monkeypatch.setattr(pipeline, "run_segmentation", first_call_ooms)
    events = []
    req = SegmentRequest.from_dict(dict(small_request, output_path=str(tmp_path / "l.nii.gz")))
    result = run_request(req, events.append)
    assert calls == [False, True] and result.info["oom_retries"] == 1
    assert Path(result.files["labels"]).is_file()
    assert any("retrying once in low-memory mode" in e.message for e in events)

    def always_ooms(request, progress=None, low_memory=False):
        calls.append(low_memory)
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(pipeline, "run_segmentation", always_ooms)
    calls.clear()
    with pytest.raises(torch.OutOfMemoryError) as info:
        run_request(req, events.append)
    assert calls == [False, True]
    assert error_event(info.value).kind == "out_of_memory"
