"""Issue 11: odd inputs and odd names end as exit 2 with one line, or succeed - never "internal error".

FIFO input (exit 2, not a hang), NIfTI geometry (zero pixdim ...), a deeply nested
boxes.json, an upper-case suffix, a 250-byte file name, a read-only disk, batch options that used
to fail inside every worker, ``demo --out`` into a folder with files, and the worker-client
endings (internal error shows the log tail and its path; a kill right after the result is success).
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import sys
import textwrap
import threading

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.protocol import ErrorEvent, ResultEvent
from HNTumorSegLib.runner import WorkerRun
from faults_testlib import hashes, hntumorseg, one_error_line, small_tmpfs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def midrt(tmp_path):
    case = make_midrt_case(seed=0)
    return (write_image(case["midRT_T2"], tmp_path / "t2.nii.gz"),
            write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz"))


def _segment(t2, prior, out, *extra) -> list[str]:
    return ["segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", str(prior), "--output", str(out),
            "--device", "cpu", "--progress", "none", *map(str, extra)]


def test_fifo_input_is_refused_not_waited_on(tmp_path, midrt, capsys):
    _t2, prior = midrt
    fifo = tmp_path / "t2_fifo.nii.gz"
    os.mkfifo(fifo)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(_segment(fifo, prior, tmp_path / "o.nii.gz"))),
                              daemon=True)
    thread.start()
    thread.join(300)  # opening a FIFO with no writer blocks for ever; a refusal returns (seconds, or more when loaded)
    assert not thread.is_alive(), "segment hangs on a FIFO input"
    assert result["code"] == 2
    assert "FIFO" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def _nifti_with(path, offset: int, fmt: str, value) -> None:
    write_image(Image(np.random.default_rng(0).random((8, 9, 10)).astype(np.float32), (0.5, 0.6, 0.7)),
                path.with_name("plain.nii"))
    raw = bytearray(path.with_name("plain.nii").read_bytes())
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *value)
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("field,offset,fmt,value", [
    ("pixdim[1]", 80, "<f", (0.0,)),
    ("pixdim[2]", 84, "<f", (-0.6,)),
    ("pixdim[3]", 88, "<f", (float("inf"),)),
    ("srow (sform) is singular", 280, "<12f", (0.0,) * 12),
    ("qform and sform disagree", 292, "<f", (50.0,)),
])
def test_bad_nifti_geometry_is_exit_2_naming_file_and_field(tmp_path, capsys, field, offset, fmt, value):
    bad = tmp_path / "bad.nii.gz"
    _nifti_with(bad, offset, fmt, value)
    ok = tmp_path / "ok.nii.gz"
    write_image(Image(np.zeros((8, 9, 10), np.uint8), (0.5, 0.6, 0.7)), ok)
    assert main(["evaluate", "--pred", str(ok), "--ref", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and field in err, err


def test_zero_pixdim_input_to_segment_is_exit_2(tmp_path, midrt, capsys):
    t2, prior = midrt
    raw = bytearray(gzip.decompress(t2.read_bytes()))
    raw[84:88] = struct.pack("<f", 0.0)
    bad = tmp_path / "t2_zero.nii.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    assert main(_segment(bad, prior, tmp_path / "o.nii.gz")) == 2
    err = capsys.readouterr().err
    assert "pixdim[2]" in err and "internal" not in err


def test_nested_boxes_json_is_exit_2_not_internal(tmp_path, midrt, capsys):
    t2, prior = midrt
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[" * 100000 + "]" * 100000)
    code = main(["segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--boxes", str(boxes), "--output",
                 str(tmp_path / "o.nii.gz"), "--device", "cpu", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "internal" not in err and "nested" in err, err


@pytest.mark.slow  # two whole segment runs, ~40 s at load ~7 on 2 shared cores: CI runs it
def test_upper_case_suffix_and_250_byte_name_succeed(tmp_path, midrt):
    t2, prior = midrt
    upper_t2 = tmp_path / "T2.NII.GZ"
    upper_t2.write_bytes(t2.read_bytes())
    long_out = tmp_path / ("x" * (250 - len(".nii.gz")) + ".nii.gz")
    assert len(os.fsencode(long_out.name)) == 250
    res = hntumorseg(*_segment(upper_t2, prior, tmp_path / "LABELS.NII.GZ", "--save-boxes", long_out.with_suffix("")
                               .with_suffix(".json")), env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "LABELS.NII.GZ").is_file()
    res = hntumorseg(*_segment(t2, prior, long_out), env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert long_out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_name_over_255_bytes_is_exit_2(tmp_path, midrt, capsys):
    t2, prior = midrt
    assert main(_segment(t2, prior, tmp_path / ("y" * 300 + ".nii.gz"))) == 2
    assert "file name" in capsys.readouterr().err


def test_evaluate_json_on_a_read_only_disk_is_one_line(tmp_path):
    ref = write_image(Image(np.ones((6, 8, 8), np.uint8)), tmp_path / "ref.nii.gz")
    with small_tmpfs(tmp_path / "ro", read_only=True) as ro:
        res = hntumorseg("evaluate", "--pred", ref, "--ref", ref, "--json", ro / "scores.json")
    assert res.returncode == 2, res.stderr
    assert "read-only" in one_error_line(res.stderr)


@pytest.mark.parametrize("option,value,expected", [
    ("--folds", "-1", "fold"), ("--device", "mps", "mps"), ("--timeout", "-5", "--timeout")])
def test_batch_options_refused_up_front(tmp_path, capsys, option, value, expected):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    write_hntsmrg_cohort(tmp_path / "c", n=1, seed=2, shape=(8, 32, 32))
    argv = ["batch", "--layout", "hntsmrg", "--data", str(tmp_path / "c"), "--model", "demo-midrt",
            "--out", str(tmp_path / "out"), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_batch_takes_the_task_from_a_catalogue_card():
    from HNTumorSegLib.batch.cohort import resolve_task

    assert resolve_task("hntsmrg", None, "demo-midrt") == "midrt"


def test_demo_out_into_a_folder_with_files_refused_unless_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "labels.nii.gz").write_text("my own file")
    before = hashes(out)
    assert main(["demo", "--out", str(out), "--progress", "none"]) == 2
    assert "--force" in capsys.readouterr().err
    assert hashes(out) == before


def _script_run(tmp_path, script: str) -> WorkerRun:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(script))
    return WorkerRun(argv=[sys.executable, str(path), "{request}"], temp_parent=tmp_path)


REQUEST = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, output_path="labels.nii.gz")


def test_internal_error_names_the_worker_log_and_shows_its_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("HNTUMORSEG_LOG_DIR", str(tmp_path / "logs"))
    run = _script_run(tmp_path, """
        import json, sys
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ZeroDivisionError: division by zero", file=sys.stderr, flush=True)
        print(json.dumps({"event": "error", "kind": "internal", "message": "internal error (ZeroDivisionError)"}))
        sys.exit(1)
    """)
    run.start(REQUEST)
    final = run.wait(120)
    assert isinstance(final, ErrorEvent) and final.kind == "internal"
    assert "ZeroDivisionError: division by zero" in final.message
    assert run.log_path is not None and str(run.log_path) in final.message
    assert "ZeroDivisionError" in run.log_path.read_text()
    assert oct(run.log_path.stat().st_mode & 0o777) == "0o600"


def test_kill_right_after_the_result_is_a_success_with_one_final_event(tmp_path):
    run = _script_run(tmp_path, """
        import json, os, signal
        print(json.dumps({"event": "result", "files": {"labels": "x.nii.gz"}, "timings": {"total": 0.1}}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    run.start(REQUEST)
    run.wait(120)
    finals = [e for e in run.events if isinstance(e, (ResultEvent, ErrorEvent))]
    assert run.state == "succeeded" and len(finals) == 1 and isinstance(finals[0], ResultEvent)


def test_constant_image_gives_a_warning_in_the_progress_and_the_result(tmp_path, midrt):
    _t2, prior = midrt
    case = make_midrt_case(seed=0)
    flat = write_image(case["midRT_T2"].with_array(np.full(case["midRT_T2"].array.shape, 7.0, np.float32)),
                       tmp_path / "flat.nii.gz")
    res = hntumorseg("segment", "--model", "demo-midrt", "--input", f"T2={flat}", "--prior", prior, "--output",
                     tmp_path / "o.nii.gz", "--device", "cpu", "--progress", "json", env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert any("warning: " in e.get("message", "") and "constant" in e["message"] for e in events)
    assert any("constant" in w for w in events[-1]["info"]["warnings"])


def test_huge_complex_and_small_images_are_warned_about(tmp_path):
    import SimpleITK as sitk

    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.image_checks import patch_warnings

    huge = np.zeros((6, 8, 8), np.float32)
    huge[0, 0, 0] = 3e38
    assert any("3e+38" in w for w in read_image(write_image(Image(huge), tmp_path / "huge.nii.gz")).notes)
    z = (np.random.default_rng(0).random((6, 8, 8)) + 1j).astype(np.complex64)
    sitk.WriteImage(sitk.GetImageFromArray(z), str(tmp_path / "complex.nii.gz"))
    img = read_image(tmp_path / "complex.nii.gz")
    assert np.isrealobj(img.array) and any("complex" in w for w in img.notes)
    small = Image(np.ones((6, 20, 20), np.float32), (1.0, 1.0, 3.0))
    assert patch_warnings(small, (1.0, 1.0, 3.0), (16, 48, 48), "the T2 image")  # 20 < 48 in x and y
    assert patch_warnings(small, (1.0, 1.0, 3.0), (4, 16, 16), "the T2 image") == []
