"""Seed 004's outcome training: 5-fold patient-wise CV, AdamW with two learning rates, best epoch per fold.

Per endpoint (``rfs`` or ``hpv``) and fold (sections 3.2, 3.3):

* folds: patients shuffled with ``seed`` and cut into ``n_folds`` near-equal parts (the released
  code's ``KFold(shuffle=True)`` scheme; numpy permutation here, so not its exact split); one case
  per patient, so patient-wise;
  patients without the endpoint's target are left out of that endpoint;
* clinical encoding fitted on the fold's training patients only (released code: on all
  patients; fitting inside the fold keeps validation patients unseen) and saved with the fold;
* AdamW, weight decay 1e-2, lr 1e-4 for the image branch (ResNet-18 + LGM), 5e-4 for the
  clinical branch and head; batch 16; 20 epochs for RFS, 30 for HPV (paper; ``epochs``
  overrides both); no augmentation (released code); a last batch of one patient is dropped
  (batch norm needs two);
* RFS loss: :func:`HNTumorSegLib.outcome.survival.discrete_time_nll` (alpha 0.5, sum);
  HPV loss: weighted BCE by default, or focal (:mod:`HNTumorSegLib.outcome.classification`);
* best epoch: highest validation Harrell C-index (RFS) or balanced accuracy at 0.5 (HPV), the
  first one on ties; its weights are the fold's model. The fold's validation predictions at
  that epoch are kept: pooled, they give the cross-validated estimate.
* seed 004's released HPV recipe (``--preset medai-hpv``, :mod:`.presets`) switches on three
  steps of its code: scikit-learn's ``KFold`` (``sklearn_kfold``), class-balanced batches
  (``balanced_sampler``) and, after the best epoch, temperature scaling + a Youden threshold
  fitted on the fold's validation patients (``calibrate``), kept per fold in the model card.

Example:
    >>> results = train_endpoint(cases, "rfs", TrainConfig(epochs=20))
    >>> results.cv["C_index"]
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.outcome.classification import DEFAULT_HPV_LOSS, make_hpv_loss
from HNTumorSegLib.outcome.clinical import DEFAULT_EMPTY_LABEL, ClinicalEncoder
from HNTumorSegLib.outcome.metrics import harrell_c_index, hpv_metrics
from HNTumorSegLib.outcome.network import DEFAULT_BLOCK_INPLANES, OutcomeNet
from HNTumorSegLib.outcome.survival import ALPHA, CUT_POINTS_DAYS, discrete_time_nll, interval_index, risk_from_logits

from .data import OutcomeCase

EPOCHS = {"rfs": 20, "hpv": 30}


@dataclass
class TrainConfig:
    """Hyper-parameters (defaults: seed 004)."""

    epochs: int | None = None  # None: 20 for RFS, 30 for HPV
    batch_size: int = 16
    lr_image: float = 1e-4
    lr_clinical: float = 5e-4
    weight_decay: float = 1e-2
    n_folds: int = 5
    seed: int = 0
    hpv_loss: str = DEFAULT_HPV_LOSS
    alpha: float = ALPHA
    cut_points_days: Sequence[float] = CUT_POINTS_DAYS
    block_inplanes: Sequence[int] = DEFAULT_BLOCK_INPLANES
    clinical_width: int = 128
    head_width: int = 128
    dropout: float = 0.1
    sklearn_kfold: bool = False      # released: KFold(n_folds, shuffle=True, random_state=seed)
    balanced_sampler: bool = False   # released HPV: WeightedRandomSampler, drop_last
    calibrate: bool = False          # released HPV: temperature scaling + Youden threshold per fold
    empty_label: str = DEFAULT_EMPTY_LABEL.value   # an empty label's volume: training median (released) or 0

    def epochs_for(self, endpoint: str) -> int:
        return int(self.epochs) if self.epochs else EPOCHS[endpoint]

    def architecture(self) -> dict:
        return {"name": "OutcomeNet", "block_inplanes": list(self.block_inplanes), "clinical_width": self.clinical_width,
                "head_width": self.head_width, "dropout": self.dropout}


@dataclass
class FoldResult:
    fold: int
    state_dict: dict
    encoder: ClinicalEncoder
    best_epoch: int
    best_metric: float | None
    val_ids: list[str]
    val_outputs: np.ndarray  # risk (rfs) or probability (hpv) at the best epoch
    history: list[dict] = field(default_factory=list)
    temperature: float | None = None  # calibrate: T of sigmoid(z / T)
    threshold: float | None = None    # calibrate: the fold's Youden threshold on sigmoid(z / T)


@dataclass
class EndpointResult:
    endpoint: str
    folds: list[FoldResult]
    cv: dict
    config: dict


def kfold_indices(n: int, n_folds: int, seed: int, sklearn: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold (train, validation) index pairs; every index validated exactly once.

    ``sklearn``: scikit-learn's ``KFold(n_folds, shuffle=True, random_state=seed)`` (the released code's).
    """
    if n < n_folds or n_folds < 2:
        raise InputError(f"{n} patients cannot make {n_folds} folds", None, "use fewer folds or more patients")
    if sklearn:
        from sklearn.model_selection import KFold

        return [(np.sort(tr), np.sort(va))
                for tr, va in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.arange(n))]
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, n_folds)
    return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k])), np.sort(parts[k]))
            for k in range(n_folds)]


def _usable(cases: Sequence[OutcomeCase], endpoint: str) -> list[OutcomeCase]:
    if endpoint == "rfs":
        return [c for c in cases if c.rfs_days is not None and c.relapse is not None]
    return [c for c in cases if c.hpv is not None]


def _predict(net, x, clin, batch: int = 16):
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(net(x[s:s + batch], clin[s:s + batch]))
    return torch.cat(out)


def _score(endpoint: str, logits, cases: Sequence[OutcomeCase]) -> tuple[float | None, np.ndarray]:
    import torch

    if endpoint == "rfs":
        risk = risk_from_logits(logits).numpy()
        return harrell_c_index([c.rfs_days for c in cases], [c.relapse for c in cases], risk), risk
    prob = torch.sigmoid(logits[:, 0]).numpy()
    return hpv_metrics([c.hpv for c in cases], prob)["balanced_accuracy"], prob


def train_fold(endpoint: str, train: Sequence[OutcomeCase], val: Sequence[OutcomeCase], fold: int,
               config: TrainConfig, progress: Callable[[str], None] | None = None) -> FoldResult:
    import torch

    torch.manual_seed(config.seed * 1000 + fold)
    rng = np.random.default_rng([config.seed, fold])
    enc = ClinicalEncoder.fit([c.record for c in train], empty_label=config.empty_label)
    x_tr = torch.from_numpy(np.stack([c.patch for c in train]))
    c_tr = torch.from_numpy(np.stack([enc.transform(c.record) for c in train]))
    x_va = torch.from_numpy(np.stack([c.patch for c in val]))
    c_va = torch.from_numpy(np.stack([enc.transform(c.record) for c in val]))
    n_out = len(config.cut_points_days) + 1 if endpoint == "rfs" else 1
    net = OutcomeNet(enc.size, n_out, config.block_inplanes, config.clinical_width, config.head_width, config.dropout)
    opt = torch.optim.AdamW([{"params": net.image_parameters(), "lr": config.lr_image},
                             {"params": net.clinical_head_parameters(), "lr": config.lr_clinical}],
                            weight_decay=config.weight_decay)
    if endpoint == "rfs":
        y_tr = torch.as_tensor(interval_index([c.rfs_days for c in train], config.cut_points_days))
        cens_tr = torch.as_tensor([1 - c.relapse for c in train], dtype=torch.float32)
        loss_of = lambda z, idx: discrete_time_nll(z, y_tr[idx], cens_tr[idx], alpha=config.alpha)  # noqa: E731
    else:
        y_tr = torch.as_tensor([c.hpv for c in train], dtype=torch.float32)
        hpv_loss = make_hpv_loss(config.hpv_loss, int(y_tr.sum()), int(len(y_tr) - y_tr.sum()))
        loss_of = lambda z, idx: hpv_loss(z[:, 0], y_tr[idx])  # noqa: E731

    best = FoldResult(fold, {}, enc, 0, None, [c.id for c in val], np.zeros(len(val)))
    epochs = config.epochs_for(endpoint)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        if config.balanced_sampler and endpoint == "hpv":
            from .presets import balanced_order

            order = balanced_order([c.hpv for c in train], config.batch_size, rng)
        else:
            order = rng.permutation(len(train))
        total = 0.0
        for s in range(0, len(order), config.batch_size):
            idx = torch.as_tensor(order[s:s + config.batch_size])
            if len(idx) < 2:
                continue  # batch norm needs two samples
            opt.zero_grad()
            loss = loss_of(net(x_tr[idx], c_tr[idx]), idx)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        metric, outputs = _score(endpoint, _predict(net, x_va, c_va), val)
        best.history.append({"epoch": epoch, "loss": total, "val": metric, "seconds": round(time.perf_counter() - t0, 2)})
        if progress:
            progress(f"{endpoint} fold {fold} epoch {epoch}/{epochs}: loss {total:.3f}, "
                     f"val {'C-index' if endpoint == 'rfs' else 'balanced accuracy'} "
                     f"{'n/a' if metric is None else f'{metric:.3f}'}")
        if not best.state_dict or (metric is not None and (best.best_metric is None or metric > best.best_metric)):
            best.state_dict = copy.deepcopy(net.state_dict())
            best.best_epoch, best.best_metric, best.val_outputs = epoch, metric, outputs
    if config.calibrate and endpoint == "hpv":
        _calibrate(best, net, x_va, c_va, val)
    return best


def _calibrate(best: FoldResult, net, x_va, c_va, val: Sequence[OutcomeCase]) -> None:
    """Released HPV steps after training: temperature on the best epoch's validation logits, then Youden."""
    import torch

    from .presets import fit_temperature, youden_threshold

    net.load_state_dict(best.state_dict)
    logits = _predict(net, x_va, c_va)[:, 0]
    labels = [c.hpv for c in val]
    best.temperature = fit_temperature(logits, labels)
    best.val_outputs = torch.sigmoid(logits / best.temperature).numpy()
    best.threshold = youden_threshold(best.val_outputs, labels)


def train_endpoint(cases: Sequence[OutcomeCase], endpoint: str, config: TrainConfig = TrainConfig(),
                   progress: Callable[[str], None] | None = None) -> EndpointResult:
    """All folds of one endpoint, and the pooled out-of-fold estimate in ``cv``."""
    if endpoint not in ("rfs", "hpv"):
        raise InputError(f"endpoint {endpoint!r} unknown", None, "use rfs or hpv")
    usable = _usable(cases, endpoint)
    folds = []
    for k, (tr, va) in enumerate(kfold_indices(len(usable), config.n_folds, config.seed, config.sklearn_kfold)):
        folds.append(train_fold(endpoint, [usable[i] for i in tr], [usable[i] for i in va], k, config, progress))
    by_id = {c.id: c for c in usable}
    ids = [i for f in folds for i in f.val_ids]
    outs = np.concatenate([f.val_outputs for f in folds])
    if endpoint == "rfs":
        cv = {"C_index": harrell_c_index([by_id[i].rfs_days for i in ids], [by_id[i].relapse for i in ids], outs),
              "n": len(ids), "events": int(sum(by_id[i].relapse for i in ids))}
    else:
        cv = hpv_metrics([by_id[i].hpv for i in ids], outs)
    cv["per_fold_best"] = [f.best_metric for f in folds]
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    cfg["epochs"] = config.epochs_for(endpoint)
    return EndpointResult(endpoint, folds, cv, cfg)
