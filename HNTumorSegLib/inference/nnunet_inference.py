"""Predict a case with an nnU-Net v2 results folder exactly as nnUNetPredictor does, only faster.

nnU-Net's own code does everything around the network, so the numbers are nnU-Net's:
reading with the plan's reader (``SimpleITKIO``), ``DefaultPreprocessor.run_case`` (transpose,
crop to non-zero, normalisation schemes incl. CT statistics from the plans, resampling to the
plan's spacing), and ``convert_predicted_logits_to_segmentation_with_correct_shape`` /
``export_prediction_from_logits`` (resampling back, softmax/sigmoid, argmax, un-cropping,
writing). In between runs our :class:`~.tiled.TiledPredictor` with nnU-Net's tiling, Gaussian
and fold averaging (in logit space, as nnU-Net).

The folder itself is loaded by the one nnU-Net loader,
:func:`HNTumorSegLib.models.nnunet_folder.load_nnunet_folder` (an ``NnUNetFolderModel``);
:func:`load_nnunet_model` is that loader plus :func:`as_nnunet_model`, the narrow
:class:`NnUNetModel` view this module needs.

What is cut compared with ``nnUNetPredictor.predict_from_files`` on a CPU (output unchanged):
no worker processes for preprocessing and export (spawning them costs seconds), float32 instead
of float16 accumulators (half-precision arithmetic is emulated on most CPUs), torch threads = the
cores available instead of 8, every fold a ready module (no ``load_state_dict`` per fold), no
producer thread and queue per tile.

Box-restricted runs (``restrict_zyx=``, ``segment --restrict-to-boxes``): nnU-Net still
preprocesses the whole image (its z-score statistics, its crop), then the boxes are mapped onto
the preprocessed grid (:func:`region_on_preprocessed_grid`) and only the sliding window's tiles
touching them run (``region_tiling="grid"``: the same tiles as the whole-image run, so inside the
boxes the logits - and the labels - are nnUNetPredictor's exactly); elsewhere the logits say
background (:func:`~.tiled.background_logits`) and nnU-Net's export writes 0 there.

Example (command line; it needs a trained nnU-Net v2 results folder, which a docstring cannot build -
Testing/test_segment_cli_nnunet.py trains a tiny one and runs this, then compares it with
``predict_nnunet_case(load_nnunet_model(FOLDER, folds=(0,)), [ct, pet], device="cpu", tta=True)``)::

    $ hntumorseg segment --model Dataset987_X/nnUNetTrainer__nnUNetPlans__3d_fullres \\
          --input CT=case_0000.nii.gz --input PET=case_0001.nii.gz --folds 0 --device cpu \\
          --output pred.nii.gz

In Python, ``load_nnunet_model(folder, folds=(0, 1))`` gives the model and
``predict_nnunet_case(model, ["case_0000.nii.gz", "case_0001.nii.gz"], device="cpu",
output_file="pred.nii.gz")`` its result; ``res.segmentation`` is (z, y, x) on the grid of the first
input file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputError, ModelError
from ..folds import FoldId, FoldsLike
from ..image import Image
from ..vocab import NetworkOutput
from .tiled import ProgressFn, TiledPredictor, TilingOptions
from .tiling import Region, Slices3, slices3

if TYPE_CHECKING:
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
    from torch import device as TorchDevice
    from torch.nn import Module

    from ..models.types import LoadedModel, NnUNetFolderModel


@dataclass
class NnUNetModel:
    """What this module needs from a loaded nnU-Net folder (an ``NnUNetFolderModel`` narrowed to it)."""

    networks: list[Module]
    plans_manager: PlansManager
    configuration_manager: ConfigurationManager
    dataset_json: dict[str, Any]
    mirror_axes: tuple[int, ...] | None = None
    folder: Path | None = None
    folds: tuple[FoldId, ...] = ()


@dataclass
class NnUNetCaseResult:
    """Segmentation (z, y, x, uint8) on the first input's grid; probabilities (K, z, y, x) on request."""

    segmentation: np.ndarray
    probabilities: np.ndarray | None
    properties: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    n_tiles: int = 0          # sliding-window tiles per fold (fewer for a box-restricted run)


def load_nnunet_model(folder: str | Path, folds: FoldsLike = None, device: str | None = "cpu") -> NnUNetModel:
    """An nnU-Net v2 results folder (``<Trainer>__<Plans>__<config>``, or a catalogue id / a folder
    holding one) as an :class:`NnUNetModel` (``models.load_model`` + :func:`as_nnunet_model`).

    ``folds``: a ``Folds`` or any :func:`HNTumorSegLib.folds.parse_folds` form.
    """
    from ..models.loader import load_model

    return as_nnunet_model(load_model(Path(folder), folds=folds, device=device))


def as_nnunet_model(loaded: NnUNetModel | LoadedModel) -> NnUNetModel:
    """The :class:`NnUNetModel` view of a loaded nnU-Net folder; any other model is a ModelError."""
    from ..models.types import NnUNetFolderModel

    if isinstance(loaded, NnUNetModel):
        return loaded
    if not isinstance(loaded, NnUNetFolderModel):
        raise ModelError(f"is a {loaded.kind} model, not an nnU-Net results folder", path=loaded.folder,
                         fix="give an nnU-Net v2 results folder")
    return NnUNetModel(list(loaded.networks), loaded.plans_manager, loaded.configuration_manager,
                       loaded.dataset_json, loaded.inference_allowed_mirroring_axes, loaded.folder, tuple(loaded.folds))


def input_files_for(model: NnUNetModel, inputs: Sequence[str | Path | Image] | Mapping[str, str | Path | Image]
                    ) -> list:
    """Order inputs as the model's ``channel_names`` (a dict name -> path, or a list already in order);
    a path must name a file, an :class:`~HNTumorSegLib.image.Image` is kept as it is."""
    names = [model.dataset_json["channel_names"][k]
             for k in sorted(model.dataset_json["channel_names"], key=int)]
    if isinstance(inputs, Mapping):
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
        if not isinstance(f, Image) and not Path(f).is_file():
            raise InputError("input image not found", path=f, fix="check the path")
    return [f if isinstance(f, Image) else str(f) for f in files]


def nnunet_arrays(images: Sequence[Image]) -> tuple[np.ndarray, dict[str, Any]]:
    """Images in memory as nnU-Net's ``SimpleITKIO.read_images`` returns their files: (C, z, y, x)
    float32 and its properties, so ``DefaultPreprocessor.run_case_npy`` gives what ``run_case`` gives
    on the files (voxel for voxel; tested in Testing/test_read_once.py) without reading them again.

    An image read from a file (``source`` set) keeps ITK's geometry exactly; one made in memory has
    its spacing rounded to float32, as a NIfTI file written for nnU-Net would store it.

    Example:
        >>> data, props = nnunet_arrays([Image(np.zeros((2, 3, 4), np.int16), (0.5, 0.5, 2.0))])
        >>> data.shape, data.dtype, props["spacing"]
        ((1, 2, 3, 4), dtype('float32'), [2.0, 0.5, 0.5])
    """
    first = images[0]
    shapes = {img.array.shape for img in images}
    if len(shapes) != 1:
        raise InputError(f"the model's channels differ in size ({sorted(shapes)})", None,
                         "give inputs on one grid (nnU-Net needs every channel on the first one's grid)")
    spacing = tuple(first.spacing) if first.source else tuple(float(np.float32(v)) for v in first.spacing)
    data = np.vstack([np.asarray(img.array)[None] for img in images], dtype=np.float32, casting="unsafe")
    properties = {"sitk_stuff": {"spacing": spacing, "origin": tuple(first.origin),
                                 "direction": tuple(float(v) for v in np.asarray(first.direction).flatten())},
                  "spacing": [abs(v) for v in spacing[::-1]]}
    return data, properties


def _preprocess(preprocessor, inputs: list, pm: PlansManager, cm: ConfigurationManager,
                dataset_json: dict) -> tuple[np.ndarray, dict]:
    """nnU-Net's preprocessing of one case: from the images in memory when every input is one and
    the plan reads with ``SimpleITKIO`` (one decode per input, issue 27), else from the files."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    if inputs and all(isinstance(x, Image) for x in inputs) and pm.image_reader_writer_class is SimpleITKIO:
        data, properties = nnunet_arrays(inputs)
        data, _, properties = preprocessor.run_case_npy(data, None, properties, pm, cm, dataset_json)
        return data, properties
    if any(isinstance(x, Image) for x in inputs):
        raise ModelError(f"this folder reads its inputs with {pm.image_reader_writer_class.__name__}: "
                         "give it files, not images in memory", path=None, fix="pass file paths")
    data, _, properties = preprocessor.run_case(inputs, None, pm, cm, dataset_json)
    return data, properties


def predict_nnunet_case(model: NnUNetModel | NnUNetFolderModel,
                        inputs: Sequence[str | Path | Image] | Mapping[str, str | Path | Image],
                        *, device: str | TorchDevice | None = "auto",
                        tta: bool = False, step: float = 0.5, use_amp: bool = True,
                        return_probabilities: bool = False, output_file: str | Path | None = None,
                        progress: ProgressFn | None = None, num_threads: int | None = None,
                        restrict_zyx: Sequence[Slices3] | None = None) -> NnUNetCaseResult:
    """One case through nnU-Net's preprocessing, our sliding window, and nnU-Net's export.

    ``inputs``: files, or images already read (:func:`HNTumorSegLib.image.read_image`), which
    nnU-Net's preprocessing then takes as arrays (:func:`nnunet_arrays`) instead of reading again.

    ``output_file`` (e.g. ``pred.nii.gz``) is written with nnU-Net's own writer, as
    ``nnUNetv2_predict`` would write it. ``tta`` uses the folder's allowed mirroring axes.
    ``restrict_zyx``: boxes (index slices z, y, x) on the first input file's array grid (as
    SimpleITK reads it): only the tiles touching them run (module docstring); labels outside
    them (+ one preprocessed voxel) are background. ``None``: the whole image.
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
    data, properties = _preprocess(preprocessor, files, pm, cm, model.dataset_json)
    timings["preprocess_s"] = time.perf_counter() - t

    label_manager = pm.get_label_manager(model.dataset_json)
    t = time.perf_counter()
    region = None if restrict_zyx is None else region_on_preprocessed_grid(
        restrict_zyx, properties, pm.transpose_forward, data.shape[1:])
    options = TilingOptions(tta=tta and model.mirror_axes is not None, step=step, use_amp=use_amp,
                            mirror_axes=model.mirror_axes or (), num_threads=num_threads,
                            region_tiling="grid")     # used only with a region: whole-run tiles, exact inside
    predictor = TiledPredictor(model.networks, cm.patch_size, label_manager.num_segmentation_heads, device=device,
                               options=options, progress=progress,
                               output=NetworkOutput.SIGMOID_REGIONS if label_manager.has_regions
                               else NetworkOutput.SOFTMAX)
    n_tiles = predictor.count_tiles(data.shape[1:], region)
    logits = predictor.predict_logits(data) if region is None else predictor.predict_logits(data, region=region)
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
    return NnUNetCaseResult(np.asarray(seg), prob, properties, timings, n_tiles)


def region_on_preprocessed_grid(boxes_zyx: Sequence[Slices3], properties: dict, transpose_forward: Sequence[int],
                                preprocessed_shape: Sequence[int], grow_vox: int = 1) -> Region:
    """Boxes on the first input file's array grid -> a :class:`~.tiling.Region` on nnU-Net's preprocessed grid.

    ``DefaultPreprocessor.run_case`` does, in this order: transpose (axis i of the result is axis
    ``transpose_forward[i]`` of the file's array), crop to the non-zero bounding box
    (``properties['bbox_used_for_cropping']``, ``[lo, hi)`` per transposed axis), resample
    ``properties['shape_after_cropping_and_before_resampling']`` -> ``preprocessed_shape``. The
    same steps are applied to each box. Resampling maps a preprocessed voxel ``o`` to the cropped
    continuous index ``(o + 0.5) * s - 0.5`` (``s`` = cropped / preprocessed size, skimage's and
    ``map_coordinates``' convention in nnU-Net's resampling); a box ``[a, b)`` is taken as every
    preprocessed voxel whose linear-interpolation neighbours touch it (``(a - 1, b)``), then grown
    by ``grow_vox`` voxels (conservative: the export's resampling of logits back to the image
    reads only region voxels for every image voxel inside a box), clamped. A box wholly in the
    cropped-away zero background is dropped (nnU-Net's export writes background there anyway).

    Example (nnU-Net's properties of a 40 x 100 x 100 file cropped to 40 x 80 x 80, resampled to half size):
        >>> properties = {"shape_before_cropping": (40, 100, 100),
        ...               "bbox_used_for_cropping": [[0, 40], [10, 90], [10, 90]],
        ...               "shape_after_cropping_and_before_resampling": (40, 80, 80)}
        >>> region = region_on_preprocessed_grid([(slice(10, 20), slice(30, 60), slice(30, 60))],
        ...                                      properties, (0, 1, 2), (20, 40, 40))
        >>> region.boxes, region.mask_zyx.shape
        ([(slice(3, 12, None), slice(8, 27, None), slice(8, 27, None))], (20, 40, 40))
    """
    bbox = properties["bbox_used_for_cropping"]
    before_crop = properties["shape_before_cropping"]
    cropped = properties["shape_after_cropping_and_before_resampling"]
    out_shape = tuple(int(n) for n in preprocessed_shape)
    boxes: list[Slices3] = []
    for box in boxes_zyx:
        transposed = [box[int(a)] for a in transpose_forward]
        mapped = []
        for sl, n_file, (c_lo, c_hi), n_in, n_out in zip(transposed, before_crop, bbox, cropped, out_shape):
            start, stop = sl.indices(int(n_file))[:2]
            a, b = max(start, int(c_lo)) - int(c_lo), min(stop, int(c_hi)) - int(c_lo)
            if b <= a:
                break
            scale = int(n_in) / n_out
            lo = math.floor((a - 0.5) / scale - 0.5) - grow_vox
            hi = math.ceil((b + 0.5) / scale - 0.5) + 1 + grow_vox
            mapped.append(slice(max(0, lo), min(n_out, hi)))
        if len(mapped) == 3:
            boxes.append(slices3(mapped))
    mask = np.zeros(out_shape, dtype=bool)
    for kept in boxes:
        mask[kept] = True
    return Region(mask, boxes)
