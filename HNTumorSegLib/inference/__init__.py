"""Inference: :class:`TiledPredictor` (one network and its folds over a sliding window),
:class:`EnsemblePredictor` (several networks combined, uncertainty), their options, tiling,
ensemble arithmetic and device choice.

torch is imported only when a prediction is set up, never at ``import HNTumorSegLib.inference``.

Example:
    >>> import numpy as np, torch
    >>> from HNTumorSegLib.inference import EnsemblePredictor, TiledPredictor, TilingOptions
    >>> folds = [torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Conv3d(2, 3, 3, padding=1)]  # two tiny "folds"
    >>> x = np.zeros((2, 12, 40, 40), np.float32)                    # (channels, z, y, x), normalised
    >>> logits = TiledPredictor(folds, (8, 32, 32), 3, device="cpu").predict_logits(x)          # raw logits
    >>> prob = EnsemblePredictor(folds, (8, 32, 32), 3, device="cpu",
    ...                          tiling=TilingOptions(tta=True)).predict_probabilities(x)
    >>> tuple(logits.shape), prob.shape, bool(np.allclose(prob.sum(axis=0), 1, atol=1e-5))
    ((3, 12, 40, 40), (3, 12, 40, 40), True)
"""

from .ensemble import EnsembleMember
from .ensemble_predictor import EnsembleOptions, EnsemblePredictor, PredictionResult
from .tiled import TiledPredictor, TilingOptions
from .tiling import Region

__all__ = ["EnsembleMember", "EnsembleOptions", "EnsemblePredictor", "PredictionResult", "Region",
           "TiledPredictor", "TilingOptions"]
