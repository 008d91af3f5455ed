"""STU-Net pre-trained loading: official v1 ``.model`` and v2 ``.pth`` layouts, other input channels."""

from __future__ import annotations

import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.errors import ModelError  # noqa: E402
from HNTumorSegLib.networks.stunet import build_stunet  # noqa: E402
from hntumorseg_training.pretrained import load_pretrained_stunet, read_pretrained_state  # noqa: E402

STRIDES = [[1, 1, 1]] + [[2, 2, 2]] * 5


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return build_stunet("small", 1, 105, pool_op_kernel_sizes=STRIDES)  # TotalSegmentator pre-training shape


@pytest.mark.parametrize("fmt", ["v1", "v2", "ddp"])
def test_load_into_two_channels(source, tmp_path, fmt):
    torch.set_num_threads(1)
    state = source.state_dict()
    path = tmp_path / ("ckpt.model" if fmt == "v1" else "checkpoint_final.pth")
    if fmt == "v1":
        torch.save({"state_dict": state, "epoch": 4000, "plot_stuff": ([0.1], [0.2])}, path)
    elif fmt == "v2":
        torch.save({"network_weights": state, "trainer_name": "STUNetTrainer_small"}, path)
    else:
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    net = build_stunet("small", 2, 3, pool_op_kernel_sizes=STRIDES)
    heads_before = net.seg_outputs[0].weight.clone()
    report = load_pretrained_stunet(net, path)
    assert report["repeated"] == ["conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight"]
    assert len(report["dropped"]) == 10 and report["loaded"] == len(state) - 10
    new = net.state_dict()
    for key, value in state.items():
        if key.startswith("seg_outputs."):
            continue
        if key in report["repeated"]:
            torch.testing.assert_close(new[key], torch.cat([value, value], 1) / 2)
        else:
            torch.testing.assert_close(new[key], value)
    torch.testing.assert_close(net.seg_outputs[0].weight, heads_before)  # heads keep their initialisation
    # with the same image in both channels, the body's features equal the pre-trained ones
    x = torch.randn(1, 1, 32, 32, 32)
    source.eval(), net.eval()
    with torch.no_grad():
        a = source.conv_blocks_context[0](x)
        b = net.conv_blocks_context[0](torch.cat([x, x], 1))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_wrong_size_is_refused(source, tmp_path):
    path = tmp_path / "small.model"
    torch.save({"state_dict": source.state_dict()}, path)
    with pytest.raises(ModelError, match="shape|fit"):
        load_pretrained_stunet(build_stunet("base", 1, 3, pool_op_kernel_sizes=STRIDES), path)
    broken = dict(source.state_dict())
    broken.pop("conv_blocks_context.2.0.conv2.weight")
    torch.save({"network_weights": broken}, path)
    with pytest.raises(ModelError, match="missing"):
        load_pretrained_stunet(build_stunet("small", 2, 3, pool_op_kernel_sizes=STRIDES), path)
    torch.save({"something": 1}, path)
    with pytest.raises(ModelError):
        read_pretrained_state(path)
