"""Discrete-time survival (seed 004 section 3.2): interval labels, hazards, survival, NLL, risk.

Recurrence-free survival (RFS) is cut into K = 4 intervals at 769, 1357 and 2626 days:
``[0, 769)``, ``[769, 1357)``, ``[1357, 2626)``, ``[2626, inf)``. The network gives one logit
``z_k`` per interval; ``h_k = sigmoid(z_k)`` is the hazard (probability of relapse in interval
k given no relapse before), ``S_k = prod_{j<=k} (1 - h_j)`` the probability of being
relapse-free after interval k (``S_0 = 1``).

Loss (paper eq. in 3.2, released ``nll_loss``): for a patient whose time falls in interval y with
censoring indicator c (1 = censored, i.e. ``Relapse == 0``)::

    l_base   = -(1 - c) [log S_{y-1} + log h_y] - c log S_y
    l_uncens = -(1 - c) [log S_{y-1} + log h_y]
    L        = sum_i (1 - alpha) l_base,i + alpha l_uncens,i        (alpha = 0.5)

Clamp, as released (issue 28 item 5): the released ``nll_loss`` floors the three gathered
probabilities ``S_{y-1}``, ``h_y`` and ``S_y`` at ``eps = 1e-7`` (``.clamp(min=eps)``) right
before their logs, and nowhere else (``S`` itself is the unclamped ``cumprod``). We compute the
terms in log space (``logsigmoid``, accurate where ``1 - sigmoid(z)`` cancels in float32) and
floor each of the three logs at ``log(eps)`` (:data:`NLL_CLAMP_EPS`, the default), which is
the released value: ``log(max(p, eps)) = max(log p, log eps)``, and like the released clamp it
passes no gradient through a floored term. Without the floor (``clamp=None``) the loss is the
exact likelihood; the two differ once a probability falls below 1e-7 (large logits: at logit
scale 20 the unclamped sum can be far above the clamped one). ``alpha=0, clamp=None`` is
exactly pycox's logistic-hazard NLL (the tests check it).

Risk (the authors' inference ``_calculate_risk``): the fold ensemble's logits are averaged
first, then ``r = -sum_k S_k``; higher r = earlier relapse expected.

Example:
    >>> import torch
    >>> y = interval_index([100, 800, 3000])          # the interval of each patient's time
    >>> y
    array([0, 1, 3])
    >>> logits = torch.zeros(3, len(interval_names()))   # a network's output: one logit per interval
    >>> censored = torch.tensor([0.0, 1.0, 0.0])          # patient 2 left follow-up without relapse
    >>> loss = discrete_time_nll(logits, torch.as_tensor(y), censored)
    >>> fold_logits = [logits, logits + 1]
    >>> risk = risk_from_logits(torch.stack(fold_logits).mean(0))
    >>> tuple(risk.shape)                              # one risk per patient
    (3,)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: seed 004 section 3.2: cut points of the K = 4 RFS intervals, in days
CUT_POINTS_DAYS: tuple[float, ...] = (769.0, 1357.0, 2626.0)
#: weight of the uncensored term in the convex combination (seed 004, released code)
ALPHA = 0.5
#: the released ``nll_loss``'s floor on S_{y-1}, h_y and S_y before the logs (None: no floor)
NLL_CLAMP_EPS: float | None = 1e-7


def interval_index(times_days: Sequence[float], cut_points: Sequence[float] = CUT_POINTS_DAYS) -> np.ndarray:
    """The interval (0..K-1) holding each time: the number of cut points <= t.

    A time equal to a cut point opens the next interval (``[769, 1357)`` holds 769).
    """
    return np.searchsorted(np.asarray(cut_points, float), np.asarray(times_days, float), side="right")


def interval_names(cut_points: Sequence[float] = CUT_POINTS_DAYS) -> list[str]:
    """``["[0, 769)", "[769, 1357)", "[1357, 2626)", "[2626, inf)"]`` (days)."""
    edges = [0.0, *[float(c) for c in cut_points]]
    names = [f"[{edges[k]:g}, {edges[k + 1]:g})" for k in range(len(edges) - 1)]
    return names + [f"[{edges[-1]:g}, inf)"]


def hazards(logits):
    """``h_k = sigmoid(z_k)`` (torch tensor [B, K] in, [B, K] out)."""
    import torch

    return torch.sigmoid(logits)


def survival(logits):
    """``S_k = prod_{j<=k} (1 - h_j)``, k = 1..K (torch [B, K])."""
    import torch

    return torch.cumprod(1.0 - torch.sigmoid(logits), dim=1)


def risk_from_logits(logits):
    """``r = -sum_k S_k`` on (already fold-averaged) logits [B, K] -> [B]; higher = earlier relapse."""
    return -survival(logits).sum(dim=1)


def discrete_time_nll(logits, interval, censored, alpha: float = ALPHA, reduction: str = "sum",
                      clamp: float | None = NLL_CLAMP_EPS):
    """The seed's discrete-time negative log-likelihood with censoring (module docstring).

    ``logits`` [B, K] float, ``interval`` [B] int (0..K-1), ``censored`` [B] (1 = censored).
    ``reduction``: ``"sum"`` (paper and released code), ``"mean"`` or ``"none"``.
    ``clamp``: floor of S_{y-1}, h_y, S_y before the logs (released 1e-7; None = exact likelihood).
    """
    import torch
    import torch.nn.functional as F

    interval = torch.as_tensor(interval, device=logits.device).long().view(-1, 1)
    c = torch.as_tensor(censored, device=logits.device).to(logits.dtype).view(-1)
    log_h = F.logsigmoid(logits)            # log h_k
    log_1mh = F.logsigmoid(-logits)         # log (1 - h_k)
    log_s = torch.cumsum(log_1mh, dim=1)    # log S_k, k = 1..K
    log_s_padded = torch.cat([torch.zeros_like(log_s[:, :1]), log_s], dim=1)  # log S_0 = 0
    log_s_prev = log_s_padded.gather(1, interval).view(-1)       # log S_{y-1}
    log_s_this = log_s_padded.gather(1, interval + 1).view(-1)   # log S_y
    log_h_this = log_h.gather(1, interval).view(-1)
    if clamp is not None:   # the released .clamp(min=eps) on the three probabilities, in log space
        floor = float(np.log(clamp))
        log_s_prev, log_s_this, log_h_this = (t.clamp(min=floor) for t in (log_s_prev, log_s_this, log_h_this))
    uncensored = -(1.0 - c) * (log_s_prev + log_h_this)
    base = uncensored - c * log_s_this
    loss = (1.0 - alpha) * base + alpha * uncensored
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be sum, mean or none, not {reduction!r}")
