"""Intensity normalisation schemes named in a model's description (``model.json`` inputs).

Schemes (``normalise(array, scheme)``, result float32):

* ``{"type": "zscore"}`` - per case ``(x - mean) / max(std, 1e-8)``; numerically the same as
  nnU-Net v2's ``ZScoreNormalization`` (float32 arithmetic, same order of operations). With
  ``"use_mask": true`` and a ``mask`` argument the statistics come from the mask and the
  outside is set to 0 (nnU-Net's ``use_mask_for_norm``, where the outside holds 0 after its
  nonzero crop).
  With ``"nonzero": true`` the statistics come from the non-zero voxels and zeros stay 0 (MONAI's
  ``NormalizeIntensity(nonzero=True)``, UW LAIR's HNTS-MRG 2024 SegResNetDS).
* ``{"type": "ct", "mean", "std", "percentile_00_5", "percentile_99_5"}`` - nnU-Net's
  ``CTNormalization``: clip to the *dataset's* foreground 0.5 / 99.5 percentiles, subtract the
  dataset's foreground mean, divide by its std. Seed 004 uses it for the CT; the numbers come
  from the model (nnU-Net plans: ``foreground_intensity_properties_per_channel``; see
  :func:`schemes_from_plans`).
* ``{"type": "window", "lo", "hi"}`` - clip to [lo, hi] and map to [-1, 1] (seed 002's paper CT).
* ``{"type": "window01", "lo", "hi"}`` - clip to [lo, hi] and map to [0, 1] (seed 002's released
  CT, [-105, 195] HU); with ``"minmax": true`` then ``(x - min) / (max - min + 1e-6)`` over the
  array, as the released code does on each crop (:mod:`.ct_channels`).
* ``{"type": "range"}`` - min-max per case to [0, 1] (nnU-Net's ``RescaleTo01Normalization``,
  seed 002's PET); with ``"lo"`` and ``"hi"`` it is a fixed clip-and-scale to [0, 1] instead
  (e.g. PET with a fixed SUV range); ``"eps": e`` divides by ``max - min + e`` instead (seed
  002's released code: 1e-6).
* ``{"type": "scale", "factor": f, "offset": o}`` - ``(x - o) * f``, a fixed linear scaling.
* ``{"type": "auto3dseg_range", "lo", "hi"}`` - MONAI Auto3DSeg's SegResNet ``normalize_mode:
  range`` (``segmenter.py``): ``ScaleIntensityRange(a_min=lo, a_max=hi, b_min=-1, b_max=1,
  clip=False)`` then a sigmoid, i.e. ``sigmoid(2 (x - lo) / (hi - lo) - 1)``; ``lo``/``hi`` are
  the checkpoint's ``intensity_bounds`` (seed 002's SegResNet: 0.3204, 0.6318, on its CT channel).
* ``{"type": "auto3dseg_pet"}`` - MONAI Auto3DSeg's SegResNet ``extra_modalities`` mode ``pet``
  (``segmenter.py``: ``sigmoid((x - x.min()) / x.std())``) over the whole array it is given (the
  fine ROI: Auto3DSeg skips its foreground crop when extra modalities exist); ``x.std()`` is
  torch's default, the *unbiased* (n - 1) standard deviation. Seed 002's SegResNet reads its PET
  channel (``image2: pet``) so. A constant array (std 0, where torch gives NaN) maps to 0.5.
  :func:`auto3dseg_schemes` gives every channel's scheme from an Auto3DSeg config.
* ``{"type": "none"}`` - cast only (e.g. the gradient map, already 0..1).
* any scheme may carry ``"then": {scheme}``, applied to its result: a model whose own
  preprocessing precedes nnU-Net's (seed 002's released fine model: ``window01`` + min-max,
  then nnU-Net's ``CTNormalization``) is described exactly.

nnU-Net's scheme names (``ZScoreNormalization``, ``CTNormalization``, ``NoNormalization``,
``RescaleTo01Normalization``) are accepted as types too.

Example:
    >>> ct_array = np.array([-200.0, 61.2, 300.0])          # HU: clipped to [-150, 240], then z-scored
    >>> normalise(ct_array, {"type": "ct", "mean": 61.2, "std": 45.0,
    ...                      "percentile_00_5": -150.0, "percentile_99_5": 240.0}).round(3)
    array([-4.693,  0.   ,  3.973], dtype=float32)
    >>> plans = {"configurations": {"3d_fullres": {"normalization_schemes": ["CTNormalization", "ZScoreNormalization"],
    ...                                            "use_mask_for_norm": [False, False]}},
    ...          "foreground_intensity_properties_per_channel": {"0": {"mean": 61.2, "std": 45.0,
    ...              "percentile_00_5": -150.0, "percentile_99_5": 240.0}}}     # as in an nnU-Net plans.json
    >>> schemes_from_plans(plans, "3d_fullres")   # one scheme per channel
    [{'type': 'ct', 'mean': 61.2, 'std': 45.0, 'percentile_00_5': -150.0, 'percentile_99_5': 240.0}, {'type': 'zscore'}]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelError

_EPS = 1e-8
_ALIASES = {
    "zscorenormalization": "zscore", "z-score": "zscore", "zscore": "zscore",
    "ctnormalization": "ct", "ct": "ct",
    "nonormalization": "none", "none": "none",
    "rescaleto01normalization": "range", "range": "range",
    "window": "window", "window01": "window01", "scale": "scale", "auto3dseg_range": "auto3dseg_range",
    "auto3dseg_pet": "auto3dseg_pet",
}
#: Auto3DSeg's ``intensity_bounds`` when its config gives none (``segmenter.py``'s own fallback).
AUTO3DSEG_DEFAULT_BOUNDS = (-250.0, 250.0)
_CT_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")


def scheme_type(scheme: dict) -> str:
    """The canonical type of a scheme (``zscore``, ``ct``, ``window``, ``range``, ``scale``, ``none``)."""
    if not isinstance(scheme, dict) or "type" not in scheme:
        raise ModelError(f"normalisation scheme {scheme!r} has no \"type\"", None,
                         "give e.g. {\"type\": \"zscore\"} in the model card")
    kind = _ALIASES.get(str(scheme["type"]).strip().lower())
    if kind is None:
        raise ModelError(f"unknown normalisation type {scheme['type']!r}", None,
                         f"use one of {sorted(set(_ALIASES.values()))}")
    return kind


def _need(scheme: dict, keys: tuple[str, ...]) -> list[float]:
    missing = [k for k in keys if k not in scheme]
    if missing:
        raise ModelError(f"normalisation {scheme.get('type')!r} lacks {', '.join(missing)}", None,
                         "add them to the model card (for nnU-Net models: from plans.json)")
    return [float(scheme[k]) for k in keys]


def normalise(array: np.ndarray, scheme: dict[str, Any], mask: np.ndarray | None = None) -> np.ndarray:
    """Apply ``scheme`` (and its ``then`` chain) to ``array``; a new float32 array (the input is not changed)."""
    out = _normalise_one(array, scheme, mask)
    then = scheme.get("then") if isinstance(scheme, dict) else None
    return out if not then else normalise(out, then, mask)


def _normalise_one(array: np.ndarray, scheme: dict[str, Any], mask: np.ndarray | None = None) -> np.ndarray:
    kind = scheme_type(scheme)
    image = np.array(array, dtype=np.float32, copy=True)
    if kind == "none":
        return image
    if kind == "zscore":
        if scheme.get("nonzero"):  # MONAI NormalizeIntensity(nonzero=True): statistics over x != 0, zeros stay 0
            inside = image != 0
            out = np.zeros_like(image)
            if inside.any():
                out[inside] = (image[inside] - image[inside].mean()) / max(float(image[inside].std()), _EPS)
            return out
        if scheme.get("use_mask") and mask is not None:
            inside = np.asarray(mask, dtype=bool)
            mean, std = image[inside].mean(), image[inside].std()
            out = np.zeros_like(image)
            out[inside] = (image[inside] - mean) / max(std, _EPS)
            return out
        mean, std = image.mean(), image.std()
        image -= mean
        image /= max(std, _EPS)
        return image
    if kind == "ct":
        mean, std, lo, hi = _need(scheme, _CT_KEYS)
        np.clip(image, lo, hi, out=image)
        image -= mean
        image /= max(std, _EPS)
        return image
    if kind == "window":
        lo, hi = _need(scheme, ("lo", "hi"))
        if not hi > lo:
            raise ModelError(f"window normalisation needs hi > lo, got [{lo}, {hi}]", None, "fix the model card")
        np.clip(image, lo, hi, out=image)
        return (2.0 * (image - lo) / (hi - lo) - 1.0).astype(np.float32)
    if kind == "window01":
        from .ct_channels import minmax_released, window_ct_01  # one implementation of the released formulas

        lo, hi = _need(scheme, ("lo", "hi"))
        if not hi > lo:
            raise ModelError(f"window01 normalisation needs hi > lo, got [{lo}, {hi}]", None, "fix the model card")
        image = window_ct_01(image, lo, hi)
        return minmax_released(image) if scheme.get("minmax") else image
    if kind == "range":
        if "lo" in scheme or "hi" in scheme:
            lo, hi = _need(scheme, ("lo", "hi"))
            if not hi > lo:
                raise ModelError(f"range normalisation needs hi > lo, got [{lo}, {hi}]", None, "fix the model card")
            np.clip(image, lo, hi, out=image)
            return ((image - lo) / (hi - lo)).astype(np.float32)
        if "eps" in scheme:
            eps = float(scheme["eps"])
            return ((image - image.min()) / np.float32(float(image.max()) - float(image.min()) + eps)).astype(np.float32)
        image -= image.min()
        image /= np.clip(image.max(), a_min=_EPS, a_max=None)
        return image
    if kind == "auto3dseg_range":
        lo, hi = _need(scheme, ("lo", "hi"))
        if not hi > lo:
            raise ModelError(f"auto3dseg_range needs hi > lo, got [{lo}, {hi}]", None, "fix the model card")
        z = (image - np.float32(lo)) / np.float32(hi - lo) * np.float32(2.0) - np.float32(1.0)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    if kind == "auto3dseg_pet":
        x = image.astype(np.float64)
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0     # torch's Tensor.std(): unbiased
        z = (x - x.min()) / std if std > 0 else np.zeros_like(x)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    # scale
    factor = float(scheme.get("factor", 1.0))
    offset = float(scheme.get("offset", 0.0))
    return ((image - offset) * factor).astype(np.float32)


def auto3dseg_schemes(hyper_parameters: dict, n_channels: int) -> list[dict]:
    """One scheme per input channel from an Auto3DSeg SegResNet config (its ``hyper_parameters.yaml``, decoded).

    As Auto3DSeg's ``segmenter.py`` stacks them: the ``image`` key's ``normalize_mode`` for the first
    ``n_channels - len(extra_modalities)`` channels, then one channel per ``extra_modalities``
    entry with its own mode (``range``/``ct`` -> ``auto3dseg_range`` with ``intensity_bounds``,
    ``pet`` -> ``auto3dseg_pet``, ``none``). Seed 002's SegResNet: CT ``range`` 0.3204/0.6318, PET ``pet``.

    Example:
        >>> auto3dseg_schemes({"normalize_mode": "range", "intensity_bounds": [0.32, 0.63],
        ...                    "extra_modalities": {"image2": "pet"}}, 2)
        [{'type': 'auto3dseg_range', 'lo': 0.32, 'hi': 0.63}, {'type': 'auto3dseg_pet'}]
    """
    extra = hyper_parameters.get("extra_modalities") or {}
    if not isinstance(extra, dict):
        raise ModelError("Auto3DSeg extra_modalities is not a mapping", None, "give the config the checkpoint was trained with")
    if n_channels < len(extra) + 1:
        raise ModelError(f"{n_channels} input(s) named, but the Auto3DSeg config has an image and {len(extra)} extra "
                         "modalities", None, "name one input per channel the checkpoint was trained on")

    def one(mode: Any) -> dict:
        mode = str(mode).strip().lower()
        if mode in ("range", "ct"):
            bounds = hyper_parameters.get("intensity_bounds") or AUTO3DSEG_DEFAULT_BOUNDS
            lo, hi = (float(v) for v in bounds)
            return {"type": "auto3dseg_range", "lo": lo, "hi": hi}
        if mode == "pet":
            return {"type": "auto3dseg_pet"}
        if mode == "none":
            return {"type": "none"}
        raise ModelError(f"Auto3DSeg normalize_mode {mode!r} is not supported", None,
                         "use a checkpoint trained with normalize_mode range, ct, pet or none, or write model.json by hand")

    image_mode = hyper_parameters.get("normalize_mode", "meanstd")
    return [one(image_mode) for _ in range(n_channels - len(extra))] + [one(m) for m in extra.values()]


def schemes_from_plans(plans: dict, configuration: str = "3d_fullres") -> list[dict]:
    """One scheme per input channel from an nnU-Net v2 ``plans.json`` (decoded).

    Reads ``configurations[configuration]["normalization_schemes"]`` and
    ``["use_mask_for_norm"]`` plus ``foreground_intensity_properties_per_channel`` (for CT).
    """
    try:
        cfg = plans["configurations"][configuration]
        names = cfg["normalization_schemes"]
        use_mask = cfg.get("use_mask_for_norm", [False] * len(names))
        props = plans.get("foreground_intensity_properties_per_channel", {})
    except (KeyError, TypeError):
        raise ModelError(f"plans hold no configuration {configuration!r} with normalization_schemes", None,
                         "give the plans.json of an nnU-Net v2 results folder") from None
    schemes = []
    for channel, name in enumerate(names):
        scheme: dict[str, Any] = {"type": name}
        kind = scheme_type(scheme)
        if kind == "ct":
            p = props.get(str(channel))
            if p is None:
                raise ModelError(f"plans lack foreground intensity properties of channel {channel}", None,
                                 "give the complete plans.json the model was trained with")
            scheme.update({k: float(p[k]) for k in _CT_KEYS})
        if kind == "zscore" and bool(use_mask[channel]):
            scheme["use_mask"] = True
        scheme["type"] = kind
        schemes.append(scheme)
    return schemes
