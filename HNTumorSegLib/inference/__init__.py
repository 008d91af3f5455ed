"""Inference: :class:`TiledPredictor` (one network and its folds over a sliding window),
:class:`EnsemblePredictor` (several networks combined, uncertainty), their options, tiling,
ensemble arithmetic and device choice.

torch is imported only when a prediction is set up, never at ``import HNTumorSegLib.inference``.

Example:
    >>> from HNTumorSegLib.inference import EnsemblePredictor, TiledPredictor, TilingOptions
    >>> logits = TiledPredictor(folds, (48, 192, 192), 3).predict_logits(x)          # raw logits
    >>> prob = EnsemblePredictor(folds, (48, 192, 192), 3,
    ...                          tiling=TilingOptions(tta=True)).predict_probabilities(x)
"""

from .ensemble import EnsembleMember
from .ensemble_predictor import EnsembleOptions, EnsemblePredictor, PredictionResult
from .tiled import TiledPredictor, TilingOptions
from .tiling import Region

__all__ = ["EnsembleMember", "EnsembleOptions", "EnsemblePredictor", "PredictionResult", "Region",
           "TiledPredictor", "TilingOptions"]
