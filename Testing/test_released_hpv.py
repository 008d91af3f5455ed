"""Issue 28: seed 004's released HPV recipe as ``outcome-train --preset medai-hpv``.

The released steps (Liiiii2101/HECKTOR2025-MEDAI, ``Task2_training.py``: ``TemperatureScaler``
+ ``fit_temperature``, ``pick_threshold_youden``, the KFold and the ``WeightedRandomSampler``;
``Task3_inference.py``: the per-fold temperature, threshold and majority vote) are written out
below and compared with ours; a tiny cohort then trains with the preset end to end and the
predictor applies the calibrated vote.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "training") not in sys.path:
    sys.path.insert(0, str(ROOT / "training"))

from sklearn.metrics import roc_curve  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

from hntumorseg_training.outcome.presets import (  # noqa: E402
    MEDAI_HPV, balanced_order, fit_temperature, preset_config, youden_threshold)
from hntumorseg_training.outcome.train import kfold_indices  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ReleasedTemperatureScaler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.log_temp = torch.nn.Parameter(torch.zeros(1))

    def forward(self, logits):
        return logits / torch.exp(self.log_temp)


def released_fit_temperature(logits, labels, max_iter=200, lr=0.01):
    scaler = ReleasedTemperatureScaler()
    opt = torch.optim.LBFGS(scaler.parameters(), lr=lr, max_iter=max_iter)
    bce = torch.nn.BCEWithLogitsLoss()

    def closure():
        opt.zero_grad()
        loss = bce(scaler(logits), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.exp(scaler.log_temp).item()


def released_youden(logits, labels, T):
    probs = torch.sigmoid(logits / T).detach().cpu().numpy().ravel()
    fpr, tpr, ts = roc_curve(labels.cpu().numpy().ravel().astype(int), probs)
    return float(ts[np.argmax(tpr - fpr)])


def _val(seed, n=40):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 1, generator=g) < 0.7).float()
    logits = (labels * 2 - 1) * 3.0 + torch.randn(n, 1, generator=g) * 2.5
    return logits, labels


def test_preset_holds_the_released_numbers():
    cfg = preset_config("medai-hpv")
    assert (cfg.hpv_loss, cfg.epochs, cfg.batch_size, cfg.lr_image, cfg.lr_clinical, cfg.weight_decay,
            cfg.n_folds, cfg.seed) == ("focal", 30, 8, 5e-5, 5e-5, 1e-2, 5, 3407)
    assert cfg.sklearn_kfold and cfg.balanced_sampler and cfg.calibrate
    assert preset_config("medai-hpv", epochs=2).epochs == 2 and MEDAI_HPV["epochs"] == 30


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_and_youden_equal_the_released_code(seed):
    logits, labels = _val(seed)
    t_rel = released_fit_temperature(logits, labels)
    t_ours = fit_temperature(logits[:, 0], labels[:, 0])
    assert t_ours == pytest.approx(t_rel, rel=1e-5) and abs(t_ours - 1.0) > 1e-3   # it really moved
    thr = youden_threshold(torch.sigmoid(logits[:, 0] / t_ours).numpy(), labels[:, 0].numpy())
    assert thr == pytest.approx(released_youden(logits, labels, t_rel), abs=1e-5)


def test_youden_without_any_useful_cut_is_1_not_infinity():
    # roc_curve's first threshold is +inf; the released code would keep it, strict JSON cannot
    assert youden_threshold(np.array([0.9, 0.1]), np.array([0, 1])) == 1.0


def test_kfold_is_sklearn_with_seed_3407():
    ours = kfold_indices(23, 5, 3407, sklearn=True)
    for (tr, va), (rtr, rva) in zip(ours, KFold(n_splits=5, shuffle=True, random_state=3407).split(np.arange(23))):
        assert list(tr) == sorted(rtr) and list(va) == sorted(rva)
    assert [list(v) for _, v in ours] != [list(v) for _, v in kfold_indices(23, 5, 3407)]


def test_balanced_order_draws_classes_evenly_in_whole_batches():
    labels = np.array([1] * 80 + [0] * 20)
    order = balanced_order(labels, 8, np.random.default_rng(0))
    assert len(order) == 96                                  # n // 8 * 8, drop_last
    big = balanced_order(labels, 8, np.random.default_rng(1))
    draws = np.concatenate([big] + [balanced_order(labels, 8, np.random.default_rng(s)) for s in range(2, 40)])
    assert abs(labels[draws].mean() - 0.5) < 0.03             # 1 / class count: 50/50 on average


@pytest.fixture(scope="module")
def preset_model(tmp_path_factory):
    from HNTumorSegLib.phantoms.outcome_cohort import write_outcome_cohort
    from hntumorseg_training.cli import main as train_main

    tmp = tmp_path_factory.mktemp("hpv")
    csv = write_outcome_cohort(tmp / "train", 20, seed=3)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = train_main(["outcome-train", "--data", str(tmp / "train"), "--clinical", str(csv),
                         "--out", str(tmp / "model"), "--preset", "medai-hpv", "--epochs", "2", "--folds", "2",
                         "--patch", "16", "16", "16", "--spacing", "6", "--width", "8", "16", "32", "64"])
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    return tmp


@pytest.mark.slow
def test_preset_trains_hpv_only_and_the_card_keeps_temperature_and_threshold(preset_model):
    from HNTumorSegLib.outcome.card import read_outcome_card

    card = read_outcome_card(preset_model / "model")
    assert set(card.endpoints) == {"hpv"} and card.endpoints["hpv"].loss == "focal"
    for fold in card.endpoints["hpv"].folds:
        assert fold.extra["temperature"] > 0 and 0.0 <= fold.extra["threshold"] <= 1.0
        assert fold.clinical.empty_label == "median"     # the released empty-label rule, in the card
    assert card.raw["training"]["config"]["seed"] == 3407 and card.raw["training"]["config"]["batch_size"] == 8


@pytest.mark.slow
def test_predictor_votes_with_each_folds_temperature_and_threshold(preset_model):
    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.outcome.clinical import imaging_features, read_clinical_table
    from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
    from HNTumorSegLib.outcome.predictor import OutcomePredictor, format_prediction

    pred = OutcomePredictor(preset_model / "model")
    from HNTumorSegLib.phantoms.outcome_cohort import CSV_NAME

    pid, row = next(iter(read_clinical_table(preset_model / "train" / CSV_NAME).items()))
    d = preset_model / "train" / pid
    ct, pet = read_image(d / f"{pid}__CT.nii.gz"), read_image(d / f"{pid}__PT.nii.gz")
    labels = read_image(d / f"{pid}.nii.gz", label=True)
    out = pred.predict(ct, pet, labels, row)
    # the released vote, written out
    bm = compute_biomarkers(pet, labels)
    record = {**row, **imaging_features(bm["patient"])}
    from HNTumorSegLib.outcome.patch import make_patch

    x = torch.from_numpy(make_patch(ct, pet, labels, pred.card.patch)[None])
    probs, votes = [], []
    with torch.no_grad():
        for (net, enc), fold in zip(pred.members["hpv"], pred.card.endpoints["hpv"].folds):
            logit = net(x, torch.from_numpy(enc.transform(record)[None]))
            p = torch.sigmoid(logit / fold.extra["temperature"]).item()
            probs.append(p)
            votes.append(p >= fold.extra["threshold"])
    assert out["hpv"]["probability"] == pytest.approx(float(np.mean(probs)), abs=1e-6)
    assert out["hpv"]["call"] == ("positive" if sum(votes) > len(votes) / 2 else "negative")
    assert out["hpv"]["votes"] == sum(votes)
    assert "Youden" in format_prediction(out)


def test_preset_with_rfs_is_one_line(tmp_path, capsys):
    from hntumorseg_training.cli import main as train_main

    rc = train_main(["outcome-train", "--data", str(tmp_path), "--clinical", str(tmp_path / "c.csv"),
                     "--out", str(tmp_path / "m"), "--preset", "medai-hpv", "--endpoints", "rfs", "hpv"])
    assert rc == 2 and "trains hpv only" in capsys.readouterr().err
