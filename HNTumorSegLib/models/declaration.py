"""The declaration of a model folder we did not train: ``hntumorseg-declaration.json``.

An nnU-Net results folder says which channels it reads (``dataset.json`` ``channel_names``)
but not what the seeds did *before* nnU-Net saw the images: seed 003 (GradientSegHNTS) feeds a
gradient map computed from the T2 inside the registered pre-RT lesions' boxes; seed 004
(HECKTOR2025-MEDAI) trains on a 200 x 200 x 310 mm head crop at 1 mm. The declaration is a
small JSON sidecar written beside ``plans.json`` (by ``models import``, by ``models fetch`` from
the catalogue entry's ``declaration`` block, or by hand) that says:

* ``task``: prert, midrt or petct;
* ``channels``: for each nnU-Net channel index, its role: ``{"input": "T2"}`` (an image the user
  gives) or ``{"derived": "gradient", "from": "T2", "recipe": "seed003"}`` (made here);
* ``crop``: ``null`` (the whole image) or ``{"recipe": "seed004-head", "size_mm": [200, 200, 310],
  "spacing_mm": 1.0}`` (crop, predict, paste back onto the CT grid);
* ``box_margin_vox``: the fixed margin of the gradient map's boxes (4 for seed 003: its released
  code draws a margin at random, we fix one, :mod:`.card` says why);
* ``checkpoint``: which checkpoint each fold runs when ``--checkpoint`` does not say
  (``checkpoint_final`` / ``checkpoint_best``, :class:`~HNTumorSegLib.vocab.Checkpoint`; absent: the
  loader's default, :data:`~.nnunet_folder.DEFAULT_CHECKPOINT`);
* ``licence``, ``citation``, ``source``: shown by ``models show`` and before use.

Channel names that are clear are recognised without a declaration (:func:`infer_declaration`):
``T2``/``T2w``/``MRI`` -> input T2; ``gradient``/``gradient_map``/``grad`` -> the seed-003 gradient
map from the T2; ``CT`` and ``PET`` -> inputs. A folder with no declaration never gets a crop
(no channel name says "trained on a crop"): seed-004 folders need the declaration.

Example:
    >>> folder = Path("results"); folder.mkdir()     # an nnU-Net results folder without a declaration:
    >>> decl = read_declaration(folder, {"0": "T2", "1": "gradient"})    # inferred from the channel names
    >>> str(decl.task), [str(name) for name in decl.user_inputs], [c.describe() for c in decl.channels]
    ('midrt', ['T2'], ['T2 image (--input T2=PATH)', 'gradient map made from T2 (seed003 recipe: boxes ...)'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError
from ..fileio import read_json, write_json_atomic
from ..prompts.extents import HEAD_CROP_MM, HEAD_CROP_SPACING_MM
from ..vocab import Checkpoint, DerivedChannel, InputRole, Task
from .card import DEFAULT_BOX_MARGIN_VOX, provenance_fields

DECLARATION_NAME = "hntumorseg-declaration.json"
DECLARATION_FORMAT = "hntumorseg-declaration/1"
DERIVED_RECIPES = {"gradient": "seed003"}
CROP_RECIPES = ("seed004-head",)
SEED004_CROP = {"recipe": "seed004-head", "size_mm": list(HEAD_CROP_MM), "spacing_mm": HEAD_CROP_SPACING_MM}


@dataclass(frozen=True)
class ChannelRole:
    """What nnU-Net channel ``index`` is fed: a user image (``input``) or a derived map."""

    index: int
    name: str                        # dataset.json's channel name
    input: str | None = None         # the --input NAME for a user image
    derived: str | None = None       # "gradient"
    source: str | None = None        # the input it is derived from ("T2")
    recipe: str | None = None        # "seed003"

    @property
    def image(self) -> str:
        """The user's image this channel reads: itself (an input) or the one it is made from."""
        return self.input or self.source or self.name

    def describe(self, margin_vox: int = DEFAULT_BOX_MARGIN_VOX) -> str:
        """One line for ``models show``: what is fed to this channel."""
        if self.input:
            return f"{self.input} image (--input {self.input}=PATH)"
        return (f"gradient map made from {self.source} ({self.recipe} recipe: boxes around each 6-connected "
                f"lesion of the prior, margin {margin_vox} voxels, Gaussian gradient magnitude sigma 1 voxel, "
                f"min-max, x2, clip 1, 0 outside boxes, on the {self.source} grid)")

    def to_dict(self) -> dict:
        if self.input:
            return {"input": self.input}
        return {"derived": self.derived, "from": self.source, "recipe": self.recipe}


@dataclass
class Declaration:
    """A folder's declaration (module docstring); ``declared`` is False when inferred from names."""

    task: Task | None
    channels: list[ChannelRole]
    crop: dict[str, Any] | None = None
    box_margin_vox: int = DEFAULT_BOX_MARGIN_VOX
    licence: str = ""
    citation: str = ""
    source: str = ""
    declared: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None

    @property
    def user_inputs(self) -> list[str]:
        """Images the user gives, first = output grid (derived channels' sources included once)."""
        names: list[str] = []
        for ch in self.channels:
            if ch.image not in names:
                names.append(ch.image)
        return names

    @property
    def derived(self) -> list[ChannelRole]:
        return [c for c in self.channels if c.derived]

    @property
    def needs_seed_steps(self) -> bool:
        return bool(self.derived or self.crop)

    def to_dict(self) -> dict:
        out = {"format": DECLARATION_FORMAT, "task": None if self.task is None else str(self.task),
               "channels": {str(c.index): c.to_dict() for c in self.channels}, "crop": self.crop,
               "box_margin_vox": self.box_margin_vox, "licence": self.licence, "citation": self.citation,
               "source": self.source}
        if self.checkpoint is not None:
            out["checkpoint"] = str(self.checkpoint)
        out.update(self.extra)
        return out


def _role_from_name(index: int, name: str) -> ChannelRole:
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")   # the spellings: vocab.ALIASES
    if DerivedChannel.lookup(key) is DerivedChannel.GRADIENT:
        return ChannelRole(index, name, derived=DerivedChannel.GRADIENT, source=InputRole.T2, recipe="seed003")
    role = InputRole.lookup(key)
    return ChannelRole(index, name, input=str(name) if role is None else role)


def _infer_task(roles: list[ChannelRole]) -> Task | None:
    inputs = {r.input for r in roles if r.input}
    if any(r.derived == "gradient" for r in roles):
        return Task.MIDRT
    if {"CT", "PET"} <= inputs:
        return Task.PETCT
    return None


def infer_declaration(channel_names: dict) -> Declaration:
    """A declaration from clear channel names alone (module docstring); no crop."""
    roles = [_role_from_name(int(k), v) for k, v in sorted(channel_names.items(), key=lambda kv: int(kv[0]))]
    return Declaration(task=_infer_task(roles), channels=roles)


def _parse_role(index: int, name: str, raw: object, path: Path) -> ChannelRole:
    if isinstance(raw, str):
        raw = {"input": raw}
    if not isinstance(raw, dict) or not (("input" in raw) ^ ("derived" in raw)):
        raise ModelError(f"channel {index} must be {{\"input\": NAME}} or {{\"derived\": \"gradient\", \"from\": NAME}}",
                         path, "fix the declaration")
    if "input" in raw:
        return ChannelRole(index, name, input=str(raw["input"]))
    kind = str(raw["derived"])
    if kind not in DERIVED_RECIPES:
        raise ModelError(f"channel {index}: unknown derived channel {kind!r}", path,
                         f"use one of {', '.join(DERIVED_RECIPES)}, or give it as an input image")
    recipe = str(raw.get("recipe", DERIVED_RECIPES[kind]))
    if recipe != DERIVED_RECIPES[kind]:
        raise ModelError(f"channel {index}: unknown recipe {recipe!r} for {kind}", path,
                         f"use {DERIVED_RECIPES[kind]!r}")
    return ChannelRole(index, name, derived=kind, source=str(raw.get("from", "T2")), recipe=recipe)


def parse_declaration(data: dict, channel_names: dict, path: Path | None = None) -> Declaration:
    """Validate a declaration dict against the folder's ``channel_names`` (ModelError naming the field)."""
    path = Path(path) if path else Path(DECLARATION_NAME)
    if not isinstance(data, dict):
        raise ModelError("a declaration must be a JSON object", path, "fix the declaration")
    raw_channels = data.get("channels") or {}
    if not isinstance(raw_channels, dict):
        raise ModelError("'channels' must map channel indices to roles", path, "fix the declaration")
    names = {str(k): v for k, v in channel_names.items()}
    if raw_channels and set(map(str, raw_channels)) != set(names):
        raise ModelError(f"declares channels {sorted(map(str, raw_channels))}, the folder has {sorted(names)}",
                         path, "declare every channel of dataset.json, and only those")
    roles = []
    for key in sorted(names, key=int):
        raw = raw_channels.get(key) if raw_channels else None
        roles.append(_role_from_name(int(key), names[key]) if raw is None
                     else _parse_role(int(key), names[key], raw, path))
    crop = data.get("crop")
    if crop is not None:
        if isinstance(crop, str):
            crop = {"recipe": crop}
        if not isinstance(crop, dict) or crop.get("recipe") not in CROP_RECIPES:
            raise ModelError(f"unknown crop {crop!r}", path, f"use null or {{\"recipe\": \"{CROP_RECIPES[0]}\"}}")
        crop = {**SEED004_CROP, **crop}
        size = crop["size_mm"]
        if not (isinstance(size, list) and len(size) == 3 and all(float(s) > 0 for s in size)
                and float(crop["spacing_mm"]) > 0):
            raise ModelError("crop size_mm must be 3 positive numbers (x, y, z) and spacing_mm positive", path,
                             "fix the declaration")
        crop = {"recipe": crop["recipe"], "size_mm": [float(s) for s in size], "spacing_mm": float(crop["spacing_mm"])}
    margin = data.get("box_margin_vox", DEFAULT_BOX_MARGIN_VOX)
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ModelError(f"box_margin_vox must be an integer >= 0, not {margin!r}", path, "fix the declaration")
    origin = provenance_fields(data, path, "declaration", "fix the declaration")
    known = {"format", "task", "channels", "crop", "box_margin_vox", "licence", "citation", "source", "checkpoint"}
    return Declaration(task=origin["task"] or _infer_task(roles), channels=roles, crop=crop, box_margin_vox=margin,
                       licence=origin["licence"], citation=origin["citation"], source=origin["source"], declared=True,
                       extra={k: v for k, v in data.items() if k not in known},
                       checkpoint=_checkpoint_field(data, path))


def _checkpoint_field(data: dict, path: Path) -> Checkpoint | None:
    try:
        return Checkpoint.parse_optional(data.get("checkpoint"), "checkpoint")
    except InputError as exc:
        raise ModelError(exc.problem, path, exc.fix) from None


def declared_checkpoint(folder: str | Path) -> Checkpoint | None:
    """The ``"checkpoint"`` the folder's declaration names (None: no declaration, or it names none).

    Example:
        >>> folder = Path("declared"); folder.mkdir()
        >>> declared_checkpoint(folder) is None
        True
        >>> _ = write_json_atomic(folder / DECLARATION_NAME, {"format": DECLARATION_FORMAT, "checkpoint": "best"})
        >>> declared_checkpoint(folder)
        <Checkpoint.BEST: 'checkpoint_best'>
    """
    path = Path(folder) / DECLARATION_NAME
    if not path.is_file():
        return None
    data = read_json(path, "declaration", "fix or delete the file", error=ModelError)
    return _checkpoint_field(data, path) if isinstance(data, dict) else None


def read_declaration(folder: str | Path, channel_names: dict) -> Declaration:
    """The folder's declaration (the sidecar, else one inferred from the channel names)."""
    path = Path(folder) / DECLARATION_NAME
    if not path.is_file():
        return infer_declaration(channel_names)
    data = read_json(path, "declaration", "fix or delete the file", error=ModelError)  # strict, depth-limited
    return parse_declaration(data, channel_names, path)


def write_declaration(folder: str | Path, data: dict, channel_names: dict) -> Path:
    """Validate ``data`` and write it beside ``plans.json`` (atomic)."""
    decl = parse_declaration(data, channel_names, Path(folder) / DECLARATION_NAME)
    return write_json_atomic(Path(folder) / DECLARATION_NAME, decl.to_dict())
