"""The network's input patch, the network's shapes and branches, and the outcome card's validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.errors import ModelError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.outcome.card import read_outcome_card  # noqa: E402
from HNTumorSegLib.outcome.network import OutcomeNet  # noqa: E402
from HNTumorSegLib.outcome.patch import PatchSpec, lesion_centre_lps, make_patch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _case():
    ct = np.full((20, 30, 40), 40, np.int16)
    ct[:, :, :5] = -1000
    ct[0, 0, 39] = 3500  # above the window
    pet = np.ones((20, 30, 40), np.float32)
    pet[10, 12, 30] = 80.0  # above the PET clip
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[10, 12, 30] = 2
    labels[10, 12, 28] = 1
    grid = dict(spacing=(2.0, 2.0, 3.0), origin=(-30.0, 10.0, 5.0))
    return Image(ct, **grid), Image(pet, **grid), Image(labels, **grid)


def test_patch_centred_on_lesion_centroid_with_normalised_channels():
    ct, pet, labels = _case()
    spec = PatchSpec(size_zyx=(9, 9, 9), spacing_xyz_mm=(1.0, 1.0, 1.0))
    x = make_patch(ct, pet, labels, spec)
    assert x.shape == (3, 9, 9, 9) and x.dtype == np.float32
    # centroid = midway between the two lesion voxels (x index 29): 2 mm either side of the centre
    assert x[2, 4, 4, 2] == 1 and x[2, 4, 4, 6] == 2 and x[2, 4, 4, 4] == 0
    assert x[1, 4, 4, 6] == pytest.approx(5.0)  # SUV 80 clipped to 50, / 10
    assert x[0].min() >= 0 and x[0].max() <= 1 and x[0, 0, 0, 0] == pytest.approx((40 + 1000) / 4000)
    centre = lesion_centre_lps(labels)
    assert centre == pytest.approx(labels.index_to_physical(np.array([29.0, 12.0, 10.0])))


def test_no_lesion_uses_the_geometric_centre_and_air_outside():
    ct, pet, labels = _case()
    empty = labels.with_array(np.zeros_like(labels.array))
    assert lesion_centre_lps(empty) == pytest.approx(labels.index_to_physical(np.array([19.5, 14.5, 9.5])))
    x = make_patch(ct, pet, empty, PatchSpec(size_zyx=(8, 8, 100), spacing_xyz_mm=(1.0, 1.0, 1.0)))
    assert x[0, 4, 4, 0] == 0.0 and x[1, 4, 4, 0] == 0.0  # beyond the scan: air (-1000 HU), SUV 0
    assert x[2].max() == 0


def test_network_outputs_branches_and_parameter_groups():
    torch.manual_seed(0)
    net = OutcomeNet(n_clinical=7, n_outputs=4, block_inplanes=(8, 16, 32, 64)).eval()
    x = torch.zeros(2, 3, 16, 16, 16)
    x[:, 1] = torch.rand(2, 16, 16, 16)
    clin = torch.randn(2, 7)
    base = net(x, clin)
    assert base.shape == (2, 4)
    x2 = x.clone()
    x2[:, 2, 4:9, 4:9, 4:9] = 2  # a node: the lesion guidance changes the output
    assert not torch.allclose(net(x2, clin), base)
    assert not torch.allclose(net(x, clin + 1), base)  # the clinical branch too
    ids = {id(p) for p in net.image_parameters()} | {id(p) for p in net.clinical_head_parameters()}
    assert ids == {id(p) for p in net.parameters()}
    assert not {id(p) for p in net.image_parameters()} & {id(p) for p in net.clinical_head_parameters()}
    assert OutcomeNet(7, 1).eval()(torch.zeros(1, 3, 16, 16, 16), clin[:1]).shape == (1, 1)


def test_outcome_card_validation(tmp_path):
    with pytest.raises(ModelError, match="no model.json"):
        read_outcome_card(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "hntumorseg-model/1", "id": "x"}))
    with pytest.raises(ModelError, match="not an outcome model card"):
        read_outcome_card(tmp_path)
    card = {"format": "hntumorseg-outcome/1", "id": "x", "title": "t", "patch": PatchSpec().to_dict(),
            "architecture": {}, "endpoints": {"os": {"folds": []}}}
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="endpoint 'os'"):
        read_outcome_card(tmp_path)
    card["endpoints"] = {"rfs": {"folds": [{"fold": 0, "weights": "w.pt", "sha256": "0", "clinical": {}}],
                                 "cut_points_days": [769, 1357, 2626]}}
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="clinical statistics"):
        read_outcome_card(tmp_path)
