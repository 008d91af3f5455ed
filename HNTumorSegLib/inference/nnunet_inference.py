"""Predict a case with an nnU-Net v2 results folder exactly as nnUNetPredictor does, only faster.

nnU-Net's own code does everything around the network, so the numbers are nnU-Net's:
reading with the plan's reader (``SimpleITKIO``), ``DefaultPreprocessor.run_case`` (transpose,
crop to non-zero, normalisation schemes incl. CT statistics from the plans, resampling to the
plan's spacing), and ``convert_predicted_logits_to_segmentation_with_correct_shape`` /
``export_prediction_from_logits`` (resampling back, softmax/sigmoid, argmax, un-cropping,
writing). In between runs our :class:`~.tiled.TiledPredictor` with nnU-Net's tiling, Gaussian
and fold averaging (in logit space, as nnU-Net).

The folder itself is loaded by the one nnU-Net loader,
:func:`HNTumorSegLib.models.nnunet_folder.load_nnunet_folder` (a ``LoadedModel``);
:func:`load_nnunet_model` is that loader plus :func:`as_nnunet_model`, the narrow
:class:`NnUNetModel` view this module needs.

What is cut compared with ``nnUNetPredictor.predict_from_files`` on a CPU (output unchanged):
no worker processes for preprocessing and export (spawning them costs seconds), float32 instead
of float16 accumulators (half-precision arithmetic is emulated on most CPUs), torch threads = the
cores available instead of 8, every fold a ready module (no ``load_state_dict`` per fold), no
producer thread and queue per tile.

Example:
    >>> model = load_nnunet_model("Dataset987_X/nnUNetTrainer__nnUNetPlans__3d_fullres", folds=(0, 1))
    >>> res = predict_nnunet_case(model, ["case_0000.nii.gz", "case_0001.nii.gz"], device="cpu",
    ...                           output_file="pred.nii.gz")
    >>> res.segmentation.shape   # (z, y, x) on the grid of the first input file
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, ModelError
from .tiled import TiledPredictor, TilingOptions


@dataclass
class NnUNetModel:
    """What this module needs from a loaded nnU-Net folder (``models.types.LoadedModel`` has the same)."""

    networks: list
    plans_manager: Any
    configuration_manager: Any
    dataset_json: dict
    mirror_axes: tuple[int, ...] | None = None
    folder: Path | None = None
    folds: tuple = ()


@dataclass
class NnUNetCaseResult:
    """Segmentation (z, y, x, uint8) on the first input's grid; probabilities (K, z, y, x) on request."""

    segmentation: np.ndarray
    probabilities: np.ndarray | None
    properties: dict
    timings: dict = field(default_factory=dict)


def load_nnunet_model(folder: str | Path, folds: Any = None, device: Any = "cpu") -> NnUNetModel:
    """An nnU-Net v2 results folder (``<Trainer>__<Plans>__<config>``, or a catalogue id / a folder
    holding one) as an :class:`NnUNetModel` (``models.load_model`` + :func:`as_nnunet_model`).

    ``folds``: a ``Folds`` or any :func:`HNTumorSegLib.folds.parse_folds` form.
    """
    from ..models.loader import load_model

    return as_nnunet_model(load_model(Path(folder), folds=folds, device=device))


def as_nnunet_model(loaded: Any) -> NnUNetModel:
    """Adapt a LoadedModel (or anything with the same attributes) to :class:`NnUNetModel`."""
    if isinstance(loaded, NnUNetModel):
        return loaded
    for attr in ("networks", "plans_manager", "configuration_manager", "dataset_json"):
        if getattr(loaded, attr, None) is None:
            raise ModelError(f"the loaded model has no '{attr}': it is not an nnU-Net results folder",
                             path=getattr(loaded, "folder", None), fix="give an nnU-Net v2 results folder")
    axes = None
    for name in ("mirror_axes", "allowed_mirroring_axes", "inference_allowed_mirroring_axes", "tta_axes"):
        if getattr(loaded, name, None) is not None:
            axes = tuple(int(a) for a in getattr(loaded, name))
            break
    return NnUNetModel(list(loaded.networks), loaded.plans_manager, loaded.configuration_manager,
                       loaded.dataset_json, axes, getattr(loaded, "folder", None) or getattr(loaded, "path", None),
                       tuple(getattr(loaded, "folds", ()) or ()))


def input_files_for(model: NnUNetModel, inputs: Sequence[str | Path] | dict) -> list[str]:
    """Order input files as the model's ``channel_names`` (a dict name -> path, or a list already in order)."""
    names = [model.dataset_json["channel_names"][k]
             for k in sorted(model.dataset_json["channel_names"], key=int)]
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        unknown = [n for n in inputs if n not in names]
        if missing or unknown:
            raise InputError(f"inputs {sorted(inputs)} do not match the model's channels {names}",
                             fix=f"give --input {' --input '.join(n + '=PATH' for n in names)}")
        files = [inputs[n] for n in names]
    else:
        files = list(inputs)
        if len(files) != len(names):
            raise InputError(f"{len(files)} input file(s) given, the model needs {len(names)} ({', '.join(names)})")
    for f in files:
        if not Path(f).is_file():
            raise InputError("input image not found", path=f, fix="check the path")
    return [str(f) for f in files]


def predict_nnunet_case(model: Any, inputs: Sequence[str | Path] | dict, *, device: Any = "auto",
                        tta: bool = False, step: float = 0.5, use_amp: bool = True,
                        return_probabilities: bool = False, output_file: str | Path | None = None,
                        progress=None, num_threads: int | None = None) -> NnUNetCaseResult:
    """One case through nnU-Net's preprocessing, our sliding window, and nnU-Net's export.

    ``output_file`` (e.g. ``pred.nii.gz``) is written with nnU-Net's own writer, as
    ``nnUNetv2_predict`` would write it. ``tta`` uses the folder's allowed mirroring axes.
    """
    import torch

    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    from .devices import available_cpu_cores

    model = as_nnunet_model(model)
    files = input_files_for(model, inputs)
    pm, cm = model.plans_manager, model.configuration_manager
    if len(cm.patch_size) != 3:
        raise ModelError("2D nnU-Net configurations are not supported", path=model.folder,
                         fix="use a 3d_fullres (or 3d_lowres) model")
    threads = num_threads or min(torch.get_num_threads(), available_cpu_cores())   # for nnU-Net's export
    timings = {}
    t = time.perf_counter()
    preprocessor = cm.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case(files, None, pm, cm, model.dataset_json)
    timings["preprocess_s"] = time.perf_counter() - t

    label_manager = pm.get_label_manager(model.dataset_json)
    t = time.perf_counter()
    options = TilingOptions(tta=tta and model.mirror_axes is not None, step=step, use_amp=use_amp,
                            mirror_axes=model.mirror_axes or (), num_threads=num_threads)
    predictor = TiledPredictor(model.networks, cm.patch_size, label_manager.num_segmentation_heads, device=device,
                               options=options, progress=progress)
    logits = predictor.predict_logits(data)
    timings["network_s"] = time.perf_counter() - t

    t = time.perf_counter()
    out = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, pm, cm, label_manager, properties, return_probabilities=return_probabilities,
        num_threads_torch=threads)
    seg, prob = (out if return_probabilities else (out, None))
    if output_file is not None:
        rw = pm.image_reader_writer_class()
        rw.write_seg(seg, str(output_file), properties)
    timings["export_s"] = time.perf_counter() - t
    return NnUNetCaseResult(np.asarray(seg), prob, properties, timings)
