"""Installed models as ``models list`` and ``models show`` see them, read without loading weights.

* :func:`imported_models`: models in the cache under an id of their own (``models import`` without a
  catalogue entry), from their install manifests;
* :func:`model_folder_for`: the folder of a path, a bundled / fetched / imported id (None when not installed);
* :func:`channel_lines`: what will be fed to each channel of a model folder - for an nnU-Net folder
  from ``dataset.json`` and its declaration (:mod:`.declaration`), for a card from its inputs.

Example (the bundled demo model; a fetched id such as ``GradientSegHNTS-resenc-bs8`` reads the same):
    >>> folder = model_folder_for("demo-midrt")
    >>> folder.name
    'demo-midrt'
    >>> for line in channel_lines(folder):
    ...     print(line)
    channels:
    task: midrt
    channel 0 'T2': T2 image (--input T2=PATH), normalisation {"type": "zscore"}
    channel 1 'gradient_map': gradient_map made from T2, normalisation {"type": "none"}
    >>> imported_models("empty-cache")          # nothing imported into this cache yet
    []
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError
from ..fileio import loads_json
from .catalogue import COMPLETE_MARKER, cache_dir, installed_path


def imported_models(cache: str | Path | None = None) -> list[dict]:
    """One dict per installed model folder of the cache (id, folder, licence, task, inputs)."""
    root = cache_dir(cache) / "models"
    out = []
    for marker in sorted(root.glob(f"*/{COMPLETE_MARKER}")) if root.is_dir() else []:
        try:
            data = loads_json(marker.read_bytes(), "install manifest", marker)   # depth-limited (one reader)
        except (OSError, ValueError):
            continue
        info = {"id": marker.parent.name, "folder": str(marker.parent / data.get("folder", "")),
                "licence": data.get("licence", ""), "licence_terms": data.get("licence_terms", "unstated")}
        folder = Path(info["folder"])
        try:
            task, inputs = _task_and_inputs(folder)
        except ModelError:
            task, inputs = None, []
        info.update(task=task, inputs=inputs)
        out.append(info)
    return out


def model_folder_for(target: str, cache: str | Path | None = None) -> Path | None:
    """A model folder for a path or an installed id; None when the id is known but not installed."""
    path = Path(target).expanduser()
    if path.is_dir():
        return path
    if any(sep in target for sep in ("/", "\\")):
        raise ModelError("model folder not found", path, "check the path")
    try:
        return installed_path(target, cache)
    except ModelError:
        return None


def _nnunet_folder(folder: Path) -> Path | None:
    from .nnunet_folder import is_nnunet_folder

    if is_nnunet_folder(folder):
        return folder
    inner = [c for c in sorted(folder.iterdir()) if c.is_dir() and is_nnunet_folder(c)] if folder.is_dir() else []
    return inner[0] if len(inner) == 1 else None


def _task_and_inputs(folder: Path) -> tuple[str | None, list[str]]:
    from .card import CARD_NAME, read_card

    if (folder / CARD_NAME).is_file():
        card = read_card(folder / CARD_NAME)
        names = []
        for spec in card.inputs:
            name = spec.derived_from or spec.name
            if name not in names:
                names.append(name)
        return card.task, names
    nn = _nnunet_folder(folder)
    if nn is not None:
        decl = _declaration(nn)
        return (None if decl.task is None else str(decl.task)), decl.user_inputs
    return None, []


def _declaration(folder: Path):
    from .declaration import read_declaration

    from ..fileio import read_json

    data = read_json(folder / "dataset.json", "dataset.json", "restore it from the original folder", error=ModelError)
    data = data if isinstance(data, dict) else {}
    channels = data.get("channel_names") or data.get("modality") or {}
    return read_declaration(folder, channels)


def channel_lines(folder: Path) -> list[str]:
    """Human lines: the task, the crop and what each channel gets."""
    from .card import CARD_NAME, read_card

    folder = Path(folder)
    if (folder / CARD_NAME).is_file():
        card = read_card(folder / CARD_NAME)
        lines = ["channels:", f"task: {card.task or '-'}"]
        if card.extra.get("axis_order"):
            lines.append(f"array axis order of the network: {card.extra['axis_order']}")
        if len(card.folds) > 1:
            lines.append(f"ensemble of {len(card.folds)} checkpoints (probabilities averaged)")
        for i, spec in enumerate(card.inputs):
            norm = json.dumps(spec.normalisation, sort_keys=True)
            what = (f"{spec.name} made from {spec.derived_from}" if spec.derived_from
                    else f"{spec.name} image (--input {spec.name}=PATH)")
            lines.append(f"channel {i} {spec.name!r}: {what}, normalisation {norm}")
        return lines
    nn = _nnunet_folder(folder)
    if nn is None:
        return []
    decl = _declaration(nn)
    lines = ["channels:", f"task: {decl.task or '-'}"
             + ("" if decl.declared else " (inferred from the channel names: no declaration file)")]
    if decl.crop:
        c = decl.crop
        lines.append(f"crop: {c['recipe']} {c['size_mm'][0]:g} x {c['size_mm'][1]:g} x {c['size_mm'][2]:g} mm at "
                     f"{c['spacing_mm']:g} mm, predicted on the crop and pasted back onto the CT grid")
    for ch in decl.channels:
        lines.append(f"channel {ch.index} {ch.name!r}: {ch.describe(decl.box_margin_vox)}")
    lines.append("then nnU-Net's own preprocessing (plans.json) and sliding window")
    return lines


def declared_channel_lines(declaration: dict) -> list[str]:
    """:func:`channel_lines` for a catalogue entry's ``declaration`` block (a model not installed yet)."""
    from .declaration import parse_declaration

    raw = declaration.get("channels") or {}
    names = {k: (v.get("input") or v.get("derived")) if isinstance(v, dict) else str(v) for k, v in raw.items()}
    decl = parse_declaration(declaration, names)
    lines = ["channels (declared by the catalogue; the model is not installed):", f"task: {decl.task or '-'}"]
    if decl.crop:
        c = decl.crop
        lines.append(f"crop: {c['recipe']} {c['size_mm'][0]:g} x {c['size_mm'][1]:g} x {c['size_mm'][2]:g} mm at "
                     f"{c['spacing_mm']:g} mm, predicted on the crop and pasted back onto the CT grid")
    lines += [f"channel {ch.index}: {ch.describe(decl.box_margin_vox)}" for ch in decl.channels]
    return lines
