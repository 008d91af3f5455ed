"""Several networks at once: :class:`EnsemblePredictor` combines :class:`~.tiled.TiledPredictor`
runs and computes the uncertainty map; :class:`EnsembleOptions` says how.

Each member (one architecture with its folds, :class:`~.ensemble.EnsembleMember`) is run by
its own :class:`~.tiled.TiledPredictor` (folds averaged in logit space, as nnU-Net does);
members are averaged in probability space with their weights (seed 002: nnU-Net ResEnc-L +
SegResNetDS). With ``fold_average="probabilities"`` every fold becomes its own member, which
fold disagreement needs. One network is an ensemble of one: the pipeline always comes
through here, so the uncertainty map exists for a single model too (entropy).

Example:
    >>> import torch
    >>> nnunet_folds = [torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Conv3d(2, 3, 3, padding=1)]
    >>> segresnet_folds = [torch.nn.Conv3d(2, 3, 1)]
    >>> x = np.zeros((2, 12, 40, 40), np.float32)              # (channels, z, y, x), normalised
    >>> mask_zyx = np.zeros((12, 40, 40), bool); mask_zyx[2:6, 10:20, 10:30] = True   # e.g. around the boxes
    >>> ens = EnsemblePredictor([(nnunet_folds, 1.0), (segresnet_folds, 1.0)], (8, 32, 32), 3, device="cpu",
    ...                         tiling=TilingOptions(tta=True), options=EnsembleOptions(uncertainty="entropy"))
    >>> res = ens.predict(x, region=mask_zyx)
    >>> res.probabilities.shape, res.uncertainty.shape, res.n_tiles
    ((3, 12, 40, 40), (12, 40, 40), 3)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..vocab import FoldAverage, Uncertainty
from .devices import resolve_device
from .ensemble import (EnsembleMember, as_members, background_probabilities, hard_labels,
                       predictive_entropy)
from .tiled import DeviceLike, NetworksLike, ProgressFn, TiledPredictor, TileProgress, TilingOptions, check_input, set_background_outside, \
    use_threads
from .tiling import Region, RegionLike, grow_region


@dataclass(frozen=True)
class EnsembleOptions:
    """How members are combined.

    Args:
        fold_average: ``"logits"`` (a member's folds averaged tile by tile in logit space,
            nnU-Net's way, default) or ``"probabilities"`` (each fold its own member).
        uncertainty: None, ``"entropy"`` or ``"disagreement"`` (see :mod:`.ensemble`).
    """

    fold_average: str = FoldAverage.LOGITS
    uncertainty: str | None = None

    def __post_init__(self) -> None:
        # frozen: convert the words where they enter (an unknown one is an InputError, a ValueError)
        object.__setattr__(self, "fold_average", FoldAverage.parse(self.fold_average, "fold_average"))
        object.__setattr__(self, "uncertainty", Uncertainty.parse_optional(self.uncertainty, "uncertainty"))


@dataclass
class PredictionResult:
    """What :meth:`EnsemblePredictor.predict` returns."""

    probabilities: np.ndarray                 # (K, z, y, x) float32
    uncertainty: np.ndarray | None = None     # (z, y, x) float32 in [0, 1], or None
    n_tiles: int = 0                          # network passes over tiles (folds x tiles, TTA not counted)
    seconds: float = 0.0


class EnsemblePredictor:
    """Probability-weighted ensemble of tiled networks, with an optional uncertainty map.

    Args:
        networks: a module, a list of fold modules, or a list of ``EnsembleMember`` /
            ``(networks, weight)`` pairs (cross-architecture probability averaging).
        patch_size: tile size (z, y, x); a member may carry its own.
        num_classes: output channels K of every network.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``; absent -> DeviceError.
        tiling: :class:`~.tiled.TilingOptions` for every member.
        options: :class:`EnsembleOptions`.
        output: ``"softmax"`` or ``"sigmoid_regions"`` (:class:`~HNTumorSegLib.vocab.NetworkOutput`) for plain modules (members carry their own).
        progress: ``progress(stage="inference", fraction=..., message="member 1/2 fold 1/5 tile 3/40")``.
    """

    def __init__(self, networks: NetworksLike, patch_size: Sequence[int], num_classes: int,
                 device: DeviceLike = "auto",
                 tiling: TilingOptions | None = None, options: EnsembleOptions | None = None, *,
                 output: str = "softmax", progress: ProgressFn | None = None) -> None:
        self.options = options or EnsembleOptions()
        self.tiling = tiling or TilingOptions()
        members = as_members(networks, output=output)
        self.output = members[0].output
        self.num_classes = int(num_classes)
        self.device = resolve_device(device)
        self.progress = progress
        if self.options.fold_average == FoldAverage.PROBABILITIES:
            members = [EnsembleMember([net], m.weight / len(m.networks), m.output, m.patch_size, m.mirror_axes,
                                      f"{m.name}fold{i}") for m in members for i, net in enumerate(m.networks)]
        self.weights = [m.weight for m in members]
        self.members = [TiledPredictor(m, patch_size, num_classes, self.device, self.tiling) for m in members]

    def predict_probabilities(self, x: np.ndarray, region: RegionLike | None = None) -> np.ndarray:
        """Ensemble probabilities (K, z, y, x) float32 (``region`` as in :meth:`predict`)."""
        return self.predict(x, region=region).probabilities

    def predict(self, x: np.ndarray, region: RegionLike | None = None) -> PredictionResult:
        """Run every member; ``region`` (bool mask, slices, list of slices or a
        :class:`~.tiling.Region`) restricts the run to boxes, background elsewhere."""
        import torch

        t0 = time.perf_counter()
        x = check_input(x)
        shape = x.shape[1:]
        grown = None if region is None else grow_region(region, shape, self.tiling.margin_zyx)
        if grown is not None and grown.is_empty:
            prob = background_probabilities(self.num_classes, shape, self.output)
            unc = np.zeros(shape, np.float32) if self.options.uncertainty else None
            return PredictionResult(prob, unc, 0, time.perf_counter() - t0)
        plans = [m.plan(shape, grown) for m in self.members]
        total = sum(len(m.networks) * len(p.tiles) for m, p in zip(self.members, plans))
        counter = TileProgress(self.progress, total, len(self.members))
        weight_sum = sum(self.weights)
        prob_sum = None
        labels = []
        with use_threads(self.tiling.num_threads), torch.inference_mode():
            for mi, (member, plan, weight) in enumerate(zip(self.members, plans, self.weights)):
                counter.member = mi
                p = member.predict_probabilities(x, grown, plan=plan, counter=counter)
                if self.options.uncertainty == Uncertainty.DISAGREEMENT:
                    labels.append(hard_labels(p, self.output))
                if prob_sum is None:
                    # one member: no weighted copy of a whole-volume array
                    prob_sum = p if len(self.members) == 1 else p * np.float32(weight / weight_sum)
                else:
                    prob_sum += p * np.float32(weight / weight_sum)
                del p
        assert prob_sum is not None   # an EnsemblePredictor has at least one member (as_members)
        if grown is not None and len(self.members) > 1:
            set_background_outside(prob_sum, grown.mask_zyx, self.output)  # exact, not a rounded weighted sum
        unc = self._uncertainty(prob_sum, labels, grown)
        return PredictionResult(prob_sum, unc, total, time.perf_counter() - t0)

    def count_tiles(self, shape: Sequence[int], region: RegionLike | None = None) -> int:
        """How many tiles (per fold, TTA not counted) a prediction over ``shape`` would run, all members."""
        shape = tuple(int(s) for s in shape)
        grown = None if region is None else grow_region(region, shape, self.tiling.margin_zyx)
        return sum(m.count_tiles(shape, grown) for m in self.members)

    def _uncertainty(self, prob: np.ndarray, labels: list, grown: Region | None) -> np.ndarray | None:
        if self.options.uncertainty is None:
            return None
        if self.options.uncertainty == Uncertainty.ENTROPY:
            u = predictive_entropy(prob, self.output)
        else:
            final = hard_labels(prob, self.output)
            u = np.mean([lab != final for lab in labels], axis=0).astype(np.float32)
        if grown is not None:
            u[~grown.mask_zyx] = 0.0
        return u
