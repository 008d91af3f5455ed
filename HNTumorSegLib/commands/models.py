"""`hntumorseg models`: list, show, fetch and verify the models of the catalogue.

- ``list``: every catalogue model (and every model imported under an id of its own) with its
  task, inputs, source (bundled, hub, url, manual download, code only), licence and state.
- ``show ID_OR_PATH``: the whole entry (licence, citation, URL, sha256, notes, install folder) and,
  for an installed model or a model folder, what will be fed to each channel.
- ``import PATH_OR_ZIP [--id ID] [--configuration C] [--accept-licence]``: register a model
  downloaded by hand (Google Drive, Dropbox) in the cache (:mod:`HNTumorSegLib.models.importer`).
- ``fetch ID [--cache DIR] [--sha256 HEX] [--url URL]``: download with resume and a
  progress line into the per-user cache (``$HNTUMORSEG_CACHE`` or ``~/.cache/hntumorseg``),
  verify the sha256 (a mismatch deletes the file: exit 2), unpack zip archives safely.
  An entry without a published sha256 is refused unless ``--sha256`` is given. Hugging Face
  entries are fetched at their pinned commit (``--revision`` where the catalogue has none), every
  file checked against the hub's sha256 (:mod:`HNTumorSegLib.models.hub`). Non-commercial and
  unstated licences need ``--accept-licence`` (exit 2 with the reason otherwise).
- ``verify ID_OR_PATH``: re-hash an installed model (or a model folder's weights against
  its card), then load every fold strictly; prints the sha256 of a single file.

Only ``fetch`` touches the network.

Example:
    $ hntumorseg models fetch hntsmrg24-sztu-stunet-b --url https://.../weights.zip --sha256 3a7b...
    $ hntumorseg models verify ~/models/STUNetTrainer_small__nnUNetPlans__3d_fullres
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ModelError
from ..protect import check_path_kind
from ..vocab import ProgressMode

CACHE_HELP = "model cache folder (default $HNTUMORSEG_CACHE, else $XDG_CACHE_HOME/hntumorseg, else ~/.cache/hntumorseg)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p = sub.add_parser("list", help="list the catalogue's models")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p = sub.add_parser("show", help="show one catalogue entry or model folder, and what each channel is fed")
    p.add_argument("id", metavar="ID_OR_PATH")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p = sub.add_parser("fetch", help="download, verify and install a catalogue model")
    p.add_argument("id", metavar="ID")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p.add_argument("--sha256", metavar="HEX", help="checksum to require (needed when the catalogue has none)")
    p.add_argument("--url", metavar="URL", help="download from this URL instead (needs --sha256)")
    p.add_argument("--force", action="store_true", help="download again even if installed")
    p.add_argument("--progress", choices=ProgressMode.values(), default="bar",
                   help="bar: a progress line on stderr; json: progress events on stdout (Slicer)")
    p.add_argument("--revision", metavar="COMMIT", help="Hugging Face entries: the commit to fetch when the "
                   "catalogue pins none (40 hex characters)")
    p.add_argument("--accept-licence", action="store_true", help="accept a non-commercial or unstated licence")
    p = sub.add_parser("import", help="register a model you downloaded by hand (folder or zip)")
    p.add_argument("source", metavar="PATH_OR_ZIP")
    p.add_argument("--id", metavar="ID", help="the catalogue id it belongs to (default: the folder's name)")
    p.add_argument("--configuration", metavar="NAME", help="which nnU-Net results folder, when there are several "
                   "(3d_fullres, or Trainer__Plans__config)")
    p.add_argument("--accept-licence", action="store_true", help="accept a non-commercial or unstated licence")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p.add_argument("--force", action="store_true", help="replace an installed model of the same id")
    p.add_argument("--progress", choices=ProgressMode.values(), default="bar",
                   help="bar: a progress line on stderr; json: progress events on stdout (Slicer)")
    p = sub.add_parser("verify", help="check an installed model or a model folder (checksums + strict load)")
    p.add_argument("target", metavar="ID_OR_PATH")
    p.add_argument("--cache", metavar="DIR", help=CACHE_HELP)
    p.add_argument("--sha256", metavar="HEX", help="for a single file: the checksum it must have")
    p.add_argument("--no-load", action="store_true", help="only check checksums, do not load the networks")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    handlers = {"list": _list, "show": _show, "fetch": _fetch, "verify": _verify, "import": _import}
    if action is None:
        raise ModelError("no action given", None, f"use one of: hntumorseg models {{{','.join(handlers)}}}")
    return handlers[action](args)


def _state(entry, cache) -> str:
    from ..models.catalogue import is_installed

    if entry.kind == "source-only":
        return "code only"
    if entry.bundled:
        return "bundled" if is_installed(entry) else "bundled (missing)"
    return "installed" if is_installed(entry, cache) else "not installed"


def _list(args) -> int:
    from ..models.catalogue import describe, read_catalogue
    from ..models.installed import imported_models

    entries = read_catalogue()
    known = {e.id for e in entries}
    extra = [m for m in imported_models(args.cache) if m["id"] not in known]
    if args.json:
        print(json.dumps([describe(e, args.cache) for e in entries] + extra, indent=2, allow_nan=False))
        return 0
    rows = [("ID", "TASK", "INPUTS", "SOURCE", "LICENCE", "STATE", "TITLE")]
    rows += [(e.id, e.task or "", "+".join(e.input_names), e.source_kind, _short_licence(e.licence, e.licence_terms),
              _state(e, args.cache), e.title) for e in entries]
    rows += [(m["id"], m.get("task") or "-", "+".join(m.get("inputs") or []) or "-", "imported",
              _short_licence(m.get("licence", ""), m.get("licence_terms", "unstated")), "installed",
              m.get("folder", "")) for m in extra]
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(n)) + "  " + r[n])
    return 0


def _short_licence(licence: str, terms: str) -> str:
    text = (licence or "?").split(" (")[0].split(":")[0].strip()
    text = text if len(text) <= 24 else text[:23] + "~"
    return text if terms == "open" else f"{text} [{terms}]"


def _show(args) -> int:
    from ..models.catalogue import describe, get_entry, read_catalogue
    from ..models.installed import channel_lines, model_folder_for

    target = args.id
    entry = next((e for e in read_catalogue() if e.id == target), None)
    info: dict = {}
    if entry is not None:
        info = describe(entry, args.cache)
        info["state"] = _state(entry, args.cache)
    folder = model_folder_for(target, args.cache)
    if entry is None and folder is None:
        get_entry(target)   # ModelError: "no catalogue entry named ..." with the ids to choose from
    width = max([len(k) for k in info] + [8])
    for key, value in info.items():
        text = ", ".join(map(str, value)) if isinstance(value, list) else ("-" if value is None else str(value))
        print(f"{key.ljust(width)}  {text}")
    lines = channel_lines(folder) if folder is not None else []
    if folder is not None:
        print(f"{'folder'.ljust(width)}  {folder}")
    elif entry is not None and entry.declaration_json:
        from ..models.installed import declared_channel_lines

        lines = declared_channel_lines(entry.declaration_json)
    for line in lines:
        print(f"{''.ljust(width)}  {line}" if not line.endswith(":") else line)
    return 0


class _ProgressLine:
    """One self-overwriting line on stderr: stage, fraction, bytes, time left (``json``: one
    :class:`~HNTumorSegLib.protocol.ProgressEvent` per line on stdout, read by Slicer's Download/Import)."""

    def __init__(self, label: str, stream=None, enabled: bool = True, json_events: bool = False):
        self.label, self.enabled, self.width, self.json_events = label, enabled, 0, json_events
        self.stream = stream if stream is not None else sys.stderr  # looked up now: tests swap stderr

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if self.json_events:
            from ..protocol import ProgressEvent

            print(ProgressEvent(stage=stage, fraction=fraction, message=message).to_json(), flush=True)
            return
        if not self.enabled:
            return
        bar = "#" * int(20 * fraction)
        text = f"{self.label}: {stage:<8} [{bar:<20}] {message}"
        self.stream.write("\r" + text.ljust(self.width))
        self.width = len(text)
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _fetch(args) -> int:
    from ..models.catalogue import check_licence, get_entry, manual_instructions
    from ..models.download import fmt_bytes, fetch

    entry = get_entry(args.id)
    check_licence(entry, entry.licence, args.accept_licence, entry.id)
    if entry.manual:
        raise ModelError(f"model {entry.id!r} cannot be fetched by a program: its authors share it by hand", None,
                         manual_instructions(entry))
    line = _ProgressLine(f"fetch {entry.id}", enabled=args.progress == "bar", json_events=args.progress == "json")
    try:
        if not entry.hub and not entry.bundled:   # hub entries: exact size once listed, still before any byte
            size = fmt_bytes(entry.size_bytes) if entry.size_bytes else "size: as the server announces"
            line("download", 0.0, f"{entry.id}: {size}; licence {entry.licence or 'not stated'}")
        if entry.hub:
            from ..models.hub import fetch_from_hub

            folder = fetch_from_hub(entry, cache=args.cache, revision=args.revision, progress=line, force=args.force)
        else:
            folder = fetch(entry, cache=args.cache, sha256=args.sha256, progress=line, force=args.force, url=args.url)
    finally:
        line.done()
    print(f"{entry.id}: installed in {folder}")
    if entry.licence:
        print(f"licence: {entry.licence}")
    return 0


def _import(args) -> int:
    from ..models.importer import import_model

    if Path(args.source).expanduser().exists():   # a FIFO or device is named as what it is (issue 22)
        check_path_kind(Path(args.source).expanduser(), "model to import", "file or folder")
    line = _ProgressLine(f"import {args.id or Path(args.source).name}", enabled=args.progress == "bar",
                         json_events=args.progress == "json")
    try:
        folder = import_model(args.source, model_id=args.id, configuration=args.configuration,
                              accept_licence=args.accept_licence, cache=args.cache, progress=line, force=args.force)
    finally:
        line.done()
    print(f"{args.id or folder.parent.name}: installed in {folder}")
    print(f"use it with: hntumorseg segment --model {folder.parent.name} ...")
    return 0


def _verify(args) -> int:
    from ..models.catalogue import entry_model_folder, installed_path, read_catalogue

    target = args.target
    path = Path(target).expanduser()
    if path.exists():   # a FIFO or device is named as what it is (issue 22)
        check_path_kind(path, "model path", "file or folder")
    if path.is_file():
        from ..models.weights import sha256_file, verify_sha256

        if args.sha256:
            verify_sha256(path, args.sha256)
            print(f"{path}: sha256 OK")
        else:
            print(f"{sha256_file(path)}  {path}")
        return 0
    if not path.exists():
        if any(sep in target for sep in ("/", "\\")):
            raise ModelError("model folder not found", path, "check the path")
        entry = next((e for e in read_catalogue() if e.id == target), None)
        if entry is None:
            return _verify_imported(target, args)
        folder = installed_path(target, args.cache)  # raises with the fix when not installed
        if not entry.bundled:
            from ..models.download import verify_installed

            problems = verify_installed(entry, args.cache)
            if problems:
                raise ModelError(f"installed files differ from what was downloaded: {'; '.join(problems[:3])}",
                                 entry_model_folder(entry, args.cache), f"run: hntumorseg models fetch {target} --force")
            print(f"{target}: files match the verified download")
        if entry.kind == "source-only" or folder is None:
            return 0
        path = folder
    _verify_folder(path, load=not args.no_load)
    return 0


def _verify_imported(target: str, args) -> int:
    """``models verify ID`` for a model imported under an id of its own (no catalogue entry):
    the same checks as a fetched one - its install manifest's sha256s, then the folder (issue 22:
    every id ``models list`` shows is verifiable)."""
    from ..models.catalogue import install_dir
    from ..models.download import verify_installed
    from ..models.installed import imported_models

    found = next((m for m in imported_models(args.cache) if m["id"] == target), None)
    if found is None:
        raise ModelError("no model folder, no catalogue entry and no imported model of that name", target,
                         "give a model folder or an id of `hntumorseg models list`")
    problems = verify_installed(target, args.cache)
    if problems:
        raise ModelError(f"installed files differ from what was imported: {'; '.join(problems[:3])}",
                         install_dir(target, args.cache), f"import the model again: hntumorseg models import "
                                                          f"FOLDER_OR_ZIP --id {target} --force")
    print(f"{target}: files match the import")
    _verify_folder(Path(found["folder"]), load=not args.no_load)
    return 0


def _verify_folder(folder: Path, load: bool = True) -> None:
    from ..models.card import CARD_NAME, read_card
    from ..models.weights import verify_sha256

    if (folder / CARD_NAME).is_file():
        card = read_card(folder)
        for fold in card.folds:
            name = card.weights[str(fold)]
            if not (folder / name).is_file():
                raise ModelError(f"no checkpoint for fold {fold} ({name} is missing)", folder,
                                 "copy the weights file into the model folder or fetch the model again")
            if name in card.sha256:
                verify_sha256(folder / name, card.sha256[name])
                print(f"{name}: sha256 OK")
            else:
                print(f"{name}: no sha256 in the card (not verified)")
    if load:
        from ..models import load_model

        model = load_model(folder, folds=None)
        print(f"{folder}: {model.kind} model, {len(model.networks)} fold(s) {model.folds} load strictly")
