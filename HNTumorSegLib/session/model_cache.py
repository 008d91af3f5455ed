"""The one model a session keeps loaded, while model, device and folds stay the same.

Why one: a second model in memory doubles a session's footprint (an STU-Net-L ensemble is
gigabytes) for a case users rarely have (two models interleaved); switching costs one load.
The loader is :func:`HNTumorSegLib.models.loader.load_model`, handed to the pipeline's
validation through ``model_loader`` (:func:`HNTumorSegLib.pipeline.validate.validate_request`).
``loads`` counts real loads: the tests and the result events show it.

Example:
    >>> from HNTumorSegLib.folds import Folds
    >>> cache = ModelCache()
    >>> loader = cache.loader_for(device="cpu")
    >>> m1 = loader("demo-midrt", folds=Folds.first(), device="cpu")
    >>> m2 = loader("demo-midrt", folds=Folds.first(), device="cpu")
    >>> m1 is m2, cache.loads
    (True, 1)
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any, Callable

from ..folds import parse_folds


class ModelCache:
    """Keeps the last loaded model; a different (model, folds, device) key replaces it."""

    def __init__(self, load: Callable[..., Any] | None = None) -> None:
        self._load = load
        self.key: tuple | None = None
        self.model: Any = None
        self.loads = 0
        self._lock = threading.Lock()

    def get(self, model: str, folds: Any, device: str) -> Any:
        """The loaded model for this key, loading it (and dropping the previous one) when needed."""
        folds = parse_folds(folds)
        key = (str(model), repr(folds.to_json()), str(device))
        with self._lock:
            if key != self.key or self.model is None:
                self.clear()
                load = self._load
                if load is None:
                    from ..models.loader import load_model as load
                self.model = load(str(model), folds=folds, device="cpu")  # the predictor moves it to the device
                self.key = key
                self.loads += 1
            return self.model

    def loader_for(self, device: str) -> Callable[..., Any]:
        """A ``load_model``-shaped callable for one request (its device is part of the key; the
        ``device`` the pipeline passes, always ``"cpu"`` for loading, is ignored)."""
        request_device = str(device)

        def loader(model: str, folds: Any = None, device: str = "cpu", **_kw: Any) -> Any:  # noqa: ARG001
            return self.get(model, folds, request_device)

        return loader

    def clear(self) -> None:
        """Drop the model and give its memory back (GPU cache included)."""
        self.model, self.key = None, None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # best effort
                pass
