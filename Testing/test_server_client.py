"""The segmentation server's client (issue 29, :mod:`HNTumorSegLib.server.client`) against a real
``hntumorseg serve`` on 127.0.0.1 (a child process, :mod:`server_testlib`), with the bundled demo
mid-RT model on phantom cases:

* a result through the server is voxel-identical to a local run, and progress events arrive;
* ``hntumorseg segment --server`` writes the same label map; a token file others can read is one
  line, exit 2, nothing written;
* cancel ends the job within about 2 s, nothing written;
* the server killed mid-job: one line ("lost the connection ... nothing was written"), no output,
  no temp file beside where it would have been (the client API and the command line, exit 1);
* a refinement through the server (against the job's cached inputs) changes nothing outside its box;
* Ctrl-C on ``segment --server`` exits 130 and ends the job on the server; a DICOM series folder is
  zipped, and gives the local run's labels; a wrong token is one line.

Nothing waits a fixed time: each step waits for a condition with a generous limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("httpx")
require_module("fastapi")
require_module("uvicorn")

from server_testlib import THREADS, ServerProcess, wait_until  # noqa: E402
from test_session_server import write_case  # noqa: E402

from HNTumorSegLib.childproc import run_to_end, start  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.pipeline.refine import RefineSpec  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.protocol import ErrorEvent, ProgressEvent, ResultEvent  # noqa: E402
from HNTumorSegLib.server.client import RemoteClient  # noqa: E402

LIMIT_S = 300.0
LOST = "lost the connection to the server"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    return write_case(tmp_path_factory.mktemp("case"))


@pytest.fixture(scope="module")
def slow_case(tmp_path_factory) -> dict:
    """A job of several seconds on one thread (test-time mirroring): time to cancel or kill mid-job."""
    return dict(write_case(tmp_path_factory.mktemp("slow"), shape=(24, 96, 96), seed=4), tta=True)


@pytest.fixture(scope="module")
def local_labels(case, tmp_path_factory) -> np.ndarray:
    from HNTumorSegLib.worker_cli import run_worker

    out = tmp_path_factory.mktemp("local") / "labels.nii.gz"
    final = run_worker(SegmentRequest.from_dict(dict(case, output_path=str(out))), "none")
    assert isinstance(final, ResultEvent), final
    return read_image(out, label=True).array


def request(fields: dict, out: Path, **changes) -> SegmentRequest:
    return SegmentRequest.from_dict(dict(fields, output_path=str(out), **changes))


def wait_for_inference(job) -> None:
    wait_until(lambda: any(isinstance(e, ProgressEvent) and e.stage == "inference" for e in job.poll() + job.events)
               or not job.running, LIMIT_S, "the job's inference stage")
    assert job.running, job.final


def test_result_through_the_server_is_voxel_identical_to_a_local_run(server, case, local_labels, tmp_path):
    out = tmp_path / "remote" / "labels.nii.gz"
    with server.client() as client:
        job = client.submit(request(case, out))
        final = job.wait(timeout=LIMIT_S)
    assert isinstance(final, ResultEvent), final
    assert final.files == {"labels": str(out)} and final.info["job_id"] == job.id
    np.testing.assert_array_equal(read_image(out, label=True).array, local_labels)
    progress = [e for e in job.events if isinstance(e, ProgressEvent)]
    assert progress and {"inference"} <= {e.stage for e in progress}
    assert [e.fraction for e in progress] == sorted(e.fraction for e in progress)
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.nii.gz"]   # no temp file left


def segment_argv(fields: dict, out: Path, server_url: str, token_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "HNTumorSegLib", "segment", "--task", "midrt", "--model", fields["model"],
            "--input", f"T2={fields['input_paths']['T2']}", "--prior", fields["prior_path"], "--folds", "first",
            "--output", str(out), "--server", server_url, "--token-file", str(token_path), *extra]


def test_segment_command_with_server_writes_the_same_labels(server, case, local_labels, tmp_path):
    out = tmp_path / "cli" / "labels.nii.gz"
    done = run_to_end(segment_argv(case, out, server.url, server.token_path, "--progress", "none"), LIMIT_S, env=THREADS)
    assert done.returncode == 0, done.stderr_tail
    np.testing.assert_array_equal(read_image(out, label=True).array, local_labels)

    shared = tmp_path / "shared-token"                 # a token file others can read: refused, nothing written
    shared.write_text(server.token + "\n")
    shared.chmod(0o644)
    out2 = tmp_path / "cli2" / "labels.nii.gz"
    done = run_to_end(segment_argv(case, out2, server.url, shared), LIMIT_S, env=THREADS)
    err = [line for line in done.stderr_tail if line.strip()]
    assert done.returncode == 2 and len(err) == 1, (done.returncode, err)
    assert "readable by others" in err[0] and "chmod 600" in err[0], err
    assert not out2.parent.exists() or not any(out2.parent.iterdir())


def test_cancel_ends_the_job_within_two_seconds_and_writes_nothing(server, slow_case, tmp_path):
    import time

    out = tmp_path / "cancelled" / "labels.nii.gz"
    with server.client() as client:
        job = client.submit(request(slow_case, out))
        wait_for_inference(job)
        t0 = time.monotonic()
        job.cancel()
        took = time.monotonic() - t0
    assert job.state == "cancelled" and isinstance(job.final, ErrorEvent) and job.final.kind == "cancelled"
    assert took < 3.0, took
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_server_killed_mid_job_is_one_line_and_no_output(tmp_path, slow_case):
    out = tmp_path / "lost" / "labels.nii.gz"
    with ServerProcess(tmp_path / "doomed") as doomed, doomed.client(reconnect_s=1.0) as client:
        job = client.submit(request(slow_case, out))
        wait_for_inference(job)
        doomed.kill()
        final = job.wait(timeout=60.0)
    assert isinstance(final, ErrorEvent) and final.kind == "crashed", final
    assert final.message.startswith(LOST) and "\n" not in final.message
    assert doomed.url in final.message and job.id in final.message and "nothing was written" in final.message
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


@pytest.mark.slow
def test_segment_command_server_killed_mid_job_exits_1_with_one_line(tmp_path, slow_case):
    out = tmp_path / "lost-cli" / "labels.nii.gz"
    with ServerProcess(tmp_path / "doomed-cli") as doomed:
        child = start(segment_argv(slow_case, out, doomed.url, doomed.token_path, "--tta", "--progress", "bar"),
                      env=THREADS, name="cli")
        wait_until(lambda: child.read(timeout=0.1) is not None and any("inference" in s for s in child.stderr_tail)
                   or not child.alive, LIMIT_S, "the command's inference stage")
        doomed.kill()
        code = child.wait(timeout=60.0)
        child.read_to_eof(5.0)
    assert code == 1, list(child.stderr_tail)
    last = [line for line in child.stderr_tail if line.strip()][-1]
    assert last.startswith("hntumorseg: " + LOST) and "nothing was written" in last, last
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_refinement_through_the_server_changes_nothing_outside_its_box(server, case, tmp_path):
    from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask, write_boxes

    base_out = tmp_path / "base.nii.gz"
    with server.client() as client:
        first = client.run(request(case, base_out))
        assert isinstance(first, ResultEvent), first
        base = read_image(base_out, label=True)
        boxes = boxes_from_mask(read_image(case["prior_path"], label=True), margin_vox=4)
        edited = next(b for b in boxes if b.label == 2)
        d = np.array([3.0, -2.0, 0.0])
        new_box = LesionBox(2, edited.name, tuple(np.asarray(edited.min_ras) + d), tuple(np.asarray(edited.max_ras) + d))
        write_boxes([new_box if b is edited else b for b in boxes], tmp_path / "boxes.json")
        refined_out = tmp_path / "refined.nii.gz"
        refine_req = request(case, refined_out, boxes_path=str(tmp_path / "boxes.json"), prior_path=None)
        final = client.run(refine_req, refine=RefineSpec(str(base_out), (edited.name,)))
    assert isinstance(final, ResultEvent), final
    refined = read_image(refined_out, label=True).array
    inside = np.zeros(refined.shape, bool)
    inside[box_to_index_slices(new_box, base)] = True
    np.testing.assert_array_equal(refined[~inside], base.array[~inside])
    assert final.info["job_id"] != first.info["job_id"]


def test_wrong_token_is_one_line_and_nothing_is_written(server, case, tmp_path):
    out = tmp_path / "denied.nii.gz"
    with RemoteClient(server.url, "not-the-token-at-all-0000") as client:
        final = client.run(request(case, out))
    assert isinstance(final, ErrorEvent) and final.kind == "bad_input" and "401" in final.message, final
    assert not out.exists()


def test_segment_command_ctrl_c_cancels_the_job_on_the_server(server, slow_case, tmp_path):
    import signal

    out = tmp_path / "interrupted" / "labels.nii.gz"
    child = start(segment_argv(slow_case, out, server.url, server.token_path, "--tta", "--progress", "bar"),
                  env=THREADS, name="cli")
    wait_until(lambda: child.read(timeout=0.1) is not None and any("inference" in s for s in child.stderr_tail)
               or not child.alive, LIMIT_S, "the command's inference stage")
    child.proc.send_signal(signal.SIGINT)
    assert child.wait(timeout=30.0) == 128 + signal.SIGINT, list(child.stderr_tail)
    with server.client() as client:   # the server's job ends too (DELETE on the way out)
        wait_until(lambda: client.health()["jobs"]["running"] == 0, 10.0, "the server's job to end (cancelled)")
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_a_dicom_series_folder_is_zipped_and_gives_the_local_result(server, tmp_path):
    from HNTumorSegLib.image import write_image
    from HNTumorSegLib.phantoms import make_midrt_case
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    from HNTumorSegLib.worker_cli import run_worker

    case = make_midrt_case(seed=2, shape=(16, 48, 48), n_nodes=2)
    write_dicom_series(case["midRT_T2"], tmp_path / "T2 series", modality="MR")
    write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    fields = {"task": "midrt", "model": "demo-midrt", "input_paths": {"T2": str(tmp_path / "T2 series")},
              "prior_path": str(tmp_path / "prior.nii.gz"), "device": "cpu", "folds": "first"}
    local = run_worker(request(fields, tmp_path / "local.nii.gz"), "none")
    assert isinstance(local, ResultEvent), local
    with server.client() as client:
        final = client.run(request(fields, tmp_path / "remote.nii.gz"))
    assert isinstance(final, ResultEvent), final
    np.testing.assert_array_equal(read_image(tmp_path / "remote.nii.gz", label=True).array,
                                  read_image(tmp_path / "local.nii.gz", label=True).array)
