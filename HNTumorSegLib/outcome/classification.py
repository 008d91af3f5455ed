"""HPV status losses (seed 004 section 3.3): class-weighted BCE (paper, the default) and focal loss (released code).

* ``weighted_bce``: ``-w(y) [y log p + (1 - y) log(1 - p)]`` with ``w_pos = 1`` and
  ``w_neg = n_pos / max(n_neg, 1)`` from the training fold's counts (paper), mean over the batch.
* ``focal``: the released ``focal_loss(alpha=0.1, gamma=2)``:
  ``alpha_t (1 - p_t)^gamma BCE`` with ``alpha_t = alpha`` for positives, ``1 - alpha`` for
  negatives; the released training also balanced batches with a WeightedRandomSampler.

Default: **weighted BCE**. It is what the paper reports its results with; its one weight comes
from the data, so the 0.5 threshold that balanced accuracy is read at stays meaningful. The
released focal loss with alpha = 0.1 *and* a class-balanced sampler corrects the imbalance
twice (each sample of the 80 % majority class weighs 0.1, and the sampler already gives
50/50 batches), which pushes probabilities of HPV-positive patients below 0.5.

Example:
    >>> import torch
    >>> logits, labels = torch.zeros(4, 1), torch.tensor([1, 0, 1, 1])   # HPV-positive = 1
    >>> loss_fn = make_hpv_loss("weighted_bce", n_pos=80, n_neg=20)
    >>> loss = loss_fn(logits[:, 0], labels.float())
    >>> round(float(loss), 4)
    1.213
"""

from __future__ import annotations

from typing import Callable

from ..vocab import HpvLoss

HPV_LOSSES = HpvLoss.values()   # the words: vocab.HpvLoss
DEFAULT_HPV_LOSS = HpvLoss.WEIGHTED_BCE


def weighted_bce(logits, labels, w_pos: float, w_neg: float):
    import torch
    import torch.nn.functional as F

    per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    weights = torch.where(labels > 0.5, torch.full_like(labels, w_pos), torch.full_like(labels, w_neg))
    return (per * weights).mean()


def focal(logits, labels, alpha: float = 0.1, gamma: float = 2.0):
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    pt = torch.exp(-bce)
    alpha_t = labels * alpha + (1 - labels) * (1 - alpha)
    return (alpha_t * (1 - pt) ** gamma * bce).mean()


def make_hpv_loss(name: str, n_pos: int, n_neg: int) -> Callable:
    """The loss function ``(logits [B], labels [B] float) -> scalar`` named ``name``."""
    name = HpvLoss.parse(name, "HPV loss")   # an unknown name: one line with a "did you mean"
    if name is HpvLoss.WEIGHTED_BCE:
        w_neg = n_pos / max(n_neg, 1)
        return lambda z, y: weighted_bce(z, y, 1.0, w_neg)
    return focal
