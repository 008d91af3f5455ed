"""The model catalogue (``HNTumorSegLib/resources/models.json``) and the per-user model cache.

Each entry names a published model: id, title, task, inputs, licence, citation, the URL
of its weights, their sha256 where known, and how the download is laid out. The two
bundled demo models have a ``path`` inside the package instead of a URL. Nothing here
touches the network; :mod:`.download` does, and only when the user runs ``fetch``.

Installed models live in the cache: ``$HNTUMORSEG_CACHE``, else
``$XDG_CACHE_HOME/hntumorseg``, else ``~/.cache/hntumorseg``; one folder per id under
``models/``, written completely (a ``.complete`` marker) before it counts as installed.

Example:
    >>> entry = get_entry("GradientSegHNTS")
    >>> entry.task, entry.url
    ('midrt', 'https://github.com/Aarhus-RadOnc-AI/GradientSegHNTS')
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
COMPLETE_MARKER = ".complete"
ENTRY_KINDS = ("card", "nnunet", "segresnet", "source-only")
_REQUIRED = ("id", "title", "task", "inputs", "licence", "citation")


@dataclass
class CatalogueEntry:
    """One model of the catalogue (see the module docstring)."""

    id: str
    title: str
    task: str
    inputs: list[str]
    licence: str
    citation: str
    url: str | None = None  # where the weights file / archive is downloaded from
    sha256: str | None = None  # of the downloaded file; None = not published
    path: str | None = None  # bundled models: folder relative to the HNTumorSegLib package
    kind: str = "card"  # what the unpacked folder is (card, nnunet, segresnet) or source-only
    archive: str | None = None  # "zip" when the download is a zip to unpack
    subfolder: str | None = None  # the model folder inside the unpacked archive
    filename: str | None = None  # name of the downloaded file (default: last URL part)
    size_bytes: int | None = None
    homepage: str | None = None
    source: str | None = None  # seed paper
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def bundled(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "extra" and v not in (None, "")}
        out.update(self.extra)
        return out


def catalogue_path() -> Path:
    """``$HNTUMORSEG_CATALOGUE``, else the catalogue shipped inside the package.

    The catalogue lives in ``HNTumorSegLib/resources/models.json`` (not the extension's
    ``Resources/``) so that a pip install, the Slicer extension and a source checkout all
    carry the same single file.
    """
    env = os.environ.get("HNTUMORSEG_CATALOGUE")
    if env:
        return Path(env)
    return PACKAGE_DIR / "resources" / "models.json"


def cache_dir(override: str | Path | None = None) -> Path:
    """The per-user cache folder (not created here)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("HNTUMORSEG_CACHE"):
        return Path(os.environ["HNTUMORSEG_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hntumorseg"


def read_catalogue(path: str | Path | None = None) -> list[CatalogueEntry]:
    """All entries, validated (ModelError naming the entry and field on a problem)."""
    path = Path(path) if path else catalogue_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("model catalogue not found", path, "reinstall HNTumorSeg or set HNTUMORSEG_CATALOGUE") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model catalogue is not valid JSON ({exc})", path, "reinstall HNTumorSeg") from None
    raw = data.get("models") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise ModelError('model catalogue must hold {"models": [...]}', path, "reinstall HNTumorSeg")
    entries, seen = [], set()
    known = set(CatalogueEntry.__dataclass_fields__) - {"extra"}
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(item, dict) or any(k not in item for k in _REQUIRED):
            raise ModelError(f"catalogue entry {where} misses one of {', '.join(_REQUIRED)}", path, "fix the catalogue")
        if item["id"] in seen:
            raise ModelError(f"catalogue id {item['id']!r} appears twice", path, "fix the catalogue")
        seen.add(item["id"])
        sha = item.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise ModelError(f"catalogue entry {item['id']} has a malformed sha256", path, "fix the catalogue")
        if item.get("kind", "card") not in ENTRY_KINDS:
            raise ModelError(f"catalogue entry {item['id']} has unknown kind {item.get('kind')!r}", path,
                             f"use one of {', '.join(ENTRY_KINDS)}")
        entries.append(CatalogueEntry(**{k: v for k, v in item.items() if k in known},
                                      extra={k: v for k, v in item.items() if k not in known}))
    return entries


def get_entry(model_id: str, path: str | Path | None = None) -> CatalogueEntry:
    """The entry with this id (ModelError listing the ids when absent)."""
    entries = read_catalogue(path)
    for entry in entries:
        if entry.id == model_id:
            return entry
    raise ModelError(f"no catalogue entry named {model_id!r}", None,
                     f"choose one of: {', '.join(e.id for e in entries)}")


def install_dir(model_id: str, cache: str | Path | None = None) -> Path:
    """Where ``fetch`` puts model ``model_id``."""
    return cache_dir(cache) / "models" / model_id


def entry_model_folder(entry: CatalogueEntry, cache: str | Path | None = None) -> Path:
    """The folder load_model should open for an entry (bundled path or cache folder)."""
    if entry.bundled:
        return (PACKAGE_DIR / entry.path).resolve()
    base = install_dir(entry.id, cache)
    return base / entry.subfolder if entry.subfolder else base


def is_installed(entry: CatalogueEntry, cache: str | Path | None = None) -> bool:
    if entry.bundled:
        return entry_model_folder(entry).is_dir()
    return (install_dir(entry.id, cache) / COMPLETE_MARKER).is_file()


def installed_path(model_id: str, cache: str | Path | None = None) -> Path | None:
    """Folder of an installed / bundled catalogue model; None when the id is unknown.

    A known id that is not installed raises ModelError telling how to install it.
    """
    try:
        entries = read_catalogue()
    except ModelError:
        return None
    entry = next((e for e in entries if e.id == model_id), None)
    if entry is None:
        return None
    if entry.kind == "source-only":
        raise ModelError(f"model {model_id!r} publishes code, not weights", None,
                         f"train it with the authors' code ({entry.homepage or entry.url}) and give the results folder")
    if not is_installed(entry, cache):
        if entry.bundled:
            raise ModelError(f"bundled model {model_id!r} is missing from this installation",
                             entry_model_folder(entry), "reinstall HNTumorSeg (or run its training script)")
        raise ModelError(f"model {model_id!r} is not installed", None, f"run: hntumorseg models fetch {model_id}")
    return entry_model_folder(entry, cache)


def describe(entry: CatalogueEntry, cache: str | Path | None = None) -> dict[str, Any]:
    """The entry as a dict plus its installation state (for ``models show``)."""
    out = entry.to_dict()
    out["installed"] = is_installed(entry, cache)
    if out["installed"] or entry.bundled:
        out["folder"] = str(entry_model_folder(entry, cache))
    return out
