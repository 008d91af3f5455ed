"""`hntumorseg segment` runs: pre-RT with --boxes (box-restricted), mid-RT by catalogue id with JSON
progress events, and the optional outputs (probabilities, uncertainty, boxes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case, make_prert_case
from HNTumorSegLib.prompts.boxes import boxes_from_mask, boxes_to_mask, write_boxes
from HNTumorSegLib.protocol import ProgressEvent, ResultEvent, parse_event
from pipeline_testlib import make_random_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prert_with_boxes_segments_only_the_boxes(tmp_path, capsys):
    case = make_prert_case(seed=3, shape=(24, 80, 80))
    t2 = write_image(case["T2"], tmp_path / "t2.nii.gz")
    nodes = [b for b in boxes_from_mask(case["mask"], margin_vox=2) if b.label == 2][:1]
    boxes = write_boxes(nodes, tmp_path / "boxes.json")
    model = make_random_model(tmp_path / "prert_model", "prert", [{"name": "T2", "normalisation": {"type": "zscore"}}])
    out = tmp_path / "out" / "labels.nii.gz"
    rc = main(["segment", "--task", "prert", "--model", str(model), "--input", f"T2={t2}", "--boxes", str(boxes),
               "--output", str(out), "--probabilities", str(tmp_path / "out" / "prob.nii.gz"),
               "--uncertainty", str(tmp_path / "out" / "unc.nii.gz"), "--device", "cpu", "--progress", "none",
               "--restrict-to-boxes"])   # whole image is the default (issue 12); restriction is explicit
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    labels = read_image(out, label=True)
    assert labels.same_grid(case["T2"])
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    # box-restricted: nothing outside the box grown by the pipeline's context (5 mm) + one voxel
    allowed = boxes_to_mask(nodes, case["T2"], margin_mm=5.0 + max(case["T2"].spacing))
    assert not np.any(labels.array[~allowed])
    prob = sitk.ReadImage(str(tmp_path / "out" / "prob.nii.gz"))
    assert prob.GetDimension() == 4 and prob.GetSize() == (*case["T2"].shape_xyz, 3)
    p = sitk.GetArrayFromImage(prob)  # (K, z, y, x)
    assert np.allclose(p.sum(axis=0), 1.0, atol=1e-3)
    assert np.all(p[0][~allowed] == 1.0)  # background outside the region
    unc = read_image(tmp_path / "out" / "unc.nii.gz")
    assert unc.same_grid(case["T2"]) and 0.0 <= unc.array.min() and unc.array.max() <= 1.0


@pytest.mark.slow  # ~35 s at load ~10 on 2 shared cores (README's segment blocks run by default): CI runs it
def test_midrt_by_catalogue_id_prints_worker_protocol_events(tmp_path, capsys):
    case = make_midrt_case(seed=11)
    t2 = write_image(case["midRT_T2"], tmp_path / "mid_t2.nii.gz")
    prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    out = tmp_path / "labels.nii.gz"
    rc = main(["segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", str(prior),
               "--output", str(out), "--save-boxes", str(tmp_path / "boxes.json"), "--progress", "json"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    events = [parse_event(line) for line in lines]
    assert all(isinstance(e, ProgressEvent) for e in events[:-1]) and isinstance(events[-1], ResultEvent)
    stages = [e.stage for e in events[:-1]]
    for stage in ("load", "resample", "prompts", "inference", "clean-up", "write"):
        assert stage in stages
    fractions = [e.fraction for e in events[:-1]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert json.loads(lines[-1])["files"]["labels"] == str(out)
    assert read_image(out, label=True).same_grid(case["midRT_T2"])
    boxes = json.loads((tmp_path / "boxes.json").read_text())
    assert {b["label"] for b in boxes} == {1, 2}  # made from the registered prior (task from the model card)
