"""``load_model``: one entry point for every model form HNTumorSeg runs.

Accepted, in this order:

1. a folder holding ``model.json`` (our model card, DESIGN.md "Models"): weights listed in
   the card are checked against their sha256, the architecture is built from
   ``card.architecture`` and the weights are loaded strictly. Cards whose architecture is
   ``SegResNetDS`` are MONAI SegResNet checkpoints (a bare state_dict, or a dict with
   ``state_dict`` / ``model``) and get ``kind == "segresnet"``;
2. an nnU-Net v2 results folder (``plans.json`` + ``dataset.json`` + ``fold_k/``), see
   :mod:`.nnunet_folder`; a folder holding exactly one such results folder also works;
3. a catalogue id (``HNTumorSegLib/resources/models.json``): the bundled demo models, or a model
   installed by ``hntumorseg models fetch ID``.

Every checkpoint is read with ``torch.load(weights_only=True)``; every user-fixable
problem (missing folder, no checkpoint, absent fold, corrupt file, checksum or key
mismatch) is a :class:`ModelError`: one line, exit code 2.

Example:
    >>> model = load_model("demo-midrt")
    >>> model.kind, len(model.networks), model.card.patch_size
    ('card', 1, [16, 96, 96])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeviceError, ModelError
from .card import CARD_NAME, ModelCard, read_card


@dataclass
class LoadedModel:
    """Networks ready for inference (eval mode, one per fold) and what describes them.

    For nnU-Net folders the nnunetv2 objects needed to run nnU-Net's own preprocessing
    and export are kept: ``plans_manager``, ``configuration_manager``, ``dataset_json``,
    ``label_manager``, ``inference_allowed_mirroring_axes`` (from the checkpoint) and
    ``channel_names`` (dataset.json, ``{"0": "CT", "1": "PET"}``).
    """

    card: ModelCard
    networks: list
    kind: str  # "card", "nnunet" or "segresnet"
    folds: list
    folder: Path
    checkpoints: list[Path] = field(default_factory=list)
    plans: dict | None = None
    plans_manager: Any = None
    configuration_manager: Any = None
    configuration_name: str | None = None
    trainer_name: str | None = None
    dataset_json: dict | None = None
    label_manager: Any = None
    inference_allowed_mirroring_axes: tuple[int, ...] | None = None
    channel_names: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The model folder (alias of ``folder``)."""
        return self.folder

    @property
    def input_names(self) -> list[str]:
        """Input names in channel order (nnU-Net: the dataset.json channel names)."""
        if self.channel_names:
            return [self.channel_names[k] for k in sorted(self.channel_names, key=int)]
        return self.card.input_names

    @property
    def patch_size(self) -> list[int] | None:
        """Patch size in the network's array order (nnU-Net: the plans' own, transposed order)."""
        if self.configuration_manager is not None:
            return [int(p) for p in self.configuration_manager.patch_size]
        return self.card.patch_size

    @property
    def num_classes(self) -> int:
        """Output channels of each network."""
        if self.label_manager is not None:
            return int(self.label_manager.num_segmentation_heads)
        return self.card.num_output_channels


def parse_folds(folds: Any) -> list[int | str] | None:
    """``None``/``"all"`` -> None (every fold present); ``"0,1"``, ``3``, ``[0, 1]`` -> list.

    ``"all"`` means every trained fold; nnU-Net's separate ``fold_all`` model is asked for
    with ``"fold_all"`` (or is used when it is the only one).
    """
    if folds is None or (isinstance(folds, str) and folds.strip().lower() in ("", "all")):
        return None
    items = folds.split(",") if isinstance(folds, str) else (list(folds) if isinstance(folds, (list, tuple)) else [folds])
    out: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text == "fold_all":
            out.append("all")
        elif text.isdigit():
            out.append(int(text))
        else:
            raise ModelError(f"bad fold {text!r}", None, "give fold numbers like --folds 0,1 or --folds all")
    return list(dict.fromkeys(out))


def move_networks(networks: list, device: Any) -> list:
    """Move networks to ``device`` (``None``/``"auto"``: leave on the CPU for the Predictor to place)."""
    if device is None or str(device) in ("auto", "cpu"):
        return networks
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but no CUDA device is available", None, "use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was asked for but is not available", None, "use --device auto or cpu")
    return [n.to(dev) for n in networks]


def resolve_model_path(id_or_path: str | Path) -> Path:
    """A model folder from a path or a catalogue id (ModelError when neither)."""
    text = str(id_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.startswith(".") or text.endswith(
        (".pt", ".pth", ".json"))
    if not looks_like_path:
        from .catalogue import installed_path

        found = installed_path(text)  # raises ModelError for a known but uninstalled id
        if found is not None:
            return found
        raise ModelError(f"no model folder and no catalogue entry named {text!r}", None,
                         "give a model folder, or one of the ids of `hntumorseg models list`")
    raise ModelError("model folder not found", path, "check the path, or use a catalogue id (hntumorseg models list)")


def load_model(id_or_path: str | Path, folds: Any = None, device: Any = "cpu",
               checkpoint_name: str | None = None) -> LoadedModel:
    """Load a model card folder, an nnU-Net results folder or a catalogue id (module docstring)."""
    from .nnunet_folder import is_nnunet_folder, load_nnunet_folder

    folder = resolve_model_path(id_or_path)
    if folder.is_file():
        if folder.name == CARD_NAME:
            folder = folder.parent
        else:
            raise ModelError("is a single file; a model is a folder", folder,
                             "put a model.json card beside the checkpoint (see README section 6, Models) and give the folder")
    if (folder / CARD_NAME).is_file():
        return load_card_folder(folder, folds=folds, device=device)
    if is_nnunet_folder(folder):
        return load_nnunet_folder(folder, folds=folds, device=device, checkpoint_name=checkpoint_name)
    inner = [c for c in sorted(folder.iterdir()) if c.is_dir() and is_nnunet_folder(c)] if folder.is_dir() else []
    if len(inner) == 1:
        return load_nnunet_folder(inner[0], folds=folds, device=device, checkpoint_name=checkpoint_name)
    if len(inner) > 1:
        raise ModelError(f"holds {len(inner)} nnU-Net results folders ({', '.join(c.name for c in inner[:3])})",
                         folder, "give one of them")
    raise ModelError("is neither a model folder (model.json) nor an nnU-Net results folder "
                     "(plans.json, dataset.json, fold_k/)", folder, "give the folder that holds these files")


def load_card_folder(folder: str | Path, folds: Any = None, device: Any = "cpu") -> LoadedModel:
    """Load a folder with ``model.json``: verify checksums, build, load strictly (eval mode)."""
    from ..networks import build_network
    from .safe_load import load_checkpoint
    from .weights import extract_state_dict, load_strict, verify_sha256

    folder = Path(folder)
    card = read_card(folder / CARD_NAME)
    wanted = parse_folds(folds)
    if wanted is None:
        chosen = list(card.folds)
    else:
        absent = [f for f in wanted if f not in card.folds]
        if absent:
            raise ModelError(f"fold(s) {', '.join(map(str, absent))} not found; this model has fold(s) "
                             f"{', '.join(map(str, card.folds))}", folder, "choose --folds among those, or leave it out")
        chosen = wanted
    networks, paths = [], []
    for fold in chosen:
        path = folder / card.weights[str(fold)]
        if not path.is_file():
            raise ModelError(f"no checkpoint for fold {fold} ({path.name} is missing)", folder,
                             "copy the weights file into the model folder or fetch the model again")
        expected = card.sha256.get(path.name) or card.sha256.get(card.weights[str(fold)])
        if expected:
            verify_sha256(path, expected)
        state = extract_state_dict(load_checkpoint(path), path)
        try:
            net = build_network(card.architecture, card.num_input_channels, card.num_output_channels)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"cannot build architecture {card.architecture.get('name')} ({exc})",
                             folder / CARD_NAME, "fix architecture.kwargs in the model card") from None
        load_strict(net, state, path, what=f"{card.architecture['name']} of the model card")
        networks.append(net.eval())
        paths.append(path)
    kind = "segresnet" if card.architecture["name"] == "SegResNetDS" else "card"
    return LoadedModel(card=card, networks=move_networks(networks, device), kind=kind, folds=chosen,
                       folder=folder, checkpoints=paths)
