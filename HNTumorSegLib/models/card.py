"""The model card (``model.json``): what a model needs, what it gives, where it comes from.

:class:`ModelCard` mirrors ``model.json`` (docs/internal-api.md "Model card"). Reading a
card validates it completely, so a bad card fails once, early, with one line naming the
field and the fix (:class:`ModelError`, exit 2), never deep inside inference.
nnU-Net results folders have no card; the loader synthesises one from their plans and
dataset.json (``format`` is then ``"nnunet"``) so the rest of the program sees one shape.

Axis orders (both exist, so the Python names say which): ``model.json`` keeps its keys
``"spacing"`` and ``"patch_size"`` (every card written so far uses them), documented here:

==================  ========================  ==============================================
JSON key            Python field              order and unit
==================  ========================  ==============================================
``spacing``         ``spacing_xyz``           x, y, z in mm (SimpleITK's order); null = native
``patch_size``      ``patch_size_zyx``        z, y, x voxels (the numpy array order the
                                              network runs in)
``box_margin_vox``  ``box_margin_vox``        voxels added on every side of a lesion box
                                              made from a prior mask (int >= 0, default 4)
``pet_unit``        ``pet_unit``              the unit a PET input must be in: ``SUV`` (the
                                              default and, so far, the only one models take;
                                              :mod:`HNTumorSegLib.dicom.pet_units`)
==================  ========================  ==============================================

Why the box margin is a card field, and why 4: seed 003 (Ren et al., mid-RT gradient maps)
trains with boxes around the registered pre-RT lesions grown by a *random* margin (its released
code: 4-7 voxels below / 3-6 above each lesion; the paper says 2-6; ``HNTumorSegLib.prompts.margins``),
and its authors' released evaluation (GradientSegHNTS ``src/midRT/create_margins.py``) has no
fixed margin to copy: it loops over "margins" 2, 4, 6 and 8 but ignores them and draws
``randint(4, 8)`` like training. Our 4 is the smallest margin that draw gives below a lesion (it
gives 3-6 above), fixed so a case always gives the same boxes (docs/design.md, "margin"). The number
belongs to the model (a model trained with other margins needs another), so the pipeline's
mid-RT boxes and Slicer's "Boxes from prior" both read ``card.box_margin_vox``: pressing the
button gives the boxes the pipeline would have made.

Example:
    >>> from HNTumorSegLib.models.catalogue import installed_path
    >>> card = read_card(installed_path("demo-midrt") / "model.json")     # the bundled demo's card
    >>> card.input_names
    ['T2', 'gradient_map']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypedDict

from ..errors import InputError, ModelError
from ..fileio import read_json, write_json_atomic
from ..vocab import Architecture, NetworkOutput, PetUnit, Task

CARD_FORMAT = "hntumorseg-model/1"
CARD_NAME = "model.json"
ARCHITECTURES = Architecture.values()   # the words: vocab.Architecture
#: normalisation type -> the numeric keys it needs (prompts/normalisation.py applies them).
NORMALISATIONS: dict[str, tuple[str, ...]] = {
    "zscore": (), "none": (), "range": (), "window": ("lo", "hi"), "window01": ("lo", "hi"),
    "auto3dseg_range": ("lo", "hi"), "scale": (),
    "ct": ("mean", "std", "percentile_00_5", "percentile_99_5"),
}
#: seed 003's fixed inference margin (module docstring): the default of ``box_margin_vox``.
DEFAULT_BOX_MARGIN_VOX = 4
#: Python field -> model.json key, where they differ (the JSON keys predate the axis-order names).
JSON_KEYS = {"spacing_xyz": "spacing", "patch_size_zyx": "patch_size"}
_REQUIRED = ("format", "id", "title", "inputs", "architecture", "labels", "folds", "weights")


@dataclass
class InputSpec:
    """One input channel: its name, how it is normalised, and what it is computed from."""

    name: str
    normalisation: dict[str, Any] = field(default_factory=lambda: {"type": "zscore"})
    derived_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "normalisation": dict(self.normalisation)}
        if self.derived_from is not None:
            out["derived_from"] = self.derived_from
        return out


@dataclass
class ModelCard:
    """A validated model card (see the module docstring and docs/design.md "Models")."""

    id: str
    title: str
    inputs: list[InputSpec]
    architecture: dict[str, Any]
    labels: dict[str, int]
    folds: list[int | str]
    weights: dict[str, str]
    format: str = CARD_FORMAT
    version: str = "1"
    task: Task | None = None
    spacing_xyz: list[float] | None = None  # JSON "spacing": x, y, z in mm; None = native grid
    patch_size_zyx: list[int] | None = None  # JSON "patch_size": z, y, x voxels
    box_margin_vox: int = DEFAULT_BOX_MARGIN_VOX  # per-side margin of boxes made from a prior mask
    pet_unit: PetUnit = PetUnit.SUV  # the unit a PET input must be in (dicom/pet_units.py; README "PET units")
    output: str = "softmax"
    sha256: dict[str, str] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    tta_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    licence: str = ""
    source: str = ""
    citation: str = ""
    intended_use: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for round trips
    path: Path | None = None  # the model.json this card was read from (None if synthesised)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def user_inputs(self) -> list[str]:
        """The images the user gives, in card order: each input, or the one it is derived from
        (``gradient_map`` -> ``T2``), once each."""
        names: list[str] = []
        for spec in self.inputs:
            name = spec.derived_from or spec.name
            if name not in names:
                names.append(name)
        return names

    @property
    def num_input_channels(self) -> int:
        return len(self.inputs)

    @property
    def num_output_channels(self) -> int:
        """Network output channels: one per label for softmax, GTVp/GTVn maps for sigmoid regions."""
        return len(self.labels) if self.output == "softmax" else len(self.labels) - 1

    def to_dict(self) -> dict[str, Any]:
        out = {JSON_KEYS.get(k, k): v for k, v in asdict(self).items() if k not in ("extra", "path")}
        out["inputs"] = [i.to_dict() for i in self.inputs]
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: object, path: str | Path | None = None) -> "ModelCard":
        """Validate a parsed model.json; every problem raises ModelError naming the field."""
        where = path if path is not None else "model.json"
        if not isinstance(data, dict):
            _bad(where, "is not a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            _bad(where, f"misses the field(s) {', '.join(missing)}")
        if data["format"] != CARD_FORMAT:
            _bad(where, f"has format {data['format']!r}, expected {CARD_FORMAT!r}",
                 "convert the card or update HNTumorSeg")
        for key in ("id", "title"):
            if not isinstance(data[key], str) or not data[key].strip():
                _bad(where, f"field {key!r} must be a non-empty string")
        origin = provenance_fields(data, where, "model card", "fix the model card (see README section 6, Models)")
        inputs = _inputs(data["inputs"], where)
        arch = data["architecture"]
        if not isinstance(arch, dict) or arch.get("name") not in ARCHITECTURES:
            _bad(where, f"architecture.name must be one of {', '.join(ARCHITECTURES)}")
        if not isinstance(arch.get("kwargs", {}), dict):
            _bad(where, "architecture.kwargs must be an object")
        labels = data["labels"]
        if (not isinstance(labels, dict) or labels.get("background") != 0
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values())
                or sorted(labels.values()) != list(range(len(labels)))):
            _bad(where, "labels must map names to 0..K-1 with background 0, e.g. "
                        '{"background": 0, "GTVp": 1, "GTVn": 2}')
        output = data.get("output", "softmax")
        if output not in NetworkOutput.values():
            _bad(where, f"output {output!r} is not one of {', '.join(NetworkOutput.values())}")
        folds = data["folds"]
        if not isinstance(folds, list) or not folds or not all(_is_fold(f) for f in folds):
            _bad(where, "folds must be a non-empty list of fold numbers (or \"all\")")
        weights = data["weights"]
        if not isinstance(weights, dict) or not all(isinstance(v, str) for v in weights.values()):
            _bad(where, 'weights must map each fold to a file name, e.g. {"0": "fold_0.pt"}')
        absent = [str(f) for f in folds if str(f) not in weights]
        if absent:
            _bad(where, f"lists fold(s) {', '.join(absent)} without a weights file")
        for name in weights.values():
            if Path(name).is_absolute() or ".." in Path(name).parts:
                _bad(where, f"weights file {name!r} must be a plain name inside the model folder")
        sha = data.get("sha256", {}) or {}
        if not isinstance(sha, dict) or not all(isinstance(v, str) and len(v) == 64 for v in sha.values()):
            _bad(where, "sha256 must map file names to 64-digit hex digests")
        spacing = _numbers(data.get("spacing"), 3, "spacing", where, positive=True)
        patch = _numbers(data.get("patch_size"), 3, "patch_size", where, positive=True, integer=True)
        margin = data.get("box_margin_vox", DEFAULT_BOX_MARGIN_VOX)
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            _bad(where, f"box_margin_vox must be a whole number of voxels >= 0, got {margin!r}",
                 f"set \"box_margin_vox\": {DEFAULT_BOX_MARGIN_VOX} (seed 003's inference margin) or leave it out")
        pet_unit = PetUnit.lookup(data.get("pet_unit", PetUnit.SUV))
        if pet_unit is not PetUnit.SUV:   # the one PET path gives models SUV (dicom/pet_units.py)
            _bad(where, f"pet_unit {data.get('pet_unit')!r} is not supported: PET is given to models in SUV",
                 'set "pet_unit": "SUV" or leave it out')
        tta = data.get("tta_axes", [0, 1, 2])
        if not isinstance(tta, list) or not all(a in (0, 1, 2) for a in tta):
            _bad(where, "tta_axes must be a list drawn from 0, 1, 2")
        known = {JSON_KEYS.get(f, f) for f in cls.__dataclass_fields__ if f not in ("extra", "path")}
        return cls(
            id=data["id"], title=data["title"], inputs=inputs, architecture=dict(arch), labels=dict(labels),
            folds=[f if f == "all" else int(f) for f in folds], weights={str(k): v for k, v in weights.items()},
            format=data["format"], version=str(data.get("version", "1")), task=origin["task"],
            spacing_xyz=spacing, patch_size_zyx=patch, box_margin_vox=int(margin), pet_unit=PetUnit.SUV, output=output, sha256=dict(sha),
            postprocess=dict(data.get("postprocess") or {}), tta_axes=list(tta),
            licence=origin["licence"], source=origin["source"], citation=origin["citation"],
            intended_use=str(data.get("intended_use", "")),
            extra={k: v for k, v in data.items() if k not in known},
            path=Path(path) if path is not None else None,
        )


class Provenance(TypedDict):
    """What a model is for and where it comes from: the fields a model card, a catalogue entry and
    a declaration share (each keeps them as plain fields of these types)."""

    task: Task | None
    licence: str
    citation: str
    source: str


def provenance_fields(data: dict[str, Any], where: str | Path | None, what: str, fix: str) -> Provenance:
    """``task``, ``licence``, ``citation``, ``source`` of a model card, a catalogue entry or a
    declaration, converted once: the task a :class:`~HNTumorSegLib.vocab.Task` (or None), the
    others strings (absent or null: ``""``). Why one converter: the three files share these
    words, so they must mean one type each (``Testing/test_models_types.py`` checks it).

    An unknown task is a ModelError naming ``what`` (``"model card"``) and the file.
    """
    try:
        task = Task.parse_optional(data.get("task"), "task")
    except InputError as exc:  # keep its "did you mean"; the message says which file
        raise ModelError(f"{what} {exc.problem}: {exc.fix}", where, fix) from None
    return Provenance(task=task, licence=str(data.get("licence") or ""), citation=str(data.get("citation") or ""),
                      source=str(data.get("source") or ""))


def read_card(path: str | Path) -> ModelCard:
    """Read and validate ``model.json`` (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    if not path.is_file():
        raise ModelError("model card not found", path, "give a model folder holding model.json")
    data = read_json(path, "model card", "fix or re-download the model", error=ModelError)  # strict, depth-limited
    return ModelCard.from_dict(data, path)


def write_card(card: ModelCard | dict, path: str | Path) -> Path:
    """Write a card (validated first) as pretty JSON; returns the file written."""
    data = card.to_dict() if isinstance(card, ModelCard) else card
    ModelCard.from_dict(data, path)
    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    return write_json_atomic(path, data)


def _bad(where: str | Path, problem: str, fix: str = "fix the model card (see README section 6, Models)") -> NoReturn:
    raise ModelError(f"model card {problem}", where, fix)


def _is_fold(f: object) -> bool:
    """``"all"``, or a whole number >= 0 (an int or its digits; not a bool, not ``1.5``)."""
    if f == "all":
        return True
    if not isinstance(f, (int, str)) or isinstance(f, bool):
        return False
    try:
        return int(f) >= 0 and str(int(f)) == str(f).strip()
    except ValueError:
        return False


def _inputs(raw: object, where: str | Path) -> list[InputSpec]:
    if not isinstance(raw, list) or not raw:
        _bad(where, "inputs must be a non-empty list")
    out: list[InputSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            _bad(where, f"inputs[{i}] needs a name")
        norm = item.get("normalisation", {"type": "zscore"})
        if not isinstance(norm, dict) or norm.get("type") not in NORMALISATIONS:
            _bad(where, f"inputs[{i}] ({item['name']}) normalisation type must be one of "
                        f"{', '.join(NORMALISATIONS)}")
        lacking = [k for k in NORMALISATIONS[norm["type"]]
                   if not isinstance(norm.get(k), (int, float)) or not math.isfinite(norm[k])]
        if lacking:
            _bad(where, f"inputs[{i}] ({item['name']}) normalisation {norm['type']!r} needs numbers "
                        f"for {', '.join(lacking)}")
        derived = item.get("derived_from")
        if derived is not None and derived not in [s.name for s in out]:
            _bad(where, f"inputs[{i}] ({item['name']}) is derived from {derived!r}, which is not an earlier input")
        out.append(InputSpec(item["name"], dict(norm), derived))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        _bad(where, "input names must be unique")
    return out


def _numbers(value: object, n: int, name: str, where: str | Path, positive: bool = False,
             integer: bool = False) -> list | None:
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        and (not positive or v > 0) and (not integer or float(v).is_integer()) for v in value)
    if not ok or not isinstance(value, list):
        _bad(where, f"{name} must be null or a list of {n} {'positive ' if positive else ''}"
                    f"{'integers' if integer else 'numbers'}")
    return [int(v) for v in value] if integer else [float(v) for v in value]
