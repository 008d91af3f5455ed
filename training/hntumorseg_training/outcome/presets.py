"""Released training recipes of ``outcome-train --preset`` (issue 28), and the steps only they use.

``medai-hpv`` (:data:`MEDAI_HPV`) is seed 004's HPV recipe as its code runs
(Liiiii2101/HECKTOR2025-MEDAI, ``Task2_training.py`` ``main``), where our default HPV training
follows the paper (weighted BCE, two learning rates, batch 16, threshold 0.5):

| setting | released (preset) | our default |
|---|---|---|
| loss | ``focal_loss(alpha=0.1, gamma=2)``, mean | class-weighted BCE |
| folds | ``KFold(5, shuffle=True, random_state=3407)`` over the patients | numpy permutation, ``--seed`` |
| epochs, batch | 30, 8 (``drop_last``) | 30, 16 |
| AdamW | lr **5e-5** for both parameter groups, weight decay 1e-2 | 1e-4 image / 5e-4 clinical, 1e-2 |
| batches | ``WeightedRandomSampler`` (1 / class count, with replacement, ``n // 8 * 8`` draws) | a shuffle |
| best epoch | balanced accuracy at 0.5 on the fold's validation patients | the same |
| after training | temperature ``T`` fitted on the validation logits (``log T`` by LBFGS, lr 0.01, 200 iterations, BCE), then the **Youden** threshold (``argmax tpr - fpr`` of ``roc_curve``) on ``sigmoid(z / T)`` | none |
| prediction | each fold ``p_k = sigmoid(z_k / T_k)``; the call is the majority vote of ``p_k >= t_k``; the probability shown is the mean of ``p_k`` | mean logit, sigmoid, >= 0.5 |

Differences kept: the released code splits the rows of its CSV in file order; we split the
patients in the cohort's order (sorted IDs), so the folds are the same scheme, not the same
patients unless the CSV was sorted. The released code also fits the clinical encoding on all
patients; ours, as always, on the fold's training patients.

Example:
    >>> cfg = preset_config("medai-hpv")
    >>> cfg.hpv_loss, cfg.epochs, cfg.lr_image, cfg.lr_clinical, cfg.weight_decay, cfg.seed
    ('focal', 30, 5e-05, 5e-05, 0.01, 3407)
    >>> import numpy as np
    >>> youden_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.8
"""

from __future__ import annotations

import dataclasses

import numpy as np

from HNTumorSegLib.vocab import HpvLoss, OutcomePreset

from .train import TrainConfig

#: seed 004's released HPV recipe (module docstring): TrainConfig fields
MEDAI_HPV: dict = {"hpv_loss": HpvLoss.FOCAL.value, "epochs": 30, "batch_size": 8, "lr_image": 5e-5,
                   "lr_clinical": 5e-5, "weight_decay": 1e-2, "n_folds": 5, "seed": 3407,
                   "sklearn_kfold": True, "balanced_sampler": True, "calibrate": True}
PRESETS = {OutcomePreset.MEDAI_HPV: MEDAI_HPV}
#: the endpoints each preset trains
PRESET_ENDPOINTS = {OutcomePreset.MEDAI_HPV: ("hpv",)}


def preset_config(name: OutcomePreset | str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of a preset, with ``overrides`` (fields the user set) on top."""
    fields = dict(PRESETS[OutcomePreset.parse(name, "preset")])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(TrainConfig(), **fields)


def fit_temperature(logits, labels, max_iter: int = 200, lr: float = 0.01) -> float:
    """The released ``fit_temperature``: ``T = exp(log_T)``, ``log_T`` from 0 by LBFGS on BCE(z / T, y)."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float32).reshape(-1).detach()
    y = torch.as_tensor(labels, dtype=torch.float32).reshape(-1)
    log_t = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.LBFGS([log_t], lr=lr, max_iter=max_iter)
    bce = torch.nn.BCEWithLogitsLoss()

    def closure():
        opt.zero_grad()
        loss = bce(z / torch.exp(log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(torch.exp(log_t).item())


def youden_threshold(probabilities, labels) -> float:
    """The released ``pick_threshold_youden``: the ``roc_curve`` threshold of the largest tpr - fpr.

    Capped at 1.0: when no cut helps, ``roc_curve``'s first threshold (+inf, "never positive")
    wins; 1.0 says the same for probabilities and keeps the model card strict JSON.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, ts = roc_curve(np.asarray(labels).astype(int).ravel(), np.asarray(probabilities, float).ravel())
    return float(min(ts[int(np.argmax(tpr - fpr))], 1.0))


def balanced_order(labels, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """The released ``WeightedRandomSampler``: ``n // batch * batch`` draws with replacement, weight 1 / class count."""
    y = np.asarray(labels).astype(int)
    counts = np.bincount(y, minlength=2)
    w = (1.0 / np.maximum(counts, 1))[y]
    n = (len(y) // batch_size) * batch_size
    return rng.choice(len(y), size=n, replace=True, p=w / w.sum())
