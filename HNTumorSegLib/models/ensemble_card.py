"""Ensemble cards (``ensemble.json``): several models of any kind run together on one case.

Seed 002 averages an nnU-Net ResEnc-L (5 folds) and a MONAI SegResNet (5 folds); seed 004
ensembles 10 STU-Net folds. A folder holding ``ensemble.json`` names its members - nnU-Net
results folders, model-card folders (STU-Net ...), SegResNet checkpoint folders, catalogue ids
- each run with **its own** preprocessing; their per-class probabilities are averaged with the
members' weights on a common grid, renormalised and turned into labels
(:mod:`HNTumorSegLib.pipeline.ensemble_run`). ``load_model(folder)`` returns an
:class:`EnsembleModel` (a :class:`~.types.LoadedModel` of ``kind == ModelKind.ENSEMBLE``), so
``hntumorseg segment --model FOLDER`` runs it like any model. Each member is a
:class:`MemberModel`: a loaded card or nnU-Net model with its weight and input names (not to be
confused with :class:`HNTumorSegLib.inference.ensemble.EnsembleMember`, the fold networks one
predictor averages).

``ensemble.json``::

    {"format": "hntumorseg-ensemble/1", "id": "seed002-fine", "title": "...", "task": "petct",
     "inputs": ["CT", "PET"],
     "members": [{"model": "resencl", "weight": 0.5, "folds": "all"},
                 {"model": "segresnet", "weight": 0.5, "inputs": {"CT": "CT", "PET": "PET"}}],
     "tta": false,
     "pipeline": null,
     "stages": {},
     "postprocess": {"min_volume_ml": {"1": 0.2}}}

* ``model``: a path relative to the ensemble folder, an absolute path or a catalogue id;
* ``weight``: > 0 (default 1); weights are normalised to sum 1;
* ``inputs`` (optional): member input name -> the ensemble's input name (an nnU-Net folder
  whose channels are called ``CT_norm`` reads the user's ``CT``);
* ``tta``: whether the seed ran test-time mirroring (the default of ``segment --tta``);
* ``checkpoint`` (top level, or per member / stage): which checkpoint the nnU-Net folders run,
  ``checkpoint_final`` or ``checkpoint_best`` (:class:`~HNTumorSegLib.vocab.Checkpoint`; seed
  002's released code loads ``checkpoint_best.pth`` for every stage); ``segment --checkpoint``
  overrides them all; absent: each folder's own default (:mod:`.nnunet_folder`);
* ``pipeline``: ``"seed002-coarse-to-fine"`` runs :mod:`HNTumorSegLib.pipeline.coarse_to_fine`
  with ``stages.head`` and ``stages.coarse`` (each ``{"model": ..., "folds": ...}``) before
  the members, which are then the fine stage.

Example (two members, both the bundled demo model; seed 002's card names its ResEnc-L and SegResNet folders):
    >>> from HNTumorSegLib.models import load_model
    >>> _ = write_ensemble("two-demos", {"id": "two-demos", "title": "two demos", "task": "midrt",
    ...                                  "members": [{"model": "demo-midrt", "name": "a", "weight": 3},
    ...                                              {"model": "demo-midrt", "name": "b"}]})
    >>> model = load_model("two-demos")               # an EnsembleModel
    >>> [(m.name, m.weight) for m in model.members], model.pipeline, model.user_inputs
    ([('a', 0.75), ('b', 0.25)], None, ['T2'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import InputError, ModelError
from ..fileio import read_json, write_json_atomic
from ..folds import FoldId, FoldsLike
from ..vocab import Checkpoint, ModelKind
from .card import InputSpec, ModelCard, provenance_fields
from .types import CardModel, ModelLoader, NnUNetFolderModel

if TYPE_CHECKING:
    from torch.nn import Module

#: What an ensemble member is loaded as: a card folder or an nnU-Net results folder (never an ensemble).
Member = CardModel | NnUNetFolderModel

ENSEMBLE_NAME = "ensemble.json"
ENSEMBLE_FORMAT = "hntumorseg-ensemble/1"
PIPELINES = ("seed002-coarse-to-fine",)
ENSEMBLE_FIX = "fix ensemble.json (README section 5, seed 002)"
STAGES: dict[str, tuple[str, ...]] = {"seed002-coarse-to-fine": ("head", "coarse")}


@dataclass
class MemberModel:
    """One loaded member of an ensemble card, its weight and how its inputs are named."""

    name: str
    model: Member
    weight: float
    input_map: dict[str, str] = field(default_factory=dict)   # member input -> ensemble input

    def user_name(self, member_input: str) -> str:
        return self.input_map.get(member_input, member_input)


@dataclass
class EnsembleModel:
    """An ensemble card, loaded: its members (and pipeline stages), ready to run (a :class:`~.types.LoadedModel`)."""

    card: ModelCard
    folder: Path
    members: list[MemberModel]
    pipeline: str | None = None
    stages: dict[str, MemberModel] = field(default_factory=dict)
    tta_default: bool | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> ModelKind:
        return ModelKind.ENSEMBLE

    @property
    def folds(self) -> list[FoldId]:
        """``["all"]``: each member ran the folds it names (or ``--folds``)."""
        return ["all"]

    @property
    def networks(self) -> list[Module]:
        """Every member's and stage's networks (memory, ``models verify``); each member runs its own."""
        return [net for m in [*self.members, *self.stages.values()] for net in m.model.networks]

    @property
    def user_inputs(self) -> list[str]:
        """The ensemble's inputs (``"inputs"`` of ensemble.json, else the members' images)."""
        return self.card.input_names

    @property
    def default_tta(self) -> bool:
        """The card's ``"tta"`` (seed 002's released pipeline passes ``--disable_tta``): off unless true."""
        return bool(self.tta_default)


def is_ensemble_folder(folder: Path) -> bool:
    return (Path(folder) / ENSEMBLE_NAME).is_file()


def _bad(path: Path, problem: str) -> NoReturn:
    raise ModelError(problem, path, ENSEMBLE_FIX)


def read_ensemble_spec(path: str | Path) -> dict[str, Any]:
    """``ensemble.json`` decoded and checked (ModelError naming the file on any problem)."""
    path = Path(path)
    spec = read_json(path, "ensemble card", "give a valid JSON file", error=ModelError)  # strict, depth-limited
    if not isinstance(spec, dict) or spec.get("format") != ENSEMBLE_FORMAT:
        _bad(path, f'"format" must be "{ENSEMBLE_FORMAT}"')
    members = spec.get("members")
    if not isinstance(members, list) or not members:
        _bad(path, '"members" must be a non-empty list')
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("model"), str):
            _bad(path, f'members[{i}] needs "model" (a folder or a catalogue id)')
        w = m.get("weight", 1.0)
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            _bad(path, f"members[{i}] weight must be a positive number, got {w!r}")
    for where, item in [("", spec), *((f"members[{i}].", m) for i, m in enumerate(members)),
                        *((f"stages.{k}.", v) for k, v in (spec.get("stages") or {}).items() if isinstance(v, dict))]:
        try:
            Checkpoint.parse_optional(item.get("checkpoint"), f"{where}checkpoint")
        except InputError as exc:
            _bad(path, exc.problem + f" ({exc.fix})")
    pipeline = spec.get("pipeline")
    if pipeline is not None and pipeline not in PIPELINES:
        _bad(path, f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})")
    for stage in STAGES.get(str(pipeline), ()):
        if not isinstance(spec.get("stages", {}).get(stage, {}).get("model"), str):
            _bad(path, f'pipeline {pipeline} needs stages.{stage}.model')
    return spec


def _member_path(folder: Path, text: str) -> str:
    candidate = (folder / text)
    return str(candidate) if candidate.exists() else text


def _load_member(folder: Path, item: dict[str, Any], name: str, device: str | None,
                 load_model: ModelLoader, checkpoint: Checkpoint | None = None) -> MemberModel:
    """One member or stage; ``checkpoint``: the choice for it (``--checkpoint``, else its own, else the card's)."""
    model = load_model(_member_path(folder, item["model"]), folds=item.get("folds"), device=device,
                       checkpoint=checkpoint)
    if not isinstance(model, (CardModel, NnUNetFolderModel)):
        raise ModelError(f"member {name} is itself an ensemble", folder / ENSEMBLE_NAME, "list its members instead")
    return MemberModel(name, model, float(item.get("weight", 1.0)), dict(item.get("inputs") or {}))


def load_ensemble(folder: str | Path, load_model: ModelLoader, device: str | None = "cpu",
                  folds: FoldsLike = None, checkpoint: Checkpoint | str | None = None) -> EnsembleModel:
    """Load every member (and stage) of the ensemble card in ``folder`` with ``load_model``.

    ``load_model`` is :func:`HNTumorSegLib.models.loader.load_model` (passed in, so that this
    module need not import the loader that imports it). ``folds`` (from ``--folds``) applies to
    members that do not name their own; ``checkpoint`` (from ``--checkpoint``) to every member
    and stage, over what the card says (:func:`member_checkpoint`).
    """
    folder = Path(folder)
    spec = read_ensemble_spec(folder / ENSEMBLE_NAME)
    chosen = Checkpoint.parse_optional(checkpoint, "--checkpoint")
    members = []
    for i, item in enumerate(spec["members"]):
        item = dict(item)
        if "folds" not in item and folds is not None:
            item["folds"] = folds
        members.append(_load_member(folder, item, item.get("name") or Path(item["model"]).name or f"member{i}",
                                    device, load_model, member_checkpoint(spec, item, chosen)))
    total = sum(m.weight for m in members)
    for m in members:
        m.weight /= total
    stages = {name: _load_member(folder, spec["stages"][name], name, device, load_model,
                                 member_checkpoint(spec, spec["stages"][name], chosen))
              for name in STAGES.get(str(spec.get("pipeline")), ())}
    first = members[0].model
    inputs = spec.get("inputs") or _user_inputs(members)
    origin = provenance_fields(spec, folder / ENSEMBLE_NAME, "ensemble card", ENSEMBLE_FIX)
    card = ModelCard(id=str(spec.get("id") or folder.name), title=str(spec.get("title") or folder.name),
                     inputs=[InputSpec(str(n), {"type": "none"}) for n in inputs],
                     architecture={"name": "Ensemble", "kwargs": {}}, labels=dict(first.card.labels),
                     folds=["all"], weights={}, task=origin["task"] or first.card.task,
                     postprocess=dict(spec.get("postprocess") or {}), licence=origin["licence"],
                     source=origin["source"], citation=origin["citation"],
                     intended_use=str(spec.get("intended_use", "")), path=folder / ENSEMBLE_NAME)
    return EnsembleModel(card=card, folder=folder, members=members, pipeline=spec.get("pipeline"), stages=stages,
                         tta_default=spec.get("tta"), spec=spec)


def member_checkpoint(spec: dict[str, Any], item: dict[str, Any],
                      chosen: Checkpoint | str | None = None) -> Checkpoint | None:
    """The checkpoint one member or stage runs: ``chosen`` (``--checkpoint``), else its own
    ``"checkpoint"``, else the card's, else None (the folder's default).

    Example:
        >>> spec = {"checkpoint": "checkpoint_best", "members": [{"model": "a"}, {"model": "b", "checkpoint": "final"}]}
        >>> [str(member_checkpoint(spec, m)) for m in spec["members"]]
        ['checkpoint_best', 'checkpoint_final']
        >>> str(member_checkpoint(spec, spec["members"][0], "checkpoint_final"))
        'checkpoint_final'
    """
    for value in (chosen, item.get("checkpoint"), spec.get("checkpoint")):
        found = Checkpoint.parse_optional(value, "checkpoint")
        if found is not None:
            return found
    return None


def own_inputs(model: Member) -> list[str]:
    """The images a member reads: nnU-Net channel names (derived ones included: a member gets
    files, not seed steps), or its card's inputs that are not derived."""
    if isinstance(model, NnUNetFolderModel):
        return model.input_names
    return model.card.user_inputs


def _user_inputs(members: list[MemberModel]) -> list[str]:
    names: list[str] = []
    for m in members:
        own = own_inputs(m.model)
        for n in own:
            user = m.user_name(n)
            if user not in names:
                names.append(user)
    return names


def ad_hoc_ensemble(folder: str | Path, models: list[str], weights: list[float] | None = None) -> Path:
    """``segment --model A --model B [--weights wA wB]``: an ensemble card in ``folder`` naming them; returns ``folder``.

    Paths become absolute (the card lives elsewhere); catalogue ids stay ids. Equal weights by
    default; TTA follows ``--tta`` only (no seed's default applies to a mix).
    """
    if weights is not None and len(weights) != len(models):
        raise ModelError(f"{len(weights)} weight(s) for {len(models)} models", None,
                         "give one --weights value per --model")
    members = []
    for i, text in enumerate(models):
        path = Path(text).expanduser()
        members.append({"model": str(path.resolve()) if path.exists() else str(text),
                        "weight": float(weights[i]) if weights else 1.0, "name": f"{i + 1}-{path.name or text}"})
    write_ensemble(folder, {"id": "ensemble-of-" + "+".join(Path(m).name or m for m in models),
                            "title": "ensemble from the command line", "members": members})
    return Path(folder)


def write_ensemble(folder: str | Path, spec: dict[str, Any]) -> Path:
    """Write ``ensemble.json`` into ``folder`` (checked first, atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"format": ENSEMBLE_FORMAT, **spec}
    path = write_json_atomic(folder / ENSEMBLE_NAME, spec)
    read_ensemble_spec(path)
    return path
