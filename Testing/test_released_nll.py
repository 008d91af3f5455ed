"""Issue 28 item 5: the survival NLL keeps the released ``nll_loss``'s 1e-7 clamp.

The released function (Liiiii2101/HECKTOR2025-MEDAI, Task3_training.py / Task2_training.py,
``nll_loss(h, y, c, alpha=0.5, eps=1e-7, reduction='sum')``) floors the gathered
``S_{y-1}``, ``h_y`` and ``S_y`` at eps right before the logs. It is written out below from
that code; at large logits (scale 20) the clamp is active, and ours must equal it there (the
old log-space loss without the floor did not), while ``clamp=None`` keeps the exact likelihood.
"""

from __future__ import annotations

import math

import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.outcome.survival import NLL_CLAMP_EPS, discrete_time_nll  # noqa: E402

from test_outcome_survival_metrics import released_nll_loss  # the released formula, written out once

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _large(seed: int, scale: float = 20.0, n: int = 64, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    interval = torch.randint(0, k, (n,), generator=g)
    censored = (torch.rand(n, generator=g) < 0.4).to(torch.float64)
    return logits, interval, censored


def test_default_clamp_is_the_released_eps():
    assert NLL_CLAMP_EPS == 1e-7


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clamped_nll_equals_released_at_large_logits(seed):
    logits, interval, censored = _large(seed)
    released = float(released_nll_loss(logits, interval.view(-1, 1), censored.view(-1, 1)))
    ours = float(discrete_time_nll(logits, interval, censored))
    assert ours == pytest.approx(released, rel=1e-5, abs=1e-5)
    exact = float(discrete_time_nll(logits, interval, censored, clamp=None))
    # the clamp is active here: the exact likelihood is much larger (the old behaviour)
    assert exact > released * 1.2


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_patient_terms_and_mean_match_released(reduction):
    logits, interval, censored = _large(7, n=16)
    released = float(released_nll_loss(logits, interval.view(-1, 1), censored.view(-1, 1), reduction=reduction))
    assert float(discrete_time_nll(logits, interval, censored, reduction=reduction)) == pytest.approx(
        released, rel=1e-5, abs=1e-5)
    # one patient at a time, in plain probabilities with max(p, eps) (the paper's terms + the floor)
    per = discrete_time_nll(logits, interval, censored, reduction="none")
    for i in range(len(logits)):
        z, y, c = logits[i].tolist(), int(interval[i]), float(censored[i])
        h = [1 / (1 + math.exp(-v)) for v in z]
        s = [1.0]
        for hk in h:
            s.append(s[-1] * (1 - hk))
        lg = lambda p: math.log(max(p, 1e-7))  # noqa: E731
        unc = -(1 - c) * (lg(s[y]) + lg(h[y]))
        base = unc - c * lg(s[y + 1])
        assert float(per[i]) == pytest.approx(0.5 * base + 0.5 * unc, rel=1e-5, abs=1e-5)


def test_clamped_terms_pass_no_gradient_like_the_released_clamp():
    logits = torch.tensor([[30.0, 30.0, 30.0, 30.0]], dtype=torch.float64, requires_grad=True)
    # interval 2, uncensored: S_1 = (1 - h_0)(1 - h_1) ~ 1e-26 -> floored, h_2 ~ 1 -> not floored
    ours = discrete_time_nll(logits, torch.tensor([2]), torch.tensor([0.0]))
    ours.backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    released_nll_loss(ref_logits, torch.tensor([[2]]), torch.tensor([[0.0]])).backward()
    assert float(ours.detach()) == pytest.approx(-math.log(1e-7), rel=1e-5)
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-9)


def test_float32_large_logits_stay_finite():
    logits, interval, censored = _large(5)
    logits = logits.float().requires_grad_(True)
    loss = discrete_time_nll(logits, interval, censored.float())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
