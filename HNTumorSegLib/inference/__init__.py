"""Inference: the sliding-window :class:`Predictor`, its tiling, ensembles and device choice.

torch is imported only when a prediction is set up, never at ``import HNTumorSegLib.inference``.

Example:
    >>> from HNTumorSegLib.inference import Predictor
    >>> prob = Predictor(networks, patch_size=(48, 192, 192), num_classes=3).predict_logits(x)
"""

from .ensemble import EnsembleMember
from .predictor import PredictionResult, Predictor

__all__ = ["EnsembleMember", "PredictionResult", "Predictor"]
