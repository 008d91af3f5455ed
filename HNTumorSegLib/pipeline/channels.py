"""The network's input channels, built from a model card's ``inputs`` list.

One implementation for inference (:mod:`.tasks`) and for training
(``hntumorseg_training.demo_model``), so a model always sees at run time exactly what it
saw while it learnt.

Each card input is either an image given by the user (``T2``, ``CT``, ``PET`` or a raw
channel name) normalised by its scheme (:func:`HNTumorSegLib.prompts.normalisation.normalise`),
or a channel *derived* from one (``derived_from``):

* ``gradient_map`` (from ``T2``): seed 003's gradient magnitude inside the lesion boxes
  (:func:`HNTumorSegLib.prompts.gradient_map.gradient_map`), already in [0, 1];
* ``ct_sq`` / ``ct_cbrt`` (from ``CT``): seed 002's powers of the windowed CT ``x``. With the
  CT scheme ``window`` (or no CT input in the card) ``x`` is in [-1, 1] (that window, else
  [-110, 190] HU: the paper's ``seed002_paper`` set) and the cube root keeps the sign; with
  any other CT scheme - ``window01`` (the released ``seed002`` set) or ``none`` (inputs the
  coarse-to-fine pipeline prepared in [0, 1]) - ``x`` is the CT's own normalised channel and
  the powers are ``x**2``, ``x**(1/3)``;
* ``pet_sq`` / ``pet_cbrt`` (from ``PET``): the same powers of the PET's normalised channel
  (the released 6-channel set); see :mod:`HNTumorSegLib.prompts.ct_channels`.

All images must already lie on one grid (the pipeline resamples them first).

Example:
    >>> from HNTumorSegLib.models.card import read_card
    >>> from HNTumorSegLib.models.catalogue import installed_path
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask
    >>> card = read_card(installed_path("demo-midrt") / "model.json")
    >>> phantom = make_midrt_case(seed=0)
    >>> t2, boxes = phantom["midRT_T2"], boxes_from_mask(phantom["preRT_mask_registered"], margin_vox=4)
    >>> x = model_channels(card, {"T2": t2}, boxes)      # (2, z, y, x) float32 for demo-midrt
    >>> x.shape, x.dtype
    ((2, 32, 96, 96), dtype('float32'))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError, ModelError
from ..image import Image
from ..prompts.boxes import LesionBox
from ..prompts.ct_channels import CT_WINDOW_HU, window_ct
from ..prompts.gradient_map import gradient_map
from ..prompts.normalisation import normalise

def derived_source(spec) -> str | None:
    """The input a card input is derived from, or None for an image the user gives."""
    return spec.derived_from or None


def user_inputs(card) -> list[str]:
    """Names of the images the user must give for this card (derived channels excluded), in card order."""
    names: list[str] = []
    for spec in card.inputs:
        src = derived_source(spec)
        name = src if src else spec.name
        if name not in names:
            names.append(name)
    return names


def needs_boxes(card) -> bool:
    """True when a channel is computed from lesion boxes (the gradient map)."""
    return any(spec.name == "gradient_map" for spec in card.inputs)


def _ct_window(card) -> tuple[float, float]:
    for spec in card.inputs:
        if spec.name == "CT" and str(spec.normalisation.get("type", "")).lower() == "window":
            return float(spec.normalisation["lo"]), float(spec.normalisation["hi"])
    return CT_WINDOW_HU


def _spec_of(card, name: str):
    return next((spec for spec in card.inputs if spec.name == name and not derived_source(spec)), None)


def _power_channel(card, name: str, base: Image) -> np.ndarray:
    """``ct_sq`` / ``ct_cbrt`` / ``pet_sq`` / ``pet_cbrt`` from the base image (module docstring)."""
    source = "CT" if name.startswith("ct_") else "PET"
    spec = _spec_of(card, source)
    kind = str(spec.normalisation.get("type", "")).lower() if spec is not None else "window"
    if kind != "window":  # window01, none (inputs prepared in [0, 1] by seed 002's pipeline), range ...
        if spec is None:
            raise ModelError(f"derived input {name!r} needs a {source} input in the card", card.path,
                             f"list {source} with its normalisation before {name}")
        x = normalise(base.array, {k: v for k, v in spec.normalisation.items() if k != "then"})
        return x * x if name.endswith("_sq") else np.power(np.clip(x, 0.0, None), 1.0 / 3.0)
    x = window_ct(base, *_ct_window(card))
    return x * x if name.endswith("_sq") else np.cbrt(x)


def model_channels(card, images: dict[str, Image], boxes: Sequence[LesionBox] | None = None) -> np.ndarray:
    """Stack the card's input channels into one float32 array ``(C, z, y, x)``.

    ``images`` maps input names to Images on one common grid; ``boxes`` are needed for the
    gradient map (an empty list gives an all-zero map, i.e. "no lesion prompted").
    """
    channels: list[np.ndarray] = []
    for spec in card.inputs:
        src = derived_source(spec)
        if src is None:
            if spec.name not in images:
                raise InputError(f"no image for the model input {spec.name!r}", None,
                                 f"give --input {spec.name}=PATH")
            channels.append(normalise(images[spec.name].array, spec.normalisation))
            continue
        if src not in images:
            raise InputError(f"no image {src!r} to derive the model input {spec.name!r} from", None,
                             f"give --input {src}=PATH")
        base = images[src]
        if spec.name == "gradient_map":
            grad = gradient_map(base, list(boxes or []))
            channels.append(normalise(grad.array, spec.normalisation))
        elif spec.name in ("ct_sq", "ct_cbrt", "pet_sq", "pet_cbrt"):
            channels.append(normalise(_power_channel(card, spec.name, base), spec.normalisation))
        else:
            raise ModelError(f"unknown derived input {spec.name!r}", card.path,
                             "use gradient_map, ct_sq, ct_cbrt, pet_sq or pet_cbrt, or give it as an image")
    shapes = {c.shape for c in channels}
    if len(shapes) != 1:
        raise InputError(f"input channels lie on different grids {sorted(shapes)}", None,
                         "resample every input onto the first one")
    return np.stack(channels).astype(np.float32, copy=False)
