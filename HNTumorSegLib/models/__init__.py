"""Models: cards, loaders (card folders, nnU-Net results folders, SegResNet), catalogue.

``load_model(id_or_path, folds=None, device="cpu") -> LoadedModel`` is the entry point
(``folds``: :func:`HNTumorSegLib.folds.parse_folds` forms or a ``Folds``); ``LoadedModel`` is the
protocol the pipeline uses, and each form is its own type (:mod:`.types`);
torch is imported only when a model is actually loaded.

Example:
    >>> from HNTumorSegLib.models import load_model
    >>> model = load_model("demo-midrt", folds="all")   # a folder, or a catalogue id (here the bundled demo)
    >>> model.kind, model.folds
    (<ModelKind.CARD: 'card'>, [0])
"""

from .card import InputSpec, ModelCard, read_card, write_card
from .loader import load_model
from .types import CardModel, LoadedModel, NnUNetFolderModel

__all__ = ["CardModel", "InputSpec", "LoadedModel", "ModelCard", "NnUNetFolderModel", "load_model", "read_card",
           "write_card"]
