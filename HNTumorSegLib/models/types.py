"""What a loaded model is: :class:`LoadedModel`, shared by every loader.

Its own module so imports point one way only: :mod:`.loader` (the entry point) imports
:mod:`.nnunet_folder` and both import this module; nothing here imports a loader
(``Testing/test_import_graph.py`` keeps it so).

Example:
    >>> from HNTumorSegLib.models.types import LoadedModel
    >>> model: LoadedModel = load_model("demo-midrt")
    >>> model.kind, model.folds, model.patch_size
    ('card', [0], [16, 96, 96])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .card import ModelCard


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
    declaration: Any = None  # nnU-Net folders: models.declaration.Declaration (seed steps, user inputs)

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
        """Patch size in the network's array order: the card's ``patch_size_zyx``; for nnU-Net
        the plans' own order (nnU-Net's transposed axes, which the sliding window runs in)."""
        if self.configuration_manager is not None:
            return [int(p) for p in self.configuration_manager.patch_size]
        return self.card.patch_size_zyx

    @property
    def num_classes(self) -> int:
        """Output channels of each network."""
        if self.label_manager is not None:
            return int(self.label_manager.num_segmentation_heads)
        return self.card.num_output_channels


def move_networks(networks: list, device: Any) -> list:
    """Move networks to ``device`` (``None``/``"auto"``: leave on the CPU for the predictor to place)."""
    if device is None or str(device) in ("auto", "cpu"):
        return networks
    import torch

    from ..errors import DeviceError

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but no CUDA device is available", None, "use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was asked for but is not available", None, "use --device auto or cpu")
    return [n.to(dev) for n in networks]
