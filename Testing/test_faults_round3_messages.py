"""Issue 22 item 11: messages say what is true, once, and short.

Before: "the the input T2"; a FIFO reported as "does not exist" or "is not a folder"; an
``outcome --plot`` collision reported as "--json would overwrite"; ``export`` on a full disk
named its hidden temp file; a 50 MB path echoed whole. Real commands as child processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from HNTumorSegLib.errors import MESSAGE_PATH_MAX, InputError, short_path
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case
from faults_testlib import ROOT, fill_disk, hntumorseg, one_error_line, small_tmpfs


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.nii.gz"
    os.mkfifo(path)
    return path


def test_fifo_named_as_a_fifo_and_no_double_the(tmp_path, fifo):
    case = make_midrt_case(seed=0)
    t2 = write_image(case["midRT_T2"], tmp_path / "t2.nii.gz")
    runs = {
        "segment input": ("segment", "--model", "demo-midrt", "--input", f"T2={fifo}", "--output",
                          tmp_path / "o.nii.gz", "--device", "cpu", "--progress", "none"),
        "segment boxes": ("segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--boxes", fifo, "--output",
                          tmp_path / "o.nii.gz", "--device", "cpu", "--progress", "none"),
        "batch data": ("batch", "--layout", "hntsmrg", "--data", fifo, "--model", "demo-midrt", "--task", "midrt",
                       "--out", tmp_path / "out", "--device", "cpu"),
        "evaluate pred": ("evaluate", "--pred", fifo, "--ref", t2),
        "evaluate folder": ("evaluate", "--pred", tmp_path, "--ref", fifo),
        "segment model": ("segment", "--model", fifo, "--input", f"T2={t2}", "--output", tmp_path / "o.nii.gz"),
        "models import": ("models", "import", fifo, "--progress", "none"),
        "models verify": ("models", "verify", fifo),
        "demo out": ("demo", "--out", fifo),
        "outcome clinical": ("outcome", "--model", tmp_path, "--input", f"CT={t2}", "--input", f"PET={t2}",
                             "--labels", t2, "--clinical", fifo),
    }
    for what, args in runs.items():
        res = hntumorseg(*args, timeout=120)
        assert res.returncode == 2, (what, res.stderr[-2000:])
        line = one_error_line(res.stderr)
        assert "FIFO" in line and str(fifo) in line, (what, line)
        assert "does not exist" not in line and "is not a folder" not in line and "is a file" not in line, (what, line)
        assert "the the" not in line.lower(), (what, line)
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "out").exists()


def test_plot_collision_names_plot(tmp_path):
    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(b"not read: the check comes first")
    res = hntumorseg("outcome", "--model", tmp_path / "model", "--input", f"CT={tmp_path / 'ct.nii.gz'}",
                     "--input", f"PET={tmp_path / 'pet.nii.gz'}", "--labels", labels, "--clinical",
                     tmp_path / "ehr.json", "--plot", labels)
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_error_line(res.stderr)
    assert "--plot" in line and "--json" not in line, line
    assert labels.read_bytes() == b"not read: the check comes first"


def test_export_on_a_full_disk_names_the_target_not_the_temp_file(tmp_path):
    from HNTumorSegLib.dicom.read import read_volume
    from HNTumorSegLib.phantoms import make_prert_case
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series

    case = make_prert_case(seed=3, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
    write_dicom_series(case["T2"], tmp_path / "study" / "series", "MR")
    grid = read_volume(tmp_path / "study", name="source")
    labels = write_image(grid.with_array(case["mask"].array.astype(np.uint8)), tmp_path / "labels.nii.gz")
    with small_tmpfs(tmp_path / "disk") as disk:
        fill_disk(disk, 0)
        for flag, name in (("--rtstruct", "rtstruct.dcm"), ("--seg", "seg.dcm")):
            res = hntumorseg("export", "--labels", labels, "--source", tmp_path / "study", flag, disk / name)
            assert res.returncode == 1, res.stderr[-2000:]
            line = one_error_line(res.stderr)
            assert line.split(": ")[2] == str(disk / name) or f"{disk / name}:" in line, line
            assert f"/.{name}." not in line and "free" in line, line


def test_long_paths_are_shortened_in_every_message(tmp_path):
    """A 100 kB path on the command line (near the kernel's limit for one argument), and a 50 MB
    one in a session request: the error line stays short, head and tail of the path kept."""
    long_name = str(tmp_path) + "/" + "/".join(["d" * 200] * 500) + "/labels.nii.gz"   # ~100 kB
    res = hntumorseg("evaluate", "--pred", long_name, "--ref", long_name, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_error_line(res.stderr)
    assert len(line) < 4 * MESSAGE_PATH_MAX and "..." in line and line.count("labels.nii.gz") >= 1, line[:3000]
    huge = "/tmp/" + "x" * (50 * 2**20) + ".nii.gz"
    request = {"id": "r1", "request": {"model": "demo-midrt", "input_paths": {"T2": huge},
                                       "output_path": str(tmp_path / "o.nii.gz"), "device": "cpu"}}
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "session", "--device", "cpu"],
                          input=json.dumps(request) + "\n" + json.dumps({"shutdown": True}) + "\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    final = next(e for e in events if e.get("id") == "r1" and e.get("event") in ("error", "result"))
    assert final["event"] == "error" and len(final["message"]) < 4 * MESSAGE_PATH_MAX, final["message"][:3000]
    assert len(proc.stderr) < 20000


def test_short_path_keeps_short_paths_and_both_ends():
    assert short_path("/a/b.nii.gz") == "/a/b.nii.gz"
    text = short_path("/head/" + "m" * 10000 + "/tail.nii.gz")
    assert len(text) <= MESSAGE_PATH_MAX and text.startswith("/head/") and text.endswith("/tail.nii.gz")
    assert "..." in InputError("bad", "/p/" + "q" * 5000).one_line()
