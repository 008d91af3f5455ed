"""Discrete-time NLL, risk, C-index and HPV metrics against independent implementations.

* NLL with alpha = 0 equals pycox's ``nll_logistic_hazard``; with the seed's alpha = 0.5 it
  equals the released ``nll_loss`` (Liiiii2101/HECKTOR2025-MEDAI, Task2_training.py, rewritten
  here from its formula, clamps included) and a plain-probability version written from the paper;
* the risk equals the released ``_calculate_risk`` applied to fold-averaged logits;
* the C-index equals lifelines' ``concordance_index`` and the HPV metrics scikit-learn's, on
  random data with ties in times, risks and probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.outcome.classification import focal, make_hpv_loss  # noqa: E402
from HNTumorSegLib.outcome.metrics import harrell_c_index, hpv_metrics  # noqa: E402
from HNTumorSegLib.outcome.survival import (  # noqa: E402
    CUT_POINTS_DAYS, discrete_time_nll, interval_index, interval_names, risk_from_logits, survival)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random(seed: int, n: int = 64, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2.0
    interval = torch.randint(0, k, (n,), generator=g)
    censored = (torch.rand(n, generator=g) < 0.4).to(torch.float64)
    return logits, interval, censored


def released_nll_loss(h, y, c, alpha=0.5, eps=1e-7, reduction="sum"):
    """The authors' nll_loss, written out from the released code (its 1e-7 clamps included; issue 28
    item 5), y and c shaped [B, 1]; test_released_nll.py uses it too."""
    y = y.type(torch.int64)
    c = c.type(torch.int64)
    hazards = torch.sigmoid(h)
    S = torch.cumprod(1 - hazards, dim=1)
    S_padded = torch.cat([torch.ones_like(c), S], 1)
    s_prev = torch.gather(S_padded, dim=1, index=y).clamp(min=eps)
    h_this = torch.gather(hazards, dim=1, index=y).clamp(min=eps)
    s_this = torch.gather(S_padded, dim=1, index=y + 1).clamp(min=eps)
    uncensored_loss = -(1 - c) * (torch.log(s_prev) + torch.log(h_this))
    censored_loss = - c * torch.log(s_this)
    neg_l = censored_loss + uncensored_loss
    loss = (1 - alpha) * neg_l + alpha * uncensored_loss
    return loss.mean() if reduction == "mean" else loss.sum()


def released_calculate_risk(h):
    hazards = torch.sigmoid(h)
    survival_ = torch.cumprod(1 - hazards, dim=1)
    return -torch.sum(survival_, dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nll_alpha0_equals_pycox_logistic_hazard(seed):
    from pycox.models.loss import nll_logistic_hazard

    logits, interval, censored = _random(seed)
    ours = discrete_time_nll(logits, interval, censored, alpha=0.0, reduction="mean")
    theirs = nll_logistic_hazard(logits, interval, 1.0 - censored, reduction="mean")
    assert float(ours) == pytest.approx(float(theirs), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nll_equals_released_code_and_paper_formula(seed):
    logits, interval, censored = _random(seed)
    ours = discrete_time_nll(logits, interval, censored)  # alpha 0.5, sum
    released = released_nll_loss(logits, interval.view(-1, 1), censored.view(-1, 1))
    assert float(ours) == pytest.approx(float(released), rel=1e-9)
    # paper, in probabilities, one patient at a time
    h = torch.sigmoid(logits).numpy()
    total = 0.0
    for i in range(len(h)):
        y, c = int(interval[i]), float(censored[i])
        s = np.concatenate([[1.0], np.cumprod(1 - h[i])])
        base = -(1 - c) * (np.log(s[y]) + np.log(h[i, y])) - c * np.log(s[y + 1])
        unc = -(1 - c) * (np.log(s[y]) + np.log(h[i, y]))
        total += 0.5 * base + 0.5 * unc
    assert float(ours) == pytest.approx(total, rel=1e-9)


def test_nll_gradients_flow_and_stay_finite_at_extreme_logits():
    logits = torch.tensor([[40.0, -40.0, 40.0, -40.0], [-40.0, -40.0, -40.0, -40.0]], requires_grad=True)
    loss = discrete_time_nll(logits, torch.tensor([1, 3]), torch.tensor([0.0, 1.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_risk_equals_released_formula_on_fold_averaged_logits():
    folds = [torch.randn(7, 4, generator=torch.Generator().manual_seed(s)) for s in range(5)]
    mean = torch.stack(folds).mean(0)
    assert torch.allclose(risk_from_logits(mean), released_calculate_risk(mean))
    s = survival(mean)
    assert torch.all(s[:, 1:] <= s[:, :-1]) and torch.allclose(-s.sum(1), risk_from_logits(mean))


def test_intervals_from_the_seed_cut_points():
    assert CUT_POINTS_DAYS == (769.0, 1357.0, 2626.0)
    assert interval_index([0, 768.9, 769, 1356, 1357, 2625, 2626, 9000]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert interval_names() == ["[0, 769)", "[769, 1357)", "[1357, 2626)", "[2626, inf)"]


@pytest.mark.parametrize("seed", range(5))
def test_c_index_equals_lifelines_with_ties(seed):
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(seed)
    n = 120
    time = rng.integers(100, 130, n).astype(float)  # many tied times
    event = (rng.random(n) < 0.6).astype(int)
    risk = np.round(rng.normal(size=n), 1)  # many tied risks
    ours = harrell_c_index(time, event, risk)
    assert ours == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)


def test_c_index_small_cases():
    assert harrell_c_index([1, 2, 3], [1, 1, 1], [3, 2, 1]) == 1.0
    assert harrell_c_index([1, 2, 3], [1, 1, 1], [1, 2, 3]) == 0.0
    assert harrell_c_index([1, 2], [1, 0], [5, 5]) == 0.5
    assert harrell_c_index([1, 2], [0, 0], [1, 2]) is None


@pytest.mark.parametrize("seed", range(5))
def test_hpv_metrics_equal_scikit_learn_with_ties(seed):
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(seed)
    y = (rng.random(90) < 0.7).astype(int)
    p = np.round(np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(scale=0.25, size=90), 0, 1), 1)  # ties, some at 0.5
    for thr in (0.5, 0.3):
        m = hpv_metrics(y, p, thr)
        call = (p >= thr).astype(int)
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, call))
        assert m["sensitivity"] == pytest.approx(recall_score(y, call, pos_label=1))
        assert m["specificity"] == pytest.approx(recall_score(y, call, pos_label=0))
        assert m["AUC"] == pytest.approx(roc_auc_score(y, p))
        assert m["threshold"] == thr


def test_hpv_losses():
    z = torch.tensor([2.0, -1.0, 0.5, -3.0])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    weighted = make_hpv_loss("weighted_bce", n_pos=6, n_neg=2)(z, y)  # w_neg = 3
    assert float(weighted) == pytest.approx(float((bce * torch.tensor([1.0, 3.0, 3.0, 1.0])).mean()))
    p = torch.sigmoid(z)
    pt = torch.where(y > 0, p, 1 - p)
    a = torch.where(y > 0, torch.tensor(0.1), torch.tensor(0.9))
    assert float(focal(z, y)) == pytest.approx(float((a * (1 - pt) ** 2 * bce).mean()), rel=1e-6)
    with pytest.raises(ValueError):
        make_hpv_loss("dice", 1, 1)
