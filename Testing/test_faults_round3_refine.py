"""Issue 22 item 2: a session refinement may not write over the label map it refines.

Before: ``refine.base_labels`` never reached the output check, so a request whose
``output_path`` was the base labels (the user's hand-edited map) was accepted and overwrote
them. Now the base labels are an input like the others (:func:`HNTumorSegLib.protect.check_request`):
the request ends with one ``bad_input`` error event, the file stays byte-identical, and the
session lives on. Run through the real ``hntumorseg session`` command on stdin/stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case

ROOT = Path(__file__).resolve().parent.parent


def _session(lines: list[dict], timeout: float = 300) -> list[dict]:
    """Feed JSON lines to a real ``hntumorseg session`` and return its events."""
    text = "".join(json.dumps(line) + "\n" for line in lines) + json.dumps({"shutdown": True}) + "\n"
    res = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "session", "--device", "cpu"], input=text,
                         capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_refinement_onto_its_base_labels_is_refused_and_they_stay_identical(tmp_path):
    case = make_midrt_case(seed=2, shape=(16, 48, 48), n_nodes=1)
    t2, prior = write_image(case["midRT_T2"], tmp_path / "t2.nii.gz"), write_image(
        case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    base = write_image(case["preRT_mask_registered"], tmp_path / "hand_edited.nii.gz")
    link = tmp_path / "link_to_base.nii.gz"
    link.symlink_to(base.name)
    before = _sha(base)
    fields = {"task": "midrt", "model": "demo-midrt", "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
              "device": "cpu", "folds": "first"}
    refine = {"base_labels": str(base), "boxes": ["GTVp-1"]}
    events = _session([
        {"id": "same", "request": dict(fields, output_path=str(base), refine=refine)},
        {"id": "link", "request": dict(fields, output_path=str(link), refine=refine)},
        {"id": "dots", "request": dict(fields, output_path=str(tmp_path / "x" / ".." / base.name), refine=refine)},
        {"id": "boxes", "request": dict(fields, output_path=str(tmp_path / "new.nii.gz"),
                                        boxes_output_path=str(base), refine=refine)},
    ])
    finals = {e["id"]: e for e in events if e.get("event") in ("result", "error")}
    for job in ("same", "link", "dots", "boxes"):
        ev = finals[job]
        assert ev["event"] == "error" and ev["kind"] == "bad_input", ev
        assert "base label map" in ev["message"], ev
    assert _sha(base) == before and link.is_symlink()
    assert not (tmp_path / "new.nii.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hand_edited.nii.gz", "link_to_base.nii.gz",
                                                          "prior.nii.gz", "t2.nii.gz"]
