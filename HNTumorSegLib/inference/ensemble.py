"""Ensemble members and how their outputs are combined.

A *member* is one architecture with its folds: ``EnsembleMember(networks=[fold0, fold1], weight=1.0)``.
Folds of one member are averaged in **logit** space, tile by tile, exactly as nnUNetPredictor
does (so an nnU-Net folder predicts as nnU-Net predicts). Members are averaged in
**probability** space with their weights (seed 002: nnU-Net ResEnc-L + SegResNetDS probability
averaging). A member's output is a :class:`~HNTumorSegLib.vocab.NetworkOutput`, the word of
``model.json``: ``"softmax"`` (K classes, background first) or ``"sigmoid_regions"``
(K independent sigmoid region maps, e.g. GTVp and GTVn, fused later by
``postprocess.fuse_binary_probabilities``); all members of one ensemble share the same output.

Uncertainty (optional, per voxel; a :class:`~HNTumorSegLib.vocab.Uncertainty`):
* ``"entropy"``: predictive entropy of the mean probability, divided by its maximum
  (log K for softmax, K·log 2 for sigmoid maps) so it lies in [0, 1]. Chosen as the default
  because it exists for one model too (TTA or not) and needs no extra memory per member.
* ``"disagreement"``: fraction of members (folds count as members when
  ``fold_average="probabilities"``) whose label differs from the ensemble's label; 0 with one member.

Example:
    >>> import torch
    >>> nnunet_folds = [torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Conv3d(2, 3, 3, padding=1)]
    >>> segresnet_folds = [torch.nn.Conv3d(2, 3, 1)]
    >>> members = as_members([(nnunet_folds, 1.0), (segresnet_folds, 1.0)])
    >>> [(len(m.networks), m.weight) for m in members]
    [(2, 1.0), (1, 1.0)]
    >>> probabilities = np.full((3, 2, 2, 2), 1 / 3)                      # no idea at all: entropy 1
    >>> float(predictive_entropy(probabilities, "softmax").max())
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..vocab import NetworkOutput


@dataclass
class EnsembleMember:
    """One architecture: its fold networks, its weight, output type and optional own patch size / TTA axes."""

    networks: list[Any]
    weight: float = 1.0
    output: str = NetworkOutput.SOFTMAX   # any spelling NetworkOutput.parse reads; a member after __init__
    patch_size: tuple[int, ...] | None = None   # (z, y, x)
    mirror_axes: tuple[int, ...] | None = None
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.networks, (list, tuple)):
            self.networks = [self.networks]
        self.networks = list(self.networks)
        if not self.networks:
            raise ValueError("an ensemble member needs at least one network")
        self.output = NetworkOutput.parse(self.output, "member output")
        if not self.weight > 0:
            raise ValueError(f"member weight must be > 0, got {self.weight}")
        if self.patch_size is not None:
            self.patch_size = tuple(int(p) for p in self.patch_size)


def _is_module(obj: Any) -> bool:
    try:
        import torch

        return isinstance(obj, torch.nn.Module)
    except ImportError:  # pragma: no cover - torch is required for inference anyway
        return callable(obj)


def as_members(networks: Any, output: str = NetworkOutput.SOFTMAX) -> list[EnsembleMember]:
    """Accept a module, a list of fold modules, EnsembleMembers or ``(networks, weight)`` pairs."""
    if isinstance(networks, EnsembleMember):
        return [networks]
    if _is_module(networks):
        return [EnsembleMember([networks], output=output)]
    items = list(networks)
    if not items:
        raise ValueError("no networks given")
    if all(_is_module(n) for n in items):
        return [EnsembleMember(items, output=output)]
    members = []
    for item in items:
        if isinstance(item, EnsembleMember):
            members.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            nets, weight = item
            members.append(EnsembleMember(list(nets) if not _is_module(nets) else [nets],
                                          weight=float(weight), output=output))
        else:
            raise ValueError("networks must be modules, EnsembleMember objects or (networks, weight) pairs")
    if len({m.output for m in members}) > 1:
        raise ValueError("all ensemble members must have the same output type (softmax or sigmoid_regions)")
    return members


def logits_to_probabilities(logits, output: str):
    """Softmax over channel 0, or a per-channel sigmoid, on a torch tensor (K, ...)."""
    import torch

    if output == NetworkOutput.SOFTMAX:
        return torch.softmax(logits, dim=0)
    return torch.sigmoid(logits)


def background_probabilities(num_classes: int, shape: Sequence[int], output: str) -> np.ndarray:
    """What 'nothing here' looks like: P(background)=1 for softmax, all maps 0 for sigmoid."""
    p = np.zeros((num_classes, *shape), dtype=np.float32)
    if output == NetworkOutput.SOFTMAX:
        p[0] = 1.0
    return p


def predictive_entropy(prob: np.ndarray, output: str) -> np.ndarray:
    """Normalised entropy in [0, 1] of mean probabilities (K, z, y, x) -> (z, y, x) float32."""
    eps = 1e-7
    p = np.clip(prob, eps, 1.0)
    k = prob.shape[0]
    if output == NetworkOutput.SOFTMAX:
        h = -(p * np.log(p)).sum(axis=0)
        return (h / np.log(max(k, 2))).astype(np.float32)
    q = np.clip(1.0 - prob, eps, 1.0)
    h = -(p * np.log(p) + q * np.log(q)).sum(axis=0)
    return (h / (k * np.log(2.0))).astype(np.float32)


def hard_labels(prob: np.ndarray, output: str, threshold: float = 0.5) -> np.ndarray:
    """Argmax (softmax) or, for sigmoid maps, the highest map above ``threshold`` (0 if none); uint8."""
    if output == NetworkOutput.SOFTMAX:
        return np.argmax(prob, axis=0).astype(np.uint8)
    best = np.argmax(prob, axis=0)
    return np.where(np.take_along_axis(prob, best[None], 0)[0] > threshold, best + 1, 0).astype(np.uint8)
