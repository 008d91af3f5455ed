"""``hntumorseg models import PATH_OR_ZIP [--id ID] [--configuration C] [--accept-licence]``.

For releases behind Google Drive or Dropbox (HECKTOR2025-MEDAI, UW LAIR), which no program can
fetch reliably: the user downloads by hand (the catalogue entry says where to click), then this
registers what they downloaded in the model cache, so ``--model ID`` works like a fetched model.

1. a zip is unpacked into a staging folder of the cache with :func:`.download.safe_unzip`
   (members with ``..``, absolute paths or links are refused before anything is written);
2. the model is found: nnU-Net's export layout (``Dataset*/Trainer__Plans__config/fold_k/...``, at
   any depth) - with several results folders, ``--configuration`` picks one (the configuration
   name, or the whole ``Trainer__Plans__config`` name) and without it the command lists them and
   stops (exit 2; Slicer asks in a dialog); a folder with ``model.json``; or MONAI SegResNetDS
   checkpoints ``model_0.pt`` ... (UW LAIR: one fold each, run as an ensemble) when the catalogue
   entry describes them (``segresnet`` block);
3. the licence is checked (:func:`.catalogue.check_licence`): the catalogue entry's, else the
   folder's declaration's, else "unstated" - non-commercial and unstated licences need
   ``--accept-licence``;
4. the model folder is copied to ``<cache>/models/<ID>/<name>/`` with the entry's declaration
   beside ``plans.json``, every file hashed into ``.complete`` (``models verify ID`` re-hashes).
   The user's files are never moved or changed.

Links in a folder import (issue 22), the zip rule carried over: a zip member that is a link is
refused, so a folder's link is refused too when it points outside the folder given (a link to
the password file or to ``/usr`` must never land in the cache), to a folder (it could loop or
pull in a tree), or nowhere; a link to a regular file inside the folder is copied as that
file's content. FIFOs, sockets and devices are refused (reading one would hang or never end).
Choice: refusing over "copy the content of whatever it points to" because a model folder has
no reason to reach outside itself, and a quiet copy of a system file is the harm to prevent.
Every check runs before the first byte is copied; the copy is file by file in Python, so
SIGTERM (raised as :class:`~HNTumorSegLib.cli.Terminated`) stops it at once and the ``finally``
removes the partial copy.

Example:
    $ hntumorseg models import ~/Downloads/HECKTOR2025-MEDAI.zip --id HECKTOR2025-MEDAI --accept-licence
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelError
from ..fileio import read_json
from ..vocab import ImportForm
from .catalogue import COMPLETE_MARKER, CatalogueEntry, check_licence, install_dir, read_catalogue
from .weights import sha256_file

Progress = Callable[[str, float, str], None]
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SEGRESNET_CKPT = re.compile(r"model_(\d+)\.pt")


@dataclass
class FoundModel:
    """A model found in what the user gave: its folder and its form."""

    folder: Path
    form: ImportForm


def find_models(root: Path) -> list[FoundModel]:
    """Every model folder under ``root`` (nnU-Net results folders, card folders, SegResNet checkpoint folders)."""
    from .card import CARD_NAME
    from .nnunet_folder import is_nnunet_folder

    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if folder.name.startswith(".") or "__MACOSX" in folder.parts:
            continue
        if (folder / CARD_NAME).is_file():
            found.append(FoundModel(folder, ImportForm.CARD))
        elif is_nnunet_folder(folder):
            found.append(FoundModel(folder, ImportForm.NNUNET))
        elif any(_SEGRESNET_CKPT.fullmatch(p.name) for p in folder.iterdir() if p.is_file()):
            found.append(FoundModel(folder, ImportForm.SEGRESNET_CHECKPOINTS))
    return found


def choose(found: list[FoundModel], configuration: str | None, where: Path) -> FoundModel:
    """One model: the only one, or the one ``--configuration`` names (ModelError listing them otherwise)."""
    if not found:
        raise ModelError("holds no model (no nnU-Net results folder with plans.json + dataset.json, no model.json, "
                         "no model_N.pt)", where, "give the folder or zip you downloaded, unchanged")
    if configuration:
        hits = [f for f in found if f.folder.name == configuration or f.folder.name.endswith("__" + configuration)]
        if len(hits) != 1:
            raise ModelError(f"--configuration {configuration!r} matches {len(hits)} of: "
                             f"{', '.join(f.folder.name for f in found)}", where, "give one of these names")
        return hits[0]
    if len(found) > 1:
        raise ModelError(f"holds {len(found)} models: {', '.join(f.folder.name for f in found)}", where,
                         "choose one with --configuration NAME")
    return found[0]


def _check_structure(model: FoundModel) -> None:
    from .nnunet_folder import available_folds, find_checkpoint

    if model.form is not ImportForm.NNUNET:
        return
    folds = available_folds(model.folder)
    if not folds:
        raise ModelError("nnU-Net results folder without fold_N/ subfolders", model.folder,
                         "download the whole folder including fold_0 ... fold_4")
    for fold in folds:
        find_checkpoint(model.folder / f"fold_{fold}")


def _entry_for(model_id: str) -> CatalogueEntry | None:
    return next((e for e in read_catalogue() if e.id == model_id), None)


def _licence(entry: CatalogueEntry | None, model: FoundModel) -> tuple[str, str]:
    """(terms, licence text): the catalogue entry's, else the declaration's, else unstated."""
    if entry is not None:
        return entry.licence_terms, entry.licence
    from .declaration import DECLARATION_NAME

    decl = model.folder / DECLARATION_NAME
    if decl.is_file():
        data = read_json(decl, "declaration", "fix or delete the file", error=ModelError)
        if isinstance(data, dict) and data.get("licence_terms") in ("open", "non-commercial", "unstated"):
            return data["licence_terms"], str(data.get("licence") or "")
    return "unstated", "not stated (imported without a catalogue entry)"


def import_model(source: str | Path, model_id: str | None = None, configuration: str | None = None,
                 accept_licence: bool = False, cache: str | Path | None = None,
                 progress: Progress | None = None, force: bool = False) -> Path:
    """Register a downloaded model in the cache (module docstring); returns its folder."""
    from .download import safe_unzip

    progress = progress or (lambda stage, fraction, message: None)
    source = Path(source).expanduser()
    if not source.exists():
        raise ModelError("not found", source, "give the folder or zip you downloaded")
    is_zip = source.is_file() and source.suffix.lower() == ".zip"
    if source.is_file() and not is_zip:
        raise ModelError("is a single file; import a folder or a .zip", source,
                         "give the whole downloaded folder (or the zip)")
    model_id = model_id or re.sub(r"\.zip$", "", source.name, flags=re.I)
    if not _ID.fullmatch(model_id):
        raise ModelError(f"model id {model_id!r} must be letters, digits, '.', '_' or '-'", None, "give --id ID")
    entry = _entry_for(model_id)
    final = install_dir(model_id, cache)
    if (final / COMPLETE_MARKER).is_file() and not force:
        raise ModelError(f"model {model_id!r} is already installed", final, "add --force to replace it")
    from .download import check_cache_writable

    check_cache_writable(final.parent)   # a read-only cache is one line, before anything is unpacked
    staging = final.with_name(final.name + ".import-staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        root = source
        if is_zip:
            progress("unpack", 0.0, f"checking and unpacking {source.name}")
            safe_unzip(source, staging / "unzipped")
            root = staging / "unzipped"
        model = choose(find_models(root), configuration, source)
        _check_structure(model)
        terms, licence = _licence(entry, model)
        check_licence(terms, licence, accept_licence, model_id)
        target = staging / "model" / model.folder.name
        progress("unpack", 0.3, f"copying {model.folder.name}")
        if is_zip:
            target.parent.mkdir(parents=True)
            os.replace(model.folder, target)
        else:
            _copy_folder(_folder_files(model.folder, source), target)
        if model.form is ImportForm.SEGRESNET_CHECKPOINTS:
            target = _segresnet_folder(entry, target, model_id)
        _declare(entry, target)
        progress("verify", 0.8, "hashing every file")
        base = staging / "model"
        files = {str(p.relative_to(base)): sha256_file(p) for p in sorted(base.rglob("*")) if p.is_file()}
        (base / COMPLETE_MARKER).write_text(json.dumps(
            {"id": model_id, "imported_from": source.name, "folder": target.name, "licence": licence,
             "licence_terms": terms, "licence_accepted": bool(accept_licence), "files": files},
            indent=1, allow_nan=False))
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(base, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / target.name


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _folder_files(folder: Path, given: Path) -> list[tuple[Path, Path]]:
    """(file to read, path relative to ``folder``) of every file to copy, links checked (module docstring).

    ``given`` is the folder the user named: links may point anywhere inside it, nowhere else.
    Raises :class:`ModelError` naming the first link or special file that is refused.
    """
    root = given.resolve()
    fix = "copy the real file into the folder (links out of it are refused, as in zip imports)"
    if not _inside(folder.resolve(), root):
        raise ModelError(f"the model folder is a link to {folder.resolve()}, outside the folder given; refused",
                         folder, fix)
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):   # never follows links to folders
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(folder)
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if stat.S_ISLNK(mode):
                real = Path(os.path.realpath(path))
                if not _inside(real, root):
                    raise ModelError(f"{rel} is a link to {real}, outside the folder given; refused", path, fix)
                if not real.is_file() or not stat.S_ISREG(real.stat().st_mode):
                    raise ModelError(f"{rel} is a link to a folder, a special file or nothing; refused", path, fix)
            elif not stat.S_ISREG(mode):
                raise ModelError(f"{rel} is not a regular file (a FIFO, socket or device); refused", path,
                                 "remove it from the model folder")
            files.append((path, rel))
    return files


def _raise(exc: OSError) -> None:
    raise exc


def _copy_folder(files: list[tuple[Path, Path]], target: Path) -> None:
    """Copy each file's content (a checked link's target) into ``target``, one by one (interruptible)."""
    target.mkdir(parents=True)
    for src, rel in files:
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def _declare(entry: CatalogueEntry | None, folder: Path) -> None:
    from .nnunet_folder import is_nnunet_folder

    if entry is None or not entry.declaration_json or not is_nnunet_folder(folder):
        return
    from .declaration import write_declaration

    dataset = read_json(folder / "dataset.json", "dataset.json", "restore it from the original folder",
                        error=ModelError)
    channels = dataset.get("channel_names", {}) if isinstance(dataset, dict) else {}
    write_declaration(folder, dict(entry.declaration_json), channels)


def _segresnet_folder(entry: CatalogueEntry | None, folder: Path, model_id: str) -> Path:
    """UW LAIR's ``model_0.pt`` ... -> a card folder with one fold per checkpoint (an ensemble)."""
    from .segresnet_checkpoint import uw_lair_card_fields, write_segresnet_card

    spec = (entry.extra.get("segresnet") if entry is not None else None) or {}
    if not spec:
        raise ModelError("holds MONAI checkpoints (model_N.pt) without a description of their network", folder,
                         "import them with the --id of their catalogue entry (e.g. --id UW-LAIR-hntsmrg24-task1)")
    numbered = {p: m for p in folder.iterdir() if (m := _SEGRESNET_CKPT.fullmatch(p.name))}
    checkpoints = sorted(numbered, key=lambda p: int(numbered[p].group(1)))
    write_segresnet_card(folder, model_id, checkpoints, **uw_lair_card_fields(spec, entry))
    return folder
