"""Pipeline parts on their own: the request's three spellings, all-or-nothing outputs, the way
back to the output grid, and the channels a model card asks for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.cli import build_parser
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, read_image
from HNTumorSegLib.models.card import ModelCard
from HNTumorSegLib.pipeline import SegmentRequest
from HNTumorSegLib.pipeline.channels import model_channels, needs_boxes, user_inputs
from HNTumorSegLib.pipeline.outputs import OutputSet, paste, to_target_block
from HNTumorSegLib.folds import parse_folds
from HNTumorSegLib.pipeline.request import parse_input_pair


def _request() -> SegmentRequest:
    return SegmentRequest(model="demo-petct", input_paths={"CT": "ct.nii.gz", "PET": "pet.nii.gz"},
                          output_path="o.nii.gz", task="petct", boxes_path="b.json", device="cpu", folds=[0, 2],
                          tta=True, probabilities_path="p.nii.gz", uncertainty_path="u.nii.gz")


def test_request_round_trips_through_json_and_the_command_line():
    req = _request()
    assert SegmentRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    args = build_parser().parse_args(req.to_argv(progress="none"))
    assert SegmentRequest.from_args(args) == req
    assert list(SegmentRequest.from_args(args).input_paths) == ["CT", "PET"]  # order kept: first = output grid


def test_request_json_written_for_the_worker(tmp_path):
    path = _request().write_json(tmp_path / "request.json")
    data = json.loads(path.read_text())
    assert data["input_paths"] == {"CT": "ct.nii.gz", "PET": "pet.nii.gz"} and data["folds"] == [0, 2]


@pytest.mark.parametrize("bad", [{"model": "m", "input_paths": {"T2": "a"}},
                                 {"model": "m", "input_paths": ["a"], "output_path": "o"},
                                 {"model": "m", "input_paths": {"T2": "a"}, "output_path": "o", "colour": "red"}])
def test_bad_request_json_is_an_input_error(bad):
    with pytest.raises(InputError):
        SegmentRequest.from_dict(bad)


def test_parsers():
    assert parse_input_pair("T2=a=b.nii.gz") == ("T2", "a=b.nii.gz")
    assert parse_folds("all").is_all and parse_folds("0, 3").to_json() == [0, 3]
    for bad in ("T2", "=x", "T2="):
        with pytest.raises(InputError):
            parse_input_pair(bad)
    with pytest.raises(InputError):
        parse_folds("one")


def _grid(shape=(6, 8, 10), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Image:
    return Image(np.zeros(shape, np.float32), spacing, origin)


def test_output_set_writes_all_or_nothing(tmp_path):
    img = _grid()
    with OutputSet() as out:
        out.add_image("labels", img.with_array(np.ones(img.array.shape, np.uint8)), tmp_path / "a" / "l.nii.gz")
        out.add_json("boxes", [], tmp_path / "a" / "b.json")
    assert set(out.files) == {"labels", "boxes"}
    assert read_image(out.files["labels"], label=True).array.min() == 1

    target = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError):
        with OutputSet() as out2:
            out2.add_image("labels", img, target / "l.nii.gz")
            raise RuntimeError("inference failed half way")
    assert not (tmp_path / "new").exists(), "a failed run must leave no file and no folder it made"


def test_to_target_block_is_identity_on_the_same_grid_and_moves_by_physical_space():
    grid = _grid()
    prob = np.random.default_rng(0).random((3,) + grid.array.shape).astype(np.float32)
    block, sl = to_target_block(prob, grid, grid, [1, 0, 0])
    assert np.array_equal(block, prob)
    # target: a larger grid; grid sits at an offset of (2, 3, 1) voxels inside it
    target = Image(np.zeros((10, 16, 20), np.float32), grid.spacing, (-2.0, -3.0, -2.0))
    block, sl = to_target_block(prob, grid, target, [1.0, 0.0, 0.0])
    full = paste(block, sl, target.array.shape, [1.0, 0.0, 0.0])
    assert np.allclose(full[:, 1:7, 3:11, 2:12], prob, atol=1e-5)
    assert np.all(full[0, 0] == 1.0) and np.all(full[1:, 0] == 0.0)  # outside: background


def test_channels_follow_the_card():
    card = ModelCard.from_dict({
        "format": "hntumorseg-model/1", "id": "t", "title": "t", "task": "petct",
        "inputs": [{"name": "CT", "normalisation": {"type": "window", "lo": -110, "hi": 190}},
                   {"name": "ct_sq", "derived_from": "CT", "normalisation": {"type": "none"}},
                   {"name": "ct_cbrt", "derived_from": "CT", "normalisation": {"type": "none"}},
                   {"name": "PET", "normalisation": {"type": "range"}}],
        "architecture": {"name": "STUNet", "kwargs": {}}, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "folds": [0], "weights": {"0": "f.pt"}})
    assert user_inputs(card) == ["CT", "PET"] and not needs_boxes(card)
    ct = _grid().with_array(np.linspace(-500, 500, 480, dtype=np.float32).reshape(6, 8, 10))
    pet = ct.with_array(np.linspace(0, 8, 480, dtype=np.float32).reshape(6, 8, 10))
    x = model_channels(card, {"CT": ct, "PET": pet})
    assert x.shape == (4, 6, 8, 10) and x.dtype == np.float32
    assert np.allclose(x[1], x[0] ** 2) and np.allclose(x[2] ** 3, x[0], atol=1e-5)
    assert x[0].min() == -1 and x[0].max() == 1 and x[3].min() == 0 and x[3].max() == 1
    with pytest.raises(InputError):
        model_channels(card, {"CT": ct})
