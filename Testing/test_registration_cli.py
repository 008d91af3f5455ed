"""`hntumorseg register` (issue 23 part 2): outputs, quality JSON and picture, exit codes, nothing written on a mistake."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small pair on disk (coarse voxels: the command is tested here, the accuracy elsewhere)."""
    folder = tmp_path_factory.mktemp("pair")
    pair = make_registration_pair(seed=2, shape=(14, 48, 48), spacing=(3.0, 3.0, 5.5))
    paths = {"fixed": folder / "mid_T2.nii.gz", "moving": folder / "pre_T2.nii.gz", "labels": folder / "pre_mask.nii.gz"}
    write_image(pair["fixed"], paths["fixed"])
    write_image(pair["moving"], paths["moving"])
    write_image(pair["moving_mask"], paths["labels"])
    return paths


def _args(files, out, *extra):
    return ["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]), "--labels", str(files["labels"]),
            "--output-image", str(out / "pre_on_mid.nii.gz"), "--output-labels", str(out / "prior.nii.gz"),
            "--progress", "none", *extra]


def test_register_writes_every_output_and_the_quality(files, tmp_path, capsys):
    code = main(_args(files, tmp_path, "--transform", str(tmp_path / "pre_to_mid.h5"), "--json", str(tmp_path / "q.json")))
    assert code == 0
    shown = capsys.readouterr().out
    assert "mutual information" in shown and "Jacobian determinant" in shown and "GTVp" in shown
    fixed = read_image(files["fixed"])
    image, labels = read_image(tmp_path / "pre_on_mid.nii.gz"), read_image(tmp_path / "prior.nii.gz", label=True)
    assert image.same_grid(fixed) and labels.same_grid(fixed)
    assert set(np.unique(labels.array).tolist()) == {0, 1, 2}
    quality = json.loads((tmp_path / "q.json").read_text())
    assert quality["mode"] == "deformable"
    assert quality["similarity"]["mutual_information"]["after"] > quality["similarity"]["mutual_information"]["before"]
    assert set(quality["jacobian"]) == {"min", "max", "folded_fraction", "folded"}
    assert quality["labels"]["GTVp"]["after_ml"] > 0 and quality["determinism"]["threads"] == 1
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"    # the picture, beside the JSON
    transform = sitk.ReadTransform(str(tmp_path / "pre_to_mid.h5"))
    assert transform.TransformPoint((0.0, 0.0, 0.0)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pre_on_mid.nii.gz", "pre_to_mid.h5", "prior.nii.gz",
                                                          "q.json", "q.png"]   # no temporary file left


def test_rigid_mode_and_json_progress(files, tmp_path, capsys):
    code = main(["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]), "--mode", "RIGID",
                 "--output-image", str(tmp_path / "out.nii.gz"), "--transform", str(tmp_path / "t.tfm"),
                 "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stages = [e["stage"] for e in events]
    assert "rigid" in stages and "deformable" not in stages and events[-1]["fraction"] == pytest.approx(1.0, abs=0.06)
    assert all(a["fraction"] <= b["fraction"] for a, b in zip(events, events[1:]))
    assert sitk.ReadTransform(str(tmp_path / "t.tfm")).GetName() in ("Euler3DTransform", "CompositeTransform")


@pytest.mark.parametrize("change, message", [
    ({"--moving": "missing.nii.gz"}, "does not exist"),
    ({"--mode": "elastic"}, "unknown --mode"),
    ({"--output-image": "{moving}"}, "same file"),
    ({"--output-image": "out.txt"}, "image file name"),
    ({"--transform": "t.mat"}, ".h5 or .tfm"),
    ({"--labels": None}, "--output-labels needs --labels"),
    ({"--output-labels": None}, "not --output-labels"),
    ({"--picture": "p.jpg"}, ".png"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, tmp_path, capsys, change, message):
    values = {"--fixed": str(files["fixed"]), "--moving": str(files["moving"]), "--labels": str(files["labels"]),
              "--output-image": str(tmp_path / "o.nii.gz"), "--output-labels": str(tmp_path / "l.nii.gz"),
              "--json": str(tmp_path / "q.json"), "--progress": "none"}
    for flag, value in change.items():
        if value is None:
            values.pop(flag)
        else:
            values[flag] = value.format(moving=files["moving"]) if "{" in value else (
                value if flag in ("--mode",) or value.startswith("/") else str(tmp_path / value))
    argv = ["register"] + [x for flag, value in values.items() for x in (flag, value)]
    before = (files["moving"].stat().st_mtime_ns, files["moving"].stat().st_size)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert (files["moving"].stat().st_mtime_ns, files["moving"].stat().st_size) == before


def test_labels_with_a_third_label_or_nothing_are_refused(files, tmp_path, capsys):
    labels = read_image(files["labels"], label=True)
    for name, array in (("three.nii.gz", np.where(labels.array == 2, 3, labels.array)),
                        ("empty.nii.gz", np.zeros_like(labels.array))):
        path = tmp_path / "in" / name
        write_image(labels.with_array(array.astype(np.uint8)), path)
        out = tmp_path / "out"
        code = main(["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]), "--labels", str(path),
                     "--output-image", str(out / "o.nii.gz"), "--output-labels", str(out / "l.nii.gz"),
                     "--progress", "none"])
        assert code == 2 and not out.exists()
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
