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
    >>> str(entry.task), entry.homepage
    ('midrt', 'https://huggingface.co/JintaoRen/GradientSegHNTS')
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError
from ..vocab import LicenceTerms, ModelKind, Task
from .card import provenance_fields
from ..fileio import loads_json, read_json

PACKAGE_DIR = Path(__file__).resolve().parents[1]
COMPLETE_MARKER = ".complete"
SOURCE_ONLY = "source-only"
#: what an entry's folder loads as (a :class:`~HNTumorSegLib.vocab.ModelKind`), or code without weights.
EntryKind = ModelKind | Literal["source-only"]
ENTRY_KINDS: tuple[str, ...] = (*ModelKind.values(), SOURCE_ONLY)
#: Python field -> models.json key, where they differ (the class docstring says why).
JSON_KEYS = {"input_names": "inputs", "download_sha256": "sha256", "bundled_path": "path",
             "declaration_json": "declaration"}
#: licence terms that need ``--accept-licence`` (a dialog in Slicer) before fetch, import or use.
LICENCE_TERMS = LicenceTerms.values()   # the words: vocab.LicenceTerms
_REQUIRED = ("id", "title", "task", "inputs", "licence", "citation")


@dataclass
class CatalogueEntry:
    """One model of the catalogue (see the module docstring).

    Words it shares with :class:`~.card.ModelCard` and :class:`~.declaration.Declaration` have
    their types (``task``, ``licence``, ``citation``, ``source``: :func:`~.card.provenance_fields`;
    ``input_names`` a list of names like ``ModelCard.input_names``); its own JSON keys that name
    something else there are Python fields of their own name (:data:`JSON_KEYS`): ``sha256`` (of the
    download, not of each file) is ``download_sha256``, ``path`` (a bundled folder, not a
    model.json) is ``bundled_path``, ``declaration`` (the JSON block, not a parsed
    :class:`~.declaration.Declaration`) is ``declaration_json``.
    """

    id: str
    title: str
    task: Task | None
    input_names: list[str]  # JSON "inputs": the images the user gives
    licence: str
    citation: str
    url: str | None = None  # where the weights file / archive is downloaded from
    download_sha256: str | None = None  # JSON "sha256": of the downloaded file; None = not published
    bundled_path: str | None = None  # JSON "path": bundled models' folder relative to the HNTumorSegLib package
    kind: EntryKind = ModelKind.CARD  # what the unpacked folder loads as, or "source-only"
    archive: str | None = None  # "zip" when the download is a zip to unpack
    subfolder: str | None = None  # the model folder inside the unpacked archive
    filename: str | None = None  # name of the downloaded file (default: last URL part)
    size_bytes: int | None = None
    homepage: str | None = None
    source: str = ""  # seed paper
    notes: str = ""
    hub: dict[str, Any] | None = None  # Hugging Face: repo_id, revision, folder, sha256 {path: hex} (models/hub.py)
    manual: dict[str, Any] | None = None  # download by hand: page, clicks, command (then `models import`)
    declaration_json: dict[str, Any] | None = None  # JSON "declaration": written beside plans.json on install
    licence_terms: str = "open"  # open | non-commercial | unstated: the last two need --accept-licence
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bundled(self) -> bool:
        return self.bundled_path is not None

    @property
    def source_kind(self) -> str:
        """Where the weights come from: bundled, hub, url, manual (download by hand + import) or code."""
        if self.bundled:
            return "bundled"
        if self.kind == "source-only":
            return "code"
        if self.hub:
            return "hub"
        if self.manual:
            return "manual"
        return "url"

    @property
    def needs_acceptance(self) -> bool:
        return self.licence_terms != "open"

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``models.json`` spells it (``models show``)."""
        out = {JSON_KEYS.get(k, k): v for k, v in asdict(self).items() if k != "extra" and v not in (None, "")}
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
    if not path.is_file():
        raise ModelError("model catalogue not found", path, "reinstall HNTumorSeg or set HNTUMORSEG_CATALOGUE")
    data = read_json(path, "model catalogue", "reinstall HNTumorSeg", error=ModelError)  # strict, depth-limited
    raw = data.get("models") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise ModelError('model catalogue must hold {"models": [...]}', path, "reinstall HNTumorSeg")
    entries: list[CatalogueEntry] = []
    seen: set[str] = set()
    fields = {JSON_KEYS.get(f, f): f for f in CatalogueEntry.__dataclass_fields__ if f != "extra"}
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
        if item.get("licence_terms", "open") not in LICENCE_TERMS:
            raise ModelError(f"catalogue entry {item['id']} has unknown licence_terms {item.get('licence_terms')!r}",
                             path, f"use one of {', '.join(LICENCE_TERMS)}")
        if item.get("kind", "card") not in ENTRY_KINDS:
            raise ModelError(f"catalogue entry {item['id']} has unknown kind {item.get('kind')!r}", path,
                             f"use one of {', '.join(ENTRY_KINDS)}")
        kind = item.get("kind", "card")
        values = {fields[k]: v for k, v in item.items() if k in fields}
        values.update(provenance_fields(item, path, f"catalogue entry {item['id']}", "fix the catalogue"),
                      kind=SOURCE_ONLY if kind == SOURCE_ONLY else ModelKind.parse(kind))
        entries.append(CatalogueEntry(**values, extra={k: v for k, v in item.items() if k not in fields}))
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
        return (PACKAGE_DIR / str(entry.bundled_path)).resolve()
    base = install_dir(entry.id, cache)
    recorded = manifest_folder(base)
    if recorded is not None:   # hub fetch and import record the results folder they installed
        return recorded
    return base / entry.subfolder if entry.subfolder else base


def manifest_folder(base: Path) -> Path | None:
    """The model folder an install manifest (``.complete``) names, if it names one."""
    marker = base / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        folder = loads_json(marker.read_bytes(), "install manifest", marker).get("folder")   # depth-limited
    except (OSError, ValueError, AttributeError):
        return None
    return base / folder if isinstance(folder, str) and folder and "/" not in folder and folder != ".." else None


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
    if entry is None:   # a model imported under an id of its own
        return manifest_folder(install_dir(model_id, cache)) if "/" not in model_id else None
    if entry.kind == SOURCE_ONLY:
        raise ModelError(f"model {model_id!r} publishes code, not weights", None,
                         f"train it with the authors' code ({entry.homepage or entry.url}) and give the results folder")
    if not is_installed(entry, cache):
        if entry.manual:
            raise ModelError(f"model {model_id!r} is not installed: its authors share it by hand", None,
                             manual_instructions(entry))
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


def manual_instructions(entry: CatalogueEntry) -> str:
    """One sentence: where to click and what to run for an entry downloaded by hand."""
    m = entry.manual or {}
    return (f"open {m.get('page')}, {m.get('clicks')}, then run: {m.get('command')}"
            if m else f"see {entry.homepage or entry.url}")


def check_licence(entry_or_terms, licence: str, accepted: bool, what: str) -> None:
    """Refuse a non-commercial or unstated licence unless the user accepted it (``--accept-licence``).

    Example:
        >>> check_licence("non-commercial", "CC-BY-NC-4.0", accepted=False, what="HECKTOR2025-MEDAI")
        Traceback (most recent call last):
        HNTumorSegLib.errors.ModelError: HECKTOR2025-MEDAI is licensed CC-BY-NC-4.0 (non-commercial: ...
    """
    terms = entry_or_terms.licence_terms if isinstance(entry_or_terms, CatalogueEntry) else str(entry_or_terms)
    if terms == "open" or accepted:
        return
    reason = ("non-commercial: research and other non-commercial use only" if terms == "non-commercial"
              else "no licence stated by the authors: all rights reserved unless they grant them")
    raise ModelError(f"{what} is licensed {licence} ({reason}); its licence was not accepted", None,
                     "read the licence, then add --accept-licence (in Slicer: accept the licence dialog)")
