"""The outcome model card (``model.json`` of an outcome model folder): one or both endpoints.

An outcome model is a folder holding ``model.json`` and one weights file per fold and endpoint
(``torch.save(state_dict)``, read back with ``torch.load(weights_only=True)``, sha256 checked)::

    {"format": "hntumorseg-outcome/1", "id": "...", "title": "...",
     "intended_use": "Research use only ...", "licence": "...", "source": "...", "citation": "...",
     "patch": {PatchSpec fields}, "architecture": {"name": "OutcomeNet", "block_inplanes": [...],
               "clinical_width": 128, "head_width": 128, "dropout": 0.1},
     "endpoints": {
        "rfs": {"cut_points_days": [769, 1357, 2626],
                "folds": [{"fold": 0, "weights": "rfs_fold0.pt", "sha256": "...",
                           "clinical": {ClinicalEncoder.to_dict()}, "best_epoch": 7, "val_c_index": 0.71}]},
        "hpv": {"threshold": 0.5, "loss": "weighted_bce", "folds": [...same shape...]}},
     "training": {...what produced it...}}

Each fold keeps its own clinical statistics (they are fitted on that fold's training patients).
Reading validates everything and raises :class:`ModelError` (one line, exit 2) naming the field.

Example (a card written by hand; ``python -m hntumorseg_training outcome-train`` writes real ones,
the weights files beside it are checked when the model loads, not here):
    >>> from HNTumorSegLib.outcome.clinical import ClinicalEncoder
    >>> from HNTumorSegLib.outcome.patch import PatchSpec
    >>> from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
    >>> enc = ClinicalEncoder.fit([make_outcome_case(0, i)["clinical"] for i in range(3)])
    >>> fold = {"fold": 0, "weights": "rfs_fold0.pt", "sha256": "0" * 64, "clinical": enc.to_dict()}
    >>> _ = write_outcome_card({"id": "tiny", "title": "tiny", "patch": PatchSpec().to_dict(),
    ...                         "architecture": {"name": "OutcomeNet"},
    ...                         "endpoints": {"rfs": {"cut_points_days": [769, 1357, 2626], "folds": [fold]},
    ...                                       "hpv": {"folds": [fold]}}}, "outcome-model")
    >>> card = read_outcome_card("outcome-model")
    >>> sorted(card.endpoints), card.endpoints["rfs"].n_outputs
    (['hpv', 'rfs'], 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..fileio import read_json, write_json_atomic
from ..vocab import Endpoint
from .clinical import ClinicalEncoder
from .patch import PatchSpec

OUTCOME_FORMAT = "hntumorseg-outcome/1"
ENDPOINTS = Endpoint.values()   # the words: vocab.Endpoint
RESEARCH_WARNING = ("RESEARCH USE ONLY: outcome and HPV predictions are not validated for clinical decisions "
                    "(seed 004's models dropped to C-index 0.53 and balanced accuracy 0.51 on the HECKTOR 2025 "
                    "test centres).")


@dataclass
class FoldEntry:
    fold: int
    weights: str
    sha256: str
    clinical: ClinicalEncoder
    extra: dict = field(default_factory=dict)


@dataclass
class EndpointCard:
    name: str
    folds: list[FoldEntry]
    cut_points_days: list[float] | None = None  # rfs
    threshold: float = 0.5  # hpv
    loss: str = ""

    @property
    def n_outputs(self) -> int:
        return len(self.cut_points_days) + 1 if self.name == "rfs" else 1


@dataclass
class OutcomeCard:
    id: str
    title: str
    patch: PatchSpec
    architecture: dict
    endpoints: dict[str, EndpointCard]
    raw: dict
    folder: Path


def _bad(where: Any, problem: str, fix: str = "re-export the outcome model (python -m hntumorseg_training outcome-train)"):
    raise ModelError(problem, where, fix)


def _fold(data: Any, where: Path) -> FoldEntry:
    if not isinstance(data, dict):
        _bad(where, "an endpoint's fold entry is not an object")
    for key in ("fold", "weights", "sha256", "clinical"):
        if key not in data:
            _bad(where, f"a fold entry misses {key!r}")
    try:
        enc = ClinicalEncoder.from_dict(data["clinical"])
    except (KeyError, TypeError, ValueError) as exc:
        _bad(where, f"fold {data['fold']}'s clinical statistics are incomplete ({exc})")
    extra = {k: v for k, v in data.items() if k not in ("fold", "weights", "sha256", "clinical")}
    return FoldEntry(int(data["fold"]), str(data["weights"]), str(data["sha256"]), enc, extra)


def read_outcome_card(path: str | Path) -> OutcomeCard:
    """Read and validate ``path`` (a folder or its ``model.json``)."""
    p = Path(path)
    card_path = p / "model.json" if p.is_dir() else p
    if not card_path.is_file():
        raise ModelError("outcome model not found (no model.json)", p, "give an outcome model folder")
    data = read_json(card_path, "outcome model card", "fix or re-create the model folder", error=ModelError)
    if not isinstance(data, dict) or data.get("format") != OUTCOME_FORMAT:
        _bad(card_path, f"is not an outcome model card (format must be {OUTCOME_FORMAT!r})",
             "give an outcome model; segmentation models go to `hntumorseg segment`")
    for key in ("id", "title", "patch", "architecture", "endpoints"):
        if key not in data:
            _bad(card_path, f"misses the field {key!r}")
    try:
        patch = PatchSpec.from_dict(data["patch"])
    except (KeyError, TypeError, ValueError):
        _bad(card_path, "field 'patch' is incomplete")
    endpoints: dict[str, EndpointCard] = {}
    if not isinstance(data["endpoints"], dict) or not data["endpoints"]:
        _bad(card_path, "field 'endpoints' holds no endpoint")
    for name, ep in data["endpoints"].items():
        if name not in ENDPOINTS:
            _bad(card_path, f"endpoint {name!r} is not one of {', '.join(ENDPOINTS)}")
        folds = [_fold(f, card_path) for f in ep.get("folds", [])]
        if not folds:
            _bad(card_path, f"endpoint {name!r} has no fold")
        cuts = [float(c) for c in ep["cut_points_days"]] if name == "rfs" and "cut_points_days" in ep else None
        if name == "rfs" and not cuts:
            _bad(card_path, "endpoint 'rfs' misses cut_points_days")
        endpoints[name] = EndpointCard(name, folds, cuts, float(ep.get("threshold", 0.5)), str(ep.get("loss", "")))
    return OutcomeCard(str(data["id"]), str(data["title"]), patch, dict(data["architecture"]), endpoints, data,
                       card_path.parent)


def write_outcome_card(data: dict, folder: str | Path) -> Path:
    """Write ``model.json`` atomically into ``folder`` (the caller wrote the weights first)."""
    data = {"format": OUTCOME_FORMAT, **data}
    return write_json_atomic(Path(folder) / "model.json", data)
