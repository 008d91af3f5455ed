"""What a loaded model is: the :class:`LoadedModel` protocol, and one concrete type per model form.

The pipeline (:mod:`HNTumorSegLib.pipeline`) and inference call only what :class:`LoadedModel`
names on "a model"; what only one form has lives on that form's type, and code that needs it
asks with ``isinstance`` (which a type checker follows), never with ``getattr`` probing:

* :class:`CardModel`: a ``model.json`` folder (our networks, or MONAI SegResNet checkpoints:
  ``kind`` ``card`` or ``segresnet``), made by :func:`.loader.load_card_folder`;
* :class:`NnUNetFolderModel`: an nnU-Net v2 results folder with nnU-Net's own objects
  (plans, configuration, label manager) and the folder's :class:`~.declaration.Declaration`,
  made by :func:`.nnunet_folder.load_nnunet_folder`;
* :class:`~.ensemble_card.EnsembleModel`: an ensemble card, whose members are models of the
  two forms above (its own module, as it needs the loader passed in).

Its own module so imports point one way only: :mod:`.loader` (the entry point) imports
:mod:`.nnunet_folder` and both import this module; nothing here imports a loader
(``Testing/test_import_graph.py`` keeps it so).

Example:
    >>> from HNTumorSegLib.models.loader import load_model
    >>> model: LoadedModel = load_model("demo-midrt")
    >>> isinstance(model, CardModel), model.kind, model.folds, model.patch_size
    (True, <ModelKind.CARD: 'card'>, [0], [16, 48, 48])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from ..folds import FoldId
from ..vocab import ModelKind
from .card import ModelCard
from .declaration import Declaration

if TYPE_CHECKING:   # imported only when a model is loaded (the type checker does not follow them: Any)
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
    from torch import device as TorchDevice
    from torch.nn import Module

class LoadedModel(Protocol):
    """What the pipeline and inference use of any loaded model (read-only; each form adds its own).

    Why a Protocol and not a base class: the three forms share no implementation, only this
    view; a test double or a future form satisfies it without inheriting anything.
    """

    @property
    def kind(self) -> ModelKind:
        """Which form it is (how the pipeline runs it; shown by ``models verify``)."""
        ...

    @property
    def card(self) -> ModelCard:
        """Its model card (read from model.json, or made from the folder / ensemble.json)."""
        ...

    @property
    def folder(self) -> Path:
        """The model folder."""
        ...

    @property
    def folds(self) -> list[FoldId]:
        """The folds loaded (an ensemble: ``["all"]``)."""
        ...

    @property
    def networks(self) -> list[Module]:
        """Every network it runs, in eval mode (an ensemble: its members' and stages')."""
        ...

    @property
    def user_inputs(self) -> list[str]:
        """The images the user gives (``--input NAME=PATH``), first = the output grid; derived
        channels (a gradient map, CT powers) are made, not given."""
        ...

    @property
    def default_tta(self) -> bool:
        """Test-time mirroring when the request does not say: on where the model's seed ran it."""
        ...


#: :func:`HNTumorSegLib.models.loader.load_model`'s shape: what an ensemble card and the pipeline
#: are handed to load models with (a warm session passes its cache, :mod:`HNTumorSegLib.session`).
ModelLoader = Callable[..., LoadedModel]


@dataclass
class CardModel:
    """A model-card folder, loaded: one network per fold, built from ``card.architecture``."""

    card: ModelCard
    networks: list[Module]
    folds: list[FoldId]
    folder: Path
    checkpoints: list[Path] = field(default_factory=list)
    kind: ModelKind = ModelKind.CARD   # CARD, or SEGRESNET for MONAI SegResNetDS checkpoints

    @property
    def user_inputs(self) -> list[str]:
        return self.card.user_inputs

    @property
    def default_tta(self) -> bool:
        """The card's ``"tta": true``, else off (the demo models)."""
        return self.card.extra.get("tta") is True

    @property
    def patch_size(self) -> list[int] | None:
        """The card's ``patch_size_zyx`` (None: the whole working image is one patch)."""
        return self.card.patch_size_zyx

    @property
    def num_classes(self) -> int:
        """Output channels of each network."""
        return self.card.num_output_channels


@dataclass
class NnUNetFolderModel:
    """An nnU-Net v2 results folder, loaded, with the nnunetv2 objects its own preprocessing and
    export need (``plans_manager``, ``configuration_manager``, ``label_manager``, ``dataset_json``)
    and what the pipeline adds around it (``declaration``: seed steps and the user's inputs)."""

    card: ModelCard
    networks: list[Module]
    folds: list[FoldId]
    folder: Path
    checkpoints: list[Path]
    plans: dict[str, Any]
    plans_manager: PlansManager
    configuration_manager: ConfigurationManager
    configuration_name: str
    trainer_name: str
    dataset_json: dict[str, Any]
    label_manager: LabelManager
    declaration: Declaration
    inference_allowed_mirroring_axes: tuple[int, ...] | None = None   # from the checkpoint
    channel_names: dict[str, str] = field(default_factory=dict)       # dataset.json: {"0": "CT", "1": "PET"}

    @property
    def kind(self) -> ModelKind:
        return ModelKind.NNUNET

    @property
    def user_inputs(self) -> list[str]:
        """The declaration's user images (a derived gradient channel is made from the T2)."""
        return list(self.declaration.user_inputs)

    @property
    def default_tta(self) -> bool:
        """On: ``nnUNetv2_predict``'s default, which seeds 000, 001, 003 and 004 used."""
        return True

    @property
    def input_names(self) -> list[str]:
        """dataset.json's channel names in channel order (the files nnU-Net reads)."""
        return [self.channel_names[k] for k in sorted(self.channel_names, key=int)]

    @property
    def patch_size(self) -> list[int]:
        """The plans' patch size in nnU-Net's own (transposed) axis order, which the sliding window
        runs in; ``card.patch_size_zyx`` has it in the image's z, y, x order."""
        return [int(p) for p in self.configuration_manager.patch_size]

    @property
    def num_classes(self) -> int:
        """Output channels of each network (segmentation heads)."""
        return int(self.label_manager.num_segmentation_heads)


def move_networks(networks: Sequence[Module], device: str | TorchDevice | None) -> list[Module]:
    """Move networks to ``device`` (``None``/``"auto"``: leave on the CPU for the predictor to place)."""
    if device is None or str(device) in ("auto", "cpu"):
        return list(networks)
    import torch

    from ..errors import DeviceError

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but no CUDA device is available", None, "use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was asked for but is not available", None, "use --device auto or cpu")
    return [n.to(dev) for n in networks]
