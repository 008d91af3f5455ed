"""Tests of the sliding window (TiledPredictor) and ensembles (EnsemblePredictor): tiling, Gaussian,
identity round-trip, box-restricted mode, TTA, ensembles and uncertainty, devices."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.errors import DeviceError, InputError  # noqa: E402
from HNTumorSegLib.inference import (EnsembleMember, EnsembleOptions, EnsemblePredictor, TiledPredictor,  # noqa: E402
                                     TilingOptions)
from HNTumorSegLib.inference import tiling  # noqa: E402
from HNTumorSegLib.inference.devices import resolve_device  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pointwise_net(c_in: int = 2, k: int = 3, seed: int = 0) -> torch.nn.Module:
    """A fixed 1x1x1 network (conv, ReLU, conv): translation-equivariant with a 1-voxel receptive field."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(c_in, 8, 1), torch.nn.ReLU(), torch.nn.Conv3d(8, k, 1)).eval()


def conv3_net(c_in: int = 2, k: int = 3, seed: int = 1) -> torch.nn.Module:
    """Two 3x3x3 convolutions: receptive field radius 2 voxels."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(c_in, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv3d(4, k, 3, padding=1)).eval()


def identity_net(c: int = 2) -> torch.nn.Module:
    conv = torch.nn.Conv3d(c, c, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(c).reshape(c, c, 1, 1, 1))
    return conv.eval()


def rand_input(shape=(2, 20, 40, 36), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_gaussian_symmetric_positive_and_nnunet_equal():
    g = tiling.gaussian_importance_map((9, 16, 13))
    assert g.dtype == np.float32 and (g > 0).all()
    assert np.isclose(g.max(), 10.0)
    # symmetric about the centre (odd axis exactly; even axes around index p//2)
    assert np.allclose(g, g[::-1, :, :])
    assert np.allclose(g[:, 1:, :], g[:, 1:, :][:, ::-1, :])
    assert np.allclose(g, g[:, :, ::-1])
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    theirs = compute_gaussian((9, 16, 13), 1 / 8, 10, dtype=torch.float32, device=torch.device("cpu")).numpy()
    assert np.allclose(g, theirs, rtol=1e-6)


@pytest.mark.parametrize("size,patch,step", [((20, 40, 36), (8, 16, 16), 0.5), ((8, 17, 100), (8, 16, 30), 0.3),
                                             ((64, 64, 64), (32, 32, 32), 1.0)])
def test_tiles_cover_volume_and_match_nnunet(size, patch, step):
    tiles = tiling.tile_slices(size, patch, step)
    hit = np.zeros(size, bool)
    for t in tiles:
        assert all(s.stop - s.start == p and s.start >= 0 and s.stop <= n for s, p, n in zip(t, patch, size))
        hit[t] = True
    assert hit.all()
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    assert tiling.compute_steps(size, patch, step) == compute_steps_for_sliding_window(size, patch, step)


def test_identity_network_gives_input_back_including_padding():
    for shape in [(2, 20, 40, 36), (2, 5, 11, 40)]:   # second is smaller than the patch on 2 axes
        x = rand_input(shape)
        pred = TiledPredictor(identity_net(2), (8, 16, 16), 2, device="cpu", options=TilingOptions(use_gaussian=True))
        logits = pred.predict_logits(x).numpy()
        assert logits.shape == x.shape
        np.testing.assert_allclose(logits, x, rtol=1e-5, atol=1e-5)


def test_low_memory_mode_runs_smaller_tiles_with_the_same_answer():
    """The retry after a GPU out-of-memory: half-size tiles, accumulators on the CPU."""
    from HNTumorSegLib.inference.tiling import reduced_patch

    assert reduced_patch((48, 192, 192), divisor=(8, 32, 32)) == (24, 96, 96)
    assert reduced_patch((16, 96, 96)) == (16, 64, 64)   # never below one divisor, never above the patch
    x = rand_input((2, 20, 40, 36))
    normal = TiledPredictor(pointwise_net(), (16, 40, 36), 3, device="cpu")
    low = TiledPredictor(pointwise_net(), (16, 40, 36), 3, device="cpu", options=TilingOptions(low_memory=True))
    assert low.accumulate_on == "cpu"
    assert low.count_tiles(x.shape[1:]) > normal.count_tiles(x.shape[1:])
    np.testing.assert_allclose(low.predict_probabilities(x), normal.predict_probabilities(x), atol=1e-5)


def test_probabilities_sum_to_one_and_progress_reported():
    calls = []
    pred = EnsemblePredictor([pointwise_net(seed=0), pointwise_net(seed=1)], (8, 16, 16), 3, device="cpu",
                             progress=lambda **kw: calls.append(kw))
    p = pred.predict_probabilities(rand_input())
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    n = pred.count_tiles((20, 40, 36))
    assert len(calls) == 2 * n
    assert calls[-1]["fraction"] == pytest.approx(1.0) and calls[0]["stage"] == "inference"
    assert calls[n]["message"] == f"fold 2/2 tile 1/{n}"


def test_fold_logits_average_equals_mean_of_single_fold_logits():
    x = rand_input()
    a, b = conv3_net(seed=3), conv3_net(seed=4)
    both = TiledPredictor([a, b], (8, 16, 16), 3, device="cpu").predict_logits(x)
    la = TiledPredictor(a, (8, 16, 16), 3, device="cpu").predict_logits(x)
    lb = TiledPredictor(b, (8, 16, 16), 3, device="cpu").predict_logits(x)
    torch.testing.assert_close(both, (la + lb) / 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tiling_mode", ["grid", "fit"])
def test_box_restricted_equals_full_inside_and_background_outside(tiling_mode):
    x = rand_input((2, 24, 64, 64))
    net = pointwise_net()
    full_pred = EnsemblePredictor(net, (8, 16, 16), 3, device="cpu", tiling=TilingOptions(region_tiling=tiling_mode))
    full = full_pred.predict_probabilities(x)
    boxes = [(slice(3, 9), slice(5, 15), slice(40, 50)), (slice(15, 20), slice(44, 60), slice(2, 9))]
    res = full_pred.predict(x, region=boxes)
    inside = tiling.region_to_mask(boxes, x.shape[1:])
    np.testing.assert_allclose(res.probabilities[:, inside], full[:, inside], rtol=1e-5, atol=1e-6)
    assert (res.probabilities[0, ~inside] == 1).all() and (res.probabilities[1:, ~inside] == 0).all()
    assert 0 < res.n_tiles < full_pred.count_tiles(x.shape[1:])


def test_box_restricted_grid_exact_for_any_network_and_fewer_tiles():
    # grid mode keeps every tile touching the region, so even a 3x3x3 network agrees exactly
    x = rand_input((2, 24, 64, 64), seed=5)
    pred = EnsemblePredictor(conv3_net(), (8, 16, 16), 3, device="cpu", tiling=TilingOptions(region_tiling="grid"))
    mask = np.zeros(x.shape[1:], bool)
    mask[10:14, 20:30, 30:33] = True
    full = pred.predict_probabilities(x)
    box = pred.predict(x, region=mask)
    np.testing.assert_allclose(box.probabilities[:, mask], full[:, mask], rtol=1e-5, atol=1e-6)
    assert box.n_tiles < pred.count_tiles(x.shape[1:])
    # fit mode with a margin >= the receptive field (2 voxels): inside the region it equals the
    # network run on the whole image at once (no tile borders at all)
    fit = EnsemblePredictor(conv3_net(), (8, 16, 16), 3, device="cpu",
                            tiling=TilingOptions(region_tiling="fit", region_margin=2))
    res = fit.predict(x, region=mask)
    with torch.inference_mode():
        whole = torch.softmax(conv3_net()(torch.from_numpy(x)[None])[0], 0).numpy()
    np.testing.assert_allclose(res.probabilities[:, mask], whole[:, mask], rtol=1e-5, atol=1e-6)
    assert res.n_tiles == 1


def test_empty_region_is_all_background_without_running():
    pred = EnsemblePredictor(pointwise_net(), (8, 16, 16), 3, device="cpu",
                             options=EnsembleOptions(uncertainty="entropy"))
    res = pred.predict(rand_input(), region=np.zeros((20, 40, 36), bool))
    assert res.n_tiles == 0 and (res.probabilities[0] == 1).all() and (res.uncertainty == 0).all()


class FlipEquivariant(torch.nn.Module):
    """Symmetric 3x3x3 kernel: flipping the input flips the output."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 3, 3, padding=1)
        torch.manual_seed(7)
        with torch.no_grad():
            w = self.conv.weight
            w.copy_((w + w.flip(2) + w.flip(3) + w.flip(4) + w.flip(2, 3) + w.flip(2, 4) + w.flip(3, 4)
                     + w.flip(2, 3, 4)) / 8)

    def forward(self, x):
        return self.conv(x)


def test_tta_of_flip_equivariant_network_equals_no_tta_and_runs_8_passes():
    net = FlipEquivariant().eval()
    passes = []
    net.register_forward_hook(lambda *a: passes.append(1))
    x = rand_input((2, 10, 20, 20))
    plain = TiledPredictor(net, (8, 16, 16), 3, device="cpu").predict_logits(x)
    n_plain = len(passes)
    tta = TiledPredictor(net, (8, 16, 16), 3, device="cpu", options=TilingOptions(tta=True)).predict_logits(x)
    assert len(passes) - n_plain == 8 * n_plain
    torch.testing.assert_close(tta, plain, rtol=1e-4, atol=1e-5)


def test_ensemble_members_probability_average_and_uncertainty():
    x = rand_input()
    a, b = pointwise_net(seed=1), pointwise_net(seed=2)
    pa = TiledPredictor(a, (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    pb = TiledPredictor(b, (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    res = EnsemblePredictor([([a], 3.0), EnsembleMember([b], weight=1.0)], (8, 16, 16), 3, device="cpu",
                            options=EnsembleOptions(uncertainty="disagreement")).predict(x)
    np.testing.assert_allclose(res.probabilities, 0.75 * pa + 0.25 * pb, rtol=1e-5, atol=1e-6)
    lab_a, lab_b = pa.argmax(0), pb.argmax(0)
    expected = ((lab_a != res.probabilities.argmax(0)).astype(float)
                + (lab_b != res.probabilities.argmax(0))) / 2
    np.testing.assert_allclose(res.uncertainty, expected)
    ent = EnsemblePredictor(a, (8, 16, 16), 3, device="cpu",
                            options=EnsembleOptions(uncertainty="entropy")).predict(x).uncertainty
    assert ent.min() >= 0 and ent.max() <= 1 + 1e-6 and ent.std() > 0


def test_sigmoid_output_background_is_zero_outside_region():
    net = pointwise_net(k=2)
    pred = EnsemblePredictor(net, (8, 16, 16), 2, device="cpu", output="sigmoid_regions")
    res = pred.predict(rand_input(), region=(slice(2, 6), slice(3, 9), slice(3, 9)))
    p = res.probabilities
    assert p.shape == (2, 20, 40, 36) and (p[:, 10:] == 0).all() and (p[:, 2:6, 3:9, 3:9] > 0).all()


def test_device_errors():
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError) as err:
            TiledPredictor(pointwise_net(), (8, 16, 16), 3, device="cuda")
        assert isinstance(err.value, InputError) and "cuda" in err.value.one_line()
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_shrink_mode_uses_box_sized_tiles_rounded_to_the_divisor():
    net = pointwise_net()
    net.input_shape_must_be_divisible_by = [4, 8, 8]
    shapes = []
    net.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[2:])))
    x = rand_input((2, 24, 64, 64), seed=9)
    boxes = [(slice(3, 6), slice(5, 15), slice(40, 50)), (slice(15, 20), slice(44, 60), slice(2, 9))]
    pred = EnsemblePredictor(net, (8, 32, 32), 3, device="cpu", tiling=TilingOptions(region_tiling="shrink"))
    res = pred.predict(x, region=boxes)
    assert res.n_tiles == 2 and sorted(shapes) == [(4, 16, 16), (8, 16, 8)]
    with torch.inference_mode():
        whole = torch.softmax(net(torch.from_numpy(x)[None])[0], 0).numpy()
    inside = tiling.region_to_mask(boxes, x.shape[1:])
    np.testing.assert_allclose(res.probabilities[:, inside], whole[:, inside], rtol=1e-5, atol=1e-6)
    # without a known divisor "shrink" falls back to whole patches
    plain = TiledPredictor(pointwise_net(), (8, 32, 32), 3, device="cpu", options=TilingOptions(region_tiling="shrink"))
    assert plain.count_tiles(x.shape[1:], region=boxes) == 2


def test_thread_tuning_keeps_results_and_restores_the_setting():
    torch.set_num_threads(2)
    x = rand_input((2, 20, 64, 64), seed=11)
    nets = [conv3_net(seed=5), conv3_net(seed=6)]
    tuned = TiledPredictor(nets, (8, 16, 16), 3, device="cpu").predict_logits(x)   # tunes 2 vs 1 thread
    assert torch.get_num_threads() == 2
    fixed = TiledPredictor(nets, (8, 16, 16), 3, device="cpu", options=TilingOptions(num_threads=1)).predict_logits(x)
    assert torch.get_num_threads() == 2
    torch.testing.assert_close(tuned, fixed, rtol=1e-4, atol=1e-5)


def test_ensemble_of_one_equals_the_tiled_predictor_and_fold_probability_average():
    """The split keeps one answer: an ensemble of one network is its TiledPredictor, and
    fold_average="probabilities" makes each fold a member (mean of the folds' probabilities)."""
    x = rand_input(seed=3)
    a, b = conv3_net(seed=3), conv3_net(seed=4)
    tiled = TiledPredictor([a, b], (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    ens = EnsemblePredictor([a, b], (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    np.testing.assert_array_equal(tiled, ens)
    per_fold = EnsemblePredictor([a, b], (8, 16, 16), 3, device="cpu",
                                 options=EnsembleOptions(fold_average="probabilities"))
    assert len(per_fold.members) == 2
    pa = TiledPredictor(a, (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    pb = TiledPredictor(b, (8, 16, 16), 3, device="cpu").predict_probabilities(x)
    np.testing.assert_allclose(per_fold.predict_probabilities(x), (pa + pb) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one network"):
        TiledPredictor([([a], 1.0), ([b], 1.0)], (8, 16, 16), 3, device="cpu")
    with pytest.raises(ValueError, match="fold_average"):
        EnsembleOptions(fold_average="votes")
    with pytest.raises(ValueError, match="region_tiling"):
        TilingOptions(region_tiling="tiny")
