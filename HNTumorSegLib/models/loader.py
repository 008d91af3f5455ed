"""``load_model``: one entry point for every model form HNTumorSeg runs.

``folds`` is a :class:`~HNTumorSegLib.folds.Folds` (or what :func:`~HNTumorSegLib.folds.parse_folds`
reads); :meth:`Folds.resolve` is the one "fold not found" check for both folder forms.
What comes back is a :class:`~.types.LoadedModel` (the protocol the pipeline uses), of one of
three types by form: :class:`~.types.CardModel`, :class:`~.types.NnUNetFolderModel`,
:class:`~.ensemble_card.EnsembleModel`. They live in :mod:`.types` so that this module and
:mod:`.nnunet_folder` import them without importing each other.

Accepted, in this order:

1. a folder holding ``model.json`` (our model card, docs/design.md "Models"): weights listed in
   the card are checked against their sha256, the architecture is built from
   ``card.architecture`` and the weights are loaded strictly. Cards whose architecture is
   ``SegResNetDS`` are MONAI SegResNet checkpoints (a bare state_dict, or a dict with
   ``state_dict`` / ``model``) and get ``kind == ModelKind.SEGRESNET``;
2. an nnU-Net v2 results folder (``plans.json`` + ``dataset.json`` + ``fold_k/``), see
   :mod:`.nnunet_folder`; a folder holding exactly one such results folder also works;
3. a catalogue id (``HNTumorSegLib/resources/models.json``): the bundled demo models, or a model
   installed by ``hntumorseg models fetch ID``; a bare name is a catalogue id before it is a folder
   (:func:`resolve_model_path`);
4. a folder holding ``ensemble.json``: several models run together (:mod:`.ensemble_card`).

Every checkpoint is read with ``torch.load(weights_only=True)``; every user-fixable
problem (missing folder, no checkpoint, absent fold, corrupt file, checksum or key
mismatch) is a :class:`ModelError`: one line, exit code 2.

Example:
    >>> model = load_model("demo-midrt")
    >>> model.kind, len(model.networks), model.card.patch_size_zyx
    (<ModelKind.CARD: 'card'>, 1, [16, 48, 48])
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..errors import ModelError
from ..folds import FoldsLike, parse_folds
from ..protect import check_path_kind
from ..vocab import Checkpoint, ModelKind
from .card import CARD_NAME, DEFAULT_BOX_MARGIN_VOX, read_card
from .nnunet_folder import is_nnunet_folder, load_nnunet_folder
from .types import CardModel, LoadedModel, ModelLoader, move_networks


def looks_like_path(text: str) -> bool:
    """True when ``--model`` text is a path, never a catalogue id: it holds a separator, starts with
    ``.`` or ``~``, is absolute or ends in .pt/.pth/.json (``looks_like_path("./demo-petct")`` is True)."""
    return (Path(text).is_absolute() or any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~"))
            or text.endswith((".pt", ".pth", ".json")))


def resolve_model_path(id_or_path: str | Path) -> Path:
    """A model folder from a path or a catalogue id (ModelError when neither).

    Order (README section 6, ``--model`` help): text that looks like a path (holds ``/`` or ``\\``,
    starts with ``.`` or ``~``, is absolute, or ends in .pt/.pth/.json) is a path; a bare name is a
    catalogue id first, then a folder of that name in the working directory. Why: a folder that
    happens to be named like an id (``hntumorseg demo --out demo-petct``) must not hide the
    catalogue entry; write ``./demo-petct`` for the folder.

    Example:
        >>> resolve_model_path("demo-midrt").name
        'demo-midrt'
    """
    text = str(id_or_path)
    path = Path(text).expanduser()
    if looks_like_path(text):
        if path.exists():
            check_path_kind(path, "model folder", "file or folder")   # a FIFO is named so (issue 22)
            return path
        raise ModelError("model folder not found", path, "check the path, or use a catalogue id (hntumorseg models list)")
    from .catalogue import installed_path

    try:
        found = installed_path(text)  # raises ModelError for a known but uninstalled id
    except ModelError as exc:
        if path.exists():
            raise ModelError(f"{exc.problem} (the catalogue id wins over the folder ./{text})", exc.path,
                             f"{exc.fix}; or give the folder as ./{text}") from exc
        raise
    if found is not None:
        return found
    if path.exists():
        return path
    raise ModelError(f"no catalogue entry named {text!r} and no folder ./{text} in {Path.cwd()}", None,
                     "give a model folder path, or one of the ids of `hntumorseg models list`")


def box_margin_vox_of(id_or_path: str | Path | None) -> int:
    """The model's ``box_margin_vox`` (its card's; nnU-Net folders and no model: the card default, 4),
    read without loading weights. The pipeline's mid-RT boxes and Slicer's "Boxes from prior"
    both use this number (why 4: :mod:`.card`).

    Example:
        >>> box_margin_vox_of("demo-midrt")
        4
    """
    if not id_or_path:
        return DEFAULT_BOX_MARGIN_VOX
    folder = resolve_model_path(id_or_path)
    card_path = folder if folder.is_file() and folder.name == CARD_NAME else folder / CARD_NAME
    return read_card(card_path).box_margin_vox if card_path.is_file() else DEFAULT_BOX_MARGIN_VOX


def load_model(id_or_path: str | Path, folds: FoldsLike = None, device: str | None = "cpu",
               checkpoint: Checkpoint | str | None = None) -> LoadedModel:
    """Load a model card folder, an nnU-Net results folder or a catalogue id (module docstring).

    ``folds``: a :class:`~HNTumorSegLib.folds.Folds`, or anything
    :func:`~HNTumorSegLib.folds.parse_folds` reads (``None`` = every fold). ``checkpoint``
    (``segment --checkpoint``, :class:`~HNTumorSegLib.vocab.Checkpoint`): which checkpoint every
    nnU-Net fold runs, an ensemble's members and stages included (``None``: each one's own
    default, :mod:`.nnunet_folder`); a model card's weights are the files its card names.
    """
    checkpoint = Checkpoint.parse_optional(checkpoint, "--checkpoint")
    folder = resolve_model_path(id_or_path)
    if folder.is_file():
        if folder.name == CARD_NAME:
            folder = folder.parent
        else:
            raise ModelError("is a single file; a model is a folder", folder,
                             "put a model.json card beside the checkpoint (see README section 6, Models) and give the folder")
    if (folder / CARD_NAME).is_file():
        return load_card_folder(folder, folds=folds, device=device)
    from .ensemble_card import is_ensemble_folder, load_ensemble

    if is_ensemble_folder(folder):
        return load_ensemble(folder, load_model, device=device, folds=folds, checkpoint=checkpoint)
    if is_nnunet_folder(folder):
        return load_nnunet_folder(folder, folds=folds, device=device, checkpoint=checkpoint)
    inner = [c for c in sorted(folder.iterdir()) if c.is_dir() and is_nnunet_folder(c)] if folder.is_dir() else []
    if len(inner) == 1:
        return load_nnunet_folder(inner[0], folds=folds, device=device, checkpoint=checkpoint)
    if len(inner) > 1:
        raise ModelError(f"holds {len(inner)} nnU-Net results folders ({', '.join(c.name for c in inner[:3])})",
                         folder, "give one of them")
    raise ModelError("is neither a model folder (model.json) nor an nnU-Net results folder "
                     "(plans.json, dataset.json, fold_k/)" + ("" if looks_like_path(str(id_or_path)) else
                                                             ", and no catalogue entry has this id"),
                     folder, "give the folder that holds these files, or an id of `hntumorseg models list`")


def with_checkpoint(loader: ModelLoader | None, checkpoint: Checkpoint | str | None) -> ModelLoader | None:
    """``loader`` (default :func:`load_model`) with a request's ``--checkpoint`` bound; ``loader``
    itself when none is chosen. How :func:`HNTumorSegLib.pipeline.run.run_segmentation` hands the
    request's choice to validation, whose loader call names the model and folds only. A loader
    that does not take ``checkpoint`` by name (a cache keyed on model, folds and device only) is
    passed by: :func:`load_model` loads the chosen checkpoint itself, so a choice is never lost.

    Example:
        >>> with_checkpoint(None, None) is None
        True
        >>> with_checkpoint(None, "best").keywords
        {'checkpoint': <Checkpoint.BEST: 'checkpoint_best'>}
        >>> with_checkpoint(lambda model, folds=None, device="cpu", **kw: None, "best").func is load_model
        True
    """
    chosen = Checkpoint.parse_optional(checkpoint, "--checkpoint")
    if chosen is None:
        return loader
    import inspect

    takes_it = loader is not None and "checkpoint" in inspect.signature(loader).parameters
    return functools.partial(loader if takes_it and loader is not None else load_model, checkpoint=chosen)


def load_card_folder(folder: str | Path, folds: FoldsLike = None, device: str | None = "cpu") -> CardModel:
    """Load a folder with ``model.json``: verify checksums, build, load strictly (eval mode)."""
    from ..networks import build_network
    from .safe_load import load_checkpoint
    from .weights import extract_state_dict, load_strict, verify_sha256

    folder = Path(folder)
    card = read_card(folder / CARD_NAME)
    chosen = parse_folds(folds).resolve(card.folds, folder)
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
        if card.extra.get("axis_order") == "xyz":   # MONAI x,y,z arrays (UW LAIR): see segresnet_checkpoint
            from ..networks.axis_order import xyz_wrapped

            net = xyz_wrapped(net)
        networks.append(net.eval())
        paths.append(path)
    kind = ModelKind.SEGRESNET if card.architecture["name"] == "SegResNetDS" else ModelKind.CARD
    return CardModel(card=card, networks=move_networks(networks, device), folds=chosen, folder=folder,
                     checkpoints=paths, kind=kind)
