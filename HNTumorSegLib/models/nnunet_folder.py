"""nnU-Net v2 results folders, used as they are.

A results folder is ``<Trainer>__<Plans>__<configuration>/`` holding ``plans.json``,
``dataset.json`` and ``fold_<k>/checkpoint_final.pth``. Which checkpoint runs is a choice
(:class:`~HNTumorSegLib.vocab.Checkpoint`, issue 28): ``segment --checkpoint``, else an ensemble
card's ``"checkpoint"``, else the folder's declaration (``hntumorseg.json`` ``"checkpoint"``),
else :data:`DEFAULT_CHECKPOINT` (``checkpoint_final``, ``nnUNetv2_predict``'s default). A chosen
checkpoint must be there (a fold folder lacking it is one line naming the folder and the files it
has); with no choice at all, ``checkpoint_best.pth`` stands in for a missing final one (training
stopped early). Seed 002's released code loads ``checkpoint_best.pth`` for every stage, so its
ensemble card says so. The trainer and the
configuration are read from the checkpoint (``trainer_name``, ``init_args``), as
nnUNetPredictor does, with the folder name as fallback. The network is built:

- for ``STUNetTrainer`` / ``STUNetTrainer_{small,base,large,huge}`` (and ``_ft``): by our
  STU-Net (:mod:`HNTumorSegLib.networks.stunet`), strides taken from the plans exactly as
  the official trainer takes them (nnunetv2 does not know these trainers);
- for trainers nnunetv2 ships (nnUNetTrainer and its variants): by that trainer's own
  ``build_network_architecture``;
- for other trainers: by nnunetv2's default builder from the plans (most custom trainers
  only change training); the strict load then tells whether that guess was right.

Checkpoints load with ``torch.load(weights_only=True)`` (:mod:`.safe_load`).

Example (command line; loading needs trained checkpoints a docstring cannot build -
Testing/test_segment_cli_nnunet.py trains a tiny folder and runs this, and
Testing/test_models_nnunet_folder.py loads an STU-Net folder with
``load_nnunet_folder(folder, folds=[0])``, an ``NnUNetFolderModel`` whose
``configuration_manager.patch_size`` is the plans' patch)::

    $ hntumorseg segment --model Dataset104_X/STUNetTrainer_small__nnUNetPlans__3d_fullres \\
          --input CT=ct.nii.gz --input PET=pet.nii.gz --folds 0 --device cpu --output labels.nii.gz

What the loader reads from the folder's name and its ``fold_*`` subfolders:
    >>> from pathlib import Path
    >>> folder = Path("Dataset104_X/STUNetTrainer_small__nnUNetPlans__3d_fullres")
    >>> split_folder_name(folder), stunet_size("STUNetTrainer_small_ft")
    (('STUNetTrainer_small', 'nnUNetPlans', '3d_fullres'), 'small')
    >>> for fold in ("fold_1", "fold_0", "fold_all"):
    ...     (folder / fold).mkdir(parents=True)
    >>> available_folds(folder), is_nnunet_folder(folder)        # no plans.json / dataset.json yet
    ([0, 1, 'all'], False)

Which checkpoint file a fold folder gives (none chosen: final, else best; chosen: exactly it):
    >>> _ = (folder / "fold_0" / "checkpoint_best.pth").write_bytes(b"")
    >>> find_checkpoint(folder / "fold_0").name, find_checkpoint(folder / "fold_0", "best").name
    ('checkpoint_best.pth', 'checkpoint_best.pth')
    >>> find_checkpoint(folder / "fold_0", Checkpoint.FINAL)
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.ModelError: Dataset104_X/STUNetTrainer_small__nnUNetPlans__3d_fullres/fold_0: has no checkpoint_final.pth (it holds checkpoint_best.pth) - choose --checkpoint checkpoint_best, copy the checkpoint into the fold folder, or choose other --folds
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..fileio import read_json
from ..folds import FoldId, FoldsLike, parse_folds
from ..vocab import Checkpoint
from .card import InputSpec, ModelCard
from .safe_load import load_checkpoint
from .types import NnUNetFolderModel, move_networks
from .weights import load_strict

if TYPE_CHECKING:   # nnunetv2 is imported when a folder is loaded (the type checker does not follow it)
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
    from torch.nn import Module

#: The checkpoint a fold runs when nothing chooses one (``nnUNetv2_predict``'s default; README's per-seed table).
DEFAULT_CHECKPOINT = Checkpoint.FINAL
#: With no choice made: the default, then this stand-in (a fold whose training stopped early).
CHECKPOINT_NAMES = (f"{DEFAULT_CHECKPOINT.value}.pth", f"{Checkpoint.BEST.value}.pth")
#: nnU-Net normalisation scheme -> our card normalisation type (information for the card;
#: nnU-Net folders are preprocessed by nnU-Net's own preprocessor).
_NORM_TYPES = {"CTNormalization": "ct", "ZScoreNormalization": "zscore", "NoNormalization": "none",
               "RescaleTo01Normalization": "range", "RGBTo01Normalization": "range"}


def is_nnunet_folder(folder: Path) -> bool:
    """True when ``folder`` holds plans.json and dataset.json (a results folder)."""
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file()


def available_folds(folder: Path) -> list[FoldId]:
    """The ``fold_*`` subfolders present, numbers sorted first, then ``all``."""
    numbered: list[int] = []
    named: list[str] = []
    for child in folder.glob("fold_*"):
        if not child.is_dir():
            continue
        tail = child.name[len("fold_"):]
        if tail.isdigit():
            numbered.append(int(tail))
        elif tail == "all":
            named.append("all")
    return [*sorted(numbered), *named]


def find_checkpoint(fold_dir: Path, checkpoint: Checkpoint | str | None = None) -> Path:
    """The checkpoint file of one fold folder: exactly ``<checkpoint>.pth`` when one is chosen,
    else ``checkpoint_final.pth``, else ``checkpoint_best.pth`` (module docstring)."""
    chosen = Checkpoint.parse_optional(checkpoint, "--checkpoint")
    names = (f"{chosen.value}.pth",) if chosen is not None else CHECKPOINT_NAMES
    for name in names:
        if (fold_dir / name).is_file():
            return fold_dir / name
    has = sorted(p.name for p in fold_dir.iterdir()) if fold_dir.is_dir() else []
    holds = f"it holds {', '.join(has[:8])}{' ...' if len(has) > 8 else ''}" if has else "it is empty"
    others = [c.value for c in Checkpoint if f"{c.value}.pth" in has]
    fix = (f"choose --checkpoint {others[0]}, copy the checkpoint into the fold folder, or choose other --folds"
           if others else "finish training this fold, copy its checkpoint, or choose other --folds")
    raise ModelError(f"has no {' or '.join(names)} ({holds})", fold_dir, fix)


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, "JSON file", "restore the file from the original results folder", error=ModelError)
    if not isinstance(data, dict):
        raise ModelError("is not a JSON object", path, "restore the file from the original results folder")
    return data


def split_folder_name(folder: Path) -> tuple[str | None, str | None, str | None]:
    """``Trainer__Plans__configuration`` -> its three parts (None where the name has another form)."""
    parts = folder.name.split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, None, None)


def build_nnunet_network(trainer_name: str, plans_manager: PlansManager,
                         configuration_manager: ConfigurationManager, num_input_channels: int,
                         num_output_channels: int, deep_supervision: bool = False) -> Module:
    """The network ``trainer_name`` trains, for inference (see the module docstring)."""
    from ..networks.stunet import build_stunet

    size = stunet_size(trainer_name)
    if size is not None:
        return build_stunet(size, num_input_channels, num_output_channels,
                            pool_op_kernel_sizes=configuration_manager.pool_op_kernel_sizes,
                            deep_supervision=deep_supervision)
    trainer_class = _nnunet_trainer_class(trainer_name)
    if trainer_class is not None:
        sig = inspect.signature(trainer_class.build_network_architecture)
        if "plans_manager" in sig.parameters:
            return trainer_class.build_network_architecture(plans_manager, configuration_manager,
                                                            num_input_channels, num_output_channels,
                                                            enable_deep_supervision=deep_supervision)
    from ..networks.nnunet import build_from_arch

    return build_from_arch(configuration_manager.network_arch_class_name,
                           configuration_manager.network_arch_init_kwargs, num_input_channels,
                           num_output_channels, configuration_manager.network_arch_init_kwargs_req_import,
                           deep_supervision=deep_supervision)


def stunet_size(trainer_name: str) -> str | None:
    """STU-Net size of an official STU-Net trainer name (longest matching prefix), else None."""
    from ..networks.stunet import STUNET_TRAINERS

    best = None
    for name, size in STUNET_TRAINERS.items():
        if trainer_name == name or trainer_name.startswith(name + "_"):
            if best is None or len(name) > len(best[0]):
                best = (name, size)
    return best[1] if best else None


# nnunetv2 2.8 trainers that override build_network_architecture; every other shipped
# nnUNetTrainer* builds exactly the plans' default network (get_network_from_plans).
_OWN_NETWORK_TRAINERS = re.compile(r"BN|Primus")


def _nnunet_trainer_class(trainer_name: str):
    # every trainer nnunetv2 ships is named nnUNetTrainer*; searching imports all of them
    # (tens of seconds), so other names go straight to the plans' default network. Importing
    # even the base trainer module costs ~4 s, so trainers known to build the default
    # network skip it too; the strict weight load afterwards catches any mismatch.
    if not re.fullmatch(r"nnUNetTrainer[A-Za-z0-9_]*", trainer_name or ""):
        return None
    if not _OWN_NETWORK_TRAINERS.search(trainer_name):
        return None
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return recursive_find_trainer_class_by_name(trainer_name)
    except Exception:  # not shipped with nnunetv2: fall back to the plans' default network
        return None


def load_nnunet_folder(folder: str | Path, folds: FoldsLike = None, device: str | None = "cpu",
                       checkpoint: Checkpoint | str | None = None) -> NnUNetFolderModel:
    """Load an nnU-Net v2 results folder; returns an :class:`~.types.NnUNetFolderModel`.

    ``folds``: a :class:`~HNTumorSegLib.folds.Folds` or what ``parse_folds`` reads; a folder
    holding only ``fold_all`` loads with the default (every fold) and with ``"fold_all"``.
    ``checkpoint``: the choice (module docstring); ``None`` takes the folder's declared one, if any.
    """
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(folder)
    plans = _read_json(folder / "plans.json")
    dataset_json = _read_json(folder / "dataset.json")
    chosen = parse_folds(folds).resolve(available_folds(folder), folder)
    from .declaration import declared_checkpoint

    checkpoint = Checkpoint.parse_optional(checkpoint, "--checkpoint") or declared_checkpoint(folder)
    checkpoints = [find_checkpoint(folder / f"fold_{f}", checkpoint) for f in chosen]
    first = load_checkpoint(checkpoints[0])
    if not isinstance(first, dict) or "network_weights" not in first:
        raise ModelError("is not an nnU-Net checkpoint (no 'network_weights')", checkpoints[0],
                         "use the checkpoint_final.pth written by nnU-Net training")
    name_trainer, _, name_config = split_folder_name(folder)
    trainer_name = first.get("trainer_name") or name_trainer
    init_args = first["init_args"] if isinstance(first.get("init_args"), dict) else {}
    configuration = init_args.get("configuration") or name_config
    if not trainer_name or not configuration:
        raise ModelError("cannot tell the trainer and configuration (not in the checkpoint nor the folder name)",
                         folder, "keep nnU-Net's folder name Trainer__Plans__configuration")
    try:
        plans_manager = PlansManager(copy.deepcopy(plans))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old-plans conversion warning: handled, nothing for the user to do
            cm = plans_manager.get_configuration(configuration)
        label_manager = plans_manager.get_label_manager(dataset_json)
        num_in = determine_num_input_channels(plans_manager, cm, dataset_json)
    except (KeyError, TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise ModelError(f"plans.json / dataset.json do not describe configuration {configuration!r} "
                         f"({type(exc).__name__}: {exc})", folder, "use the files written by nnU-Net") from None
    num_out = label_manager.num_segmentation_heads
    mirroring = first.get("inference_allowed_mirroring_axes")
    networks = []
    for fold, ckpt_path in zip(chosen, checkpoints):
        ckpt = first if ckpt_path == checkpoints[0] else load_checkpoint(ckpt_path)
        if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
            raise ModelError("is not an nnU-Net checkpoint (no 'network_weights')", ckpt_path,
                             "use the checkpoint_final.pth written by nnU-Net training")
        try:
            net = build_nnunet_network(trainer_name, plans_manager, cm, num_in, num_out)
        except (TypeError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            raise ModelError(f"cannot build the network of trainer {trainer_name} ({exc})", folder,
                             "check plans.json") from None
        from .weights import extract_state_dict

        load_strict(net, extract_state_dict(ckpt, ckpt_path), ckpt_path, what=f"{trainer_name} network")
        networks.append(net.eval())
    card = _card_for(folder, plans_manager, cm, dataset_json, label_manager, chosen, mirroring,
                     trainer_name, configuration)
    channel_names = {str(k): v for k, v in (dataset_json.get("channel_names") or dataset_json.get("modality", {})).items()}
    from .declaration import read_declaration

    declaration = read_declaration(folder, channel_names)   # seed steps (gradient map, crop): declared or inferred
    card.task = declaration.task
    card.box_margin_vox = declaration.box_margin_vox
    card.licence, card.citation = declaration.licence or card.licence, declaration.citation or card.citation
    return NnUNetFolderModel(
        card=card, networks=move_networks(networks, device), folds=list(chosen), folder=folder,
        checkpoints=checkpoints, plans=plans, plans_manager=plans_manager, configuration_manager=cm,
        configuration_name=configuration, trainer_name=trainer_name, dataset_json=dataset_json,
        label_manager=label_manager, inference_allowed_mirroring_axes=(
            tuple(int(a) for a in mirroring) if mirroring is not None else None),
        channel_names=channel_names, declaration=declaration,
    )


def _card_for(folder: Path, pm: PlansManager, cm: ConfigurationManager, dataset_json: dict[str, Any],
              label_manager: LabelManager, folds: list[FoldId],
              mirroring: list[int] | None, trainer: str, configuration: str) -> ModelCard:
    """A card describing the folder, for display and for the pipeline's bookkeeping."""
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    props = pm.foreground_intensity_properties_per_channel or {}
    inputs = []
    for i, (key, name) in enumerate(sorted(channels.items(), key=lambda kv: int(kv[0]))):
        scheme = cm.normalization_schemes[i] if i < len(cm.normalization_schemes) else "ZScoreNormalization"
        norm: dict = {"type": _NORM_TYPES.get(scheme, "none"), "nnunet": scheme}
        if norm["type"] == "ct":
            p = props.get(str(key), props.get(int(key), {})) if isinstance(props, dict) else {}
            norm.update({k: float(p[k]) for k in ("mean", "std", "percentile_00_5", "percentile_99_5") if k in p})
        inputs.append(InputSpec(str(name), norm))
    tb = list(pm.transpose_backward)
    spacing_zyx = [float(cm.spacing[t]) for t in tb] if len(cm.spacing) == 3 else None
    patch_zyx = [int(cm.patch_size[t]) for t in tb] if len(cm.patch_size) == 3 else None
    labels_raw = dataset_json.get("labels", {})
    if label_manager.has_regions:
        labels = {name: i for i, name in enumerate(labels_raw)}
        output = "sigmoid_regions"
    else:
        labels = {name: int(v) for name, v in labels_raw.items() if not isinstance(v, (list, tuple))}
        output = "softmax"
    return ModelCard(
        id=folder.name, title=f"nnU-Net {trainer} / {pm.plans_name} / {configuration} ({pm.dataset_name})",
        inputs=inputs, architecture={"name": "STUNet" if stunet_size(trainer) else
                                     cm.network_arch_class_name.split(".")[-1], "kwargs": {}},
        labels=labels, folds=list(folds), weights={str(f): f"fold_{f}" for f in folds}, format="nnunet",
        spacing_xyz=spacing_zyx[::-1] if spacing_zyx else None, patch_size_zyx=patch_zyx, output=output,
        tta_axes=[int(a) for a in mirroring] if mirroring is not None else [0, 1, 2],
        licence=str(dataset_json.get("licence", "")), source=str(folder),
        citation=str(dataset_json.get("reference", "")),
        extra={"trainer": trainer, "plans": pm.plans_name, "configuration": configuration}, path=None,
    )
