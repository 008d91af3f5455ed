"""UW LAIR-style MONAI SegResNetDS checkpoints (HNTS-MRG 2024 task 1) run like MONAI runs them.

Checkpoints of UW LAIR's structure are made here with MONAI itself (SegResNetDS blocks_down
[1, 2, 2, 4, 4, 4], dsdepth 4, dicts with ``state_dict``; init_filters 4 to stay small), imported with
``models import`` (a catalogue entry describes them, as UW-LAIR-hntsmrg24-task1 does) and run with
``hntumorseg segment``. The reference is MONAI: ``NormalizeIntensity(nonzero=True)`` on the image in
MONAI's x, y, z array order, ``SegResNetDS`` + ``monai.inferers.sliding_window_inference`` (overlap 0.5,
Gaussian blending), logits averaged over the checkpoints (as nnU-Net and HNTumorSeg average folds).
The blending weight is passed as nnU-Net's Gaussian (``roi_weight_map`` = nnunetv2's ``compute_gaussian``,
sigma 1/8 of the ROI): HNTumorSeg runs every network through nnU-Net's tiling, and MONAI's own Gaussian
differs slightly in shape, which only changes voxels where windows overlap (on these untrained
networks, whose tiles disagree wildly, up to 0.4 in probability; a documented choice). The image size is a whole number of
half-ROIs beyond the ROI, where MONAI's and nnU-Net's window positions coincide, and it is NOT
symmetric in x, y and z, so a wrong axis order cannot pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

import torch  # noqa: E402  (a requirement: missing fails, never skips)
import monai  # noqa: E402  (a requirement: missing fails, never skips)

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KWARGS = {"blocks_down": [1, 2, 2, 4, 4, 4], "dsdepth": 4, "init_filters": 4, "norm": "INSTANCE", "act": "relu"}
ROI_XYZ = [64, 64, 64]   # SegResNetDS with 6 levels: multiples of 32, and >= 2 voxels at the bottom level
SHAPE_XYZ = (96, 64, 64)   # 64 + 32, 64, 64 (x differs from z): window starts agree in both implementations


def _net(seed: int):
    from monai.networks.nets import SegResNetDS

    torch.manual_seed(seed)
    net = SegResNetDS(spatial_dims=3, in_channels=1, out_channels=3, **{k: tuple(v) if isinstance(v, list) else v
                                                                         for k, v in KWARGS.items()})
    with torch.no_grad():   # make the untrained network's outputs vary along every axis
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture
def uw_lair(tmp_path, monkeypatch):
    release = tmp_path / "Downloads" / "uw_lair_models"
    release.mkdir(parents=True)
    nets = [_net(seed) for seed in (0, 1)]
    for i, net in enumerate(nets):
        torch.save({"state_dict": net.state_dict(), "epoch": 300}, release / f"model_{i}.pt")
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [{
        "id": "UW-LAIR-test", "title": "UW LAIR-style test ensemble", "task": "prert", "inputs": ["T2"],
        "kind": "segresnet", "licence": "unstated", "licence_terms": "unstated", "citation": "UW LAIR",
        "manual": {"page": "p", "clicks": "c", "command": "x"},
        "segresnet": {"kwargs": KWARGS, "roi_xyz": ROI_XYZ, "axis_order": "xyz", "spacing": None,
                      "inputs": [{"name": "T2", "normalisation": {"type": "zscore", "nonzero": True}}]}}]}))
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(catalogue))
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    xyz = rng.normal(300, 80, size=SHAPE_XYZ).astype(np.float32)
    xyz[:12] = 0.0           # background outside the head: excluded from the z-score, stays 0
    xyz[30:70, 16:48, 20:44] += 250.0
    image = Image(np.ascontiguousarray(xyz.transpose(2, 1, 0)), (0.8, 0.7, 2.0), (10.0, -20.0, 5.0))
    t2 = write_image(image, tmp_path / "t2.nii.gz")
    return release, nets, t2, xyz


def monai_probabilities(nets, xyz: np.ndarray) -> np.ndarray:
    from monai.inferers import sliding_window_inference
    from monai.transforms import NormalizeIntensity

    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    x = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.from_numpy(xyz[None]))[None].float()
    weight = compute_gaussian(tuple(ROI_XYZ), sigma_scale=1 / 8, value_scaling_factor=10, device=torch.device("cpu"))
    with torch.no_grad():
        logits = [sliding_window_inference(x, ROI_XYZ, 1, net, overlap=0.5, mode="gaussian", roi_weight_map=weight)
                  for net in nets]
    return torch.softmax(torch.stack(logits).mean(0), 1)[0].numpy()          # (K, x, y, z)


@pytest.mark.slow  # ~75 s at load ~10 on 2 shared cores: CI runs it, the default run skips it
def test_imported_checkpoints_predict_like_monai(uw_lair, tmp_path, capsys):
    release, nets, t2, xyz = uw_lair
    assert main(["models", "import", str(release), "--id", "UW-LAIR-test", "--accept-licence",
                 "--progress", "none"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "UW-LAIR-test"]) == 0
    shown = capsys.readouterr().out
    assert "ensemble of 2 checkpoints" in shown and "array axis order of the network: xyz" in shown
    assert '"nonzero": true' in shown
    card = json.loads((tmp_path / "cache" / "models" / "UW-LAIR-test" / "uw_lair_models" / "model.json").read_text())
    assert card["patch_size"] == ROI_XYZ[::-1] and card["folds"] == [0, 1]

    out = tmp_path / "out" / "labels.nii.gz"
    prob_path = tmp_path / "out" / "prob.nii.gz"
    assert main(["segment", "--model", "UW-LAIR-test", "--input", f"T2={t2}", "--output", str(out),
                 "--probabilities", str(prob_path), "--device", "cpu", "--progress", "none"]) == 0
    ours_zyx = sitk.GetArrayFromImage(sitk.ReadImage(str(prob_path)))      # (K, z, y, x)
    ours = ours_zyx.transpose(0, 3, 2, 1)                                  # (K, x, y, z)
    reference = monai_probabilities(nets, xyz)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 0.02, np.abs(ours - reference).max()
    labels_ref = reference.argmax(0)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).transpose(2, 1, 0)
    assert len(np.unique(labels_ref)) > 1, "the reference must not be constant (else agreement proves nothing)"
    assert float(np.mean(labels == labels_ref)) >= 0.999


@pytest.mark.slow  # ~30 s at load ~10 on 2 shared cores: CI runs it, the default run skips it
def test_without_the_axis_order_the_prediction_differs(uw_lair):
    """The axis order matters: the same networks on z, y, x arrays give another answer (the test above can fail)."""
    release, nets, t2, xyz = uw_lair
    from monai.inferers import sliding_window_inference
    from monai.transforms import NormalizeIntensity

    zyx = np.ascontiguousarray(xyz.transpose(2, 1, 0))
    x = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.from_numpy(zyx[None]))[None].float()
    with torch.no_grad():
        wrong = np.mean([torch.softmax(sliding_window_inference(x, ROI_XYZ[::-1], 1, n, overlap=0.5, mode="gaussian",
                                                                sigma_scale=0.125), 1)[0].numpy() for n in nets], 0)
    right = monai_probabilities(nets, xyz).transpose(0, 3, 2, 1)
    assert np.abs(wrong - right).max() > 0.05


def test_a_checkpoint_of_another_structure_is_refused(uw_lair, tmp_path, capsys):
    release, nets, t2, xyz = uw_lair
    from monai.networks.nets import SegResNetDS

    torch.save({"state_dict": SegResNetDS(spatial_dims=3, in_channels=1, out_channels=3, init_filters=4,
                                          blocks_down=(1, 2, 2, 4), dsdepth=4).state_dict()}, release / "model_0.pt")
    assert main(["models", "import", str(release), "--id", "UW-LAIR-test", "--accept-licence",
                 "--progress", "none"]) == 2
    assert "model_0.pt" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "models" / "UW-LAIR-test").exists()
