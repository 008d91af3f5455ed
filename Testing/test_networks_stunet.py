"""STU-Net: state_dict keys and shapes equal the official implementation's.

The fixture ``data/networks_stunet_official_keys.json`` holds ``{key: shape}`` of the
official ``STUNet`` class (uni-medical/STU-Net, nnUNet-2.2 STUNetTrainer.py) for all four
sizes, built with 1 input channel and 105 classes (TotalSegmentator pre-training), so an
official checkpoint loads into ours with ``strict=True``. L and H are checked on the
``meta`` device: nothing big is allocated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.networks import build_network  # noqa: E402
from HNTumorSegLib.networks.stunet import STUNET_CONFIGS, build_stunet, stunet_strides  # noqa: E402

OFFICIAL = json.loads((Path(__file__).parent / "data" / "networks_stunet_official_keys.json").read_text())


@pytest.mark.parametrize("size", ["small", "base", "large", "huge"])
def test_keys_and_shapes_equal_official(size):
    with torch.device("meta"):
        net = build_stunet(size, input_channels=1, num_classes=105, initialise=False)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    expected = OFFICIAL["keys"][size]
    assert list(ours) == list(expected)  # same names, same order
    assert ours == expected
    assert sum(v.numel() for v in net.state_dict().values()) == OFFICIAL["param_counts"][size]


def test_parameter_counts_match_papers():
    # seed 000 / seed 004 Table 4: S 14.60 M, B 58.26 M; STU-Net paper: L 440 M, H 1.4 B
    counts = OFFICIAL["param_counts"]
    assert round(counts["small"] / 1e6, 1) == 14.6
    assert round(counts["base"] / 1e6, 2) == 58.26
    assert round(counts["large"] / 1e6) == 440
    assert 1.4e9 < counts["huge"] < 1.5e9


def test_small_fixture_spot_checks():
    keys = OFFICIAL["keys"]["small"]
    # first block of a stage projects the residual (conv3); later blocks do not exist at depth 1
    assert keys["conv_blocks_context.0.0.conv3.weight"] == [16, 1, 1, 1, 1]
    assert keys["conv_blocks_context.5.0.conv1.weight"] == [256, 256, 3, 3, 3]
    assert keys["upsample_layers.0.conv.weight"] == [256, 256, 1, 1, 1]
    assert keys["conv_blocks_localization.4.0.conv1.weight"] == [16, 32, 3, 3, 3]
    assert keys["seg_outputs.4.weight"] == [105, 16, 1, 1, 1] and "seg_outputs.4.bias" in keys
    assert not any(".running_mean" in k for k in keys)  # instance norm without running stats


def test_official_weights_load_strictly_and_transfer():
    """A state_dict with the official names loads strictly; fine-tuning swaps only the heads."""
    torch.manual_seed(0)
    pretrained = build_stunet("small", 1, 105).state_dict()  # stands for TotalSegmentator weights
    net = build_stunet("small", 1, 105, initialise=False)
    net.load_state_dict(pretrained, strict=True)
    target = build_stunet("small", 1, 3)
    transferable = {k: v for k, v in pretrained.items() if not k.startswith("seg_outputs")}
    missing, unexpected = target.load_state_dict(transferable, strict=False)
    assert unexpected == [] and all(k.startswith("seg_outputs") for k in missing) and len(missing) == 10


def test_forward_shapes_and_deep_supervision():
    torch.set_num_threads(1)
    plan = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [2, 2, 2]]
    net = build_stunet("small", 2, 3, pool_op_kernel_sizes=plan).eval()
    assert net.pool_op_kernel_sizes == [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert net.input_shape_must_be_divisible_by == [8, 32, 32]
    x = torch.randn(1, 2, 16, 64, 64)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, 3, 16, 64, 64)
        net.decoder.deep_supervision = True  # where nnU-Net's trainer switches it
        outs = net(x)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 64, 64), (16, 32, 32), (8, 16, 16), (4, 8, 8), (2, 4, 4)]
    assert torch.allclose(outs[0], y)


def test_strides_rule_of_official_trainer():
    assert stunet_strides([[1, 1, 1], [2, 2, 2]]) == [[2, 2, 2]] + [[1, 1, 1]] * 4
    assert stunet_strides([[1, 1, 1]] + [[2, 2, 2]] * 7) == [[2, 2, 2]] * 5


def test_build_network_from_card_architecture():
    net = build_network({"name": "STUNet", "kwargs": {"size": "base"}}, 2, 3)
    assert net.conv_blocks_context[0][0].conv1.weight.shape == (32, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="unknown STU-Net size"):
        build_network({"name": "STUNet", "kwargs": {"size": "tiny"}}, 1, 2)
    with pytest.raises(ValueError):
        build_network({"name": "STUNet", "kwargs": {"size": "small", "pool_op_kernel_sizes": [[2, 2, 2]]}}, 1, 2)
    assert set(STUNET_CONFIGS) == {"small", "base", "large", "huge"}
