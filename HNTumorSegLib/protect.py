"""Protected paths: no output of a command may be, or resolve to, one of that command's inputs.

Checked before any work (exit 2, nothing touched). "Resolve to" covers every way two names can
mean one file:

* the same path spelt differently (``a/../b``, relative vs absolute) and symlinks either way:
  the files are compared by identity (``st_dev``, ``st_ino`` after following links);
* hard links: same identity;
* another case of the name on a case-insensitive file system (macOS, Windows, some shares):
  the file system finds the other file under the new spelling, so the identity is the same;
* an output that is itself a symlink to an input (dangling or not) is refused too, although
  the rename would only replace the link: the user clearly meant the input.

Protected folders (the batch data and label folders, a model folder) may not *be* an output
folder, and no output file may lie inside a model folder.

Also here, because it is checked at the same moment: only regular files (and folders, for
DICOM series) are read - a FIFO, a device or a socket would block a reader forever
(:func:`check_regular_input`), and the ``stat`` itself has a timeout, since a stalled network
share would otherwise hang the check.

Example:
    >>> check_outputs({"--json": "scores.json"}, {"the reference": "ref/1.nii.gz"})
    >>> check_outputs({"--out": "data/"}, {}, {"the data folder": "data"})   # InputError, exit 2
    Traceback (most recent call last):
    HNTumorSegLib.errors.InputError: data/: --out is the same file as the data folder - choose another ...
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Iterable, Mapping

from .errors import EnvironmentFault, InputError
from .fileio import check_name_length

#: Seconds a ``stat`` may take before the file system counts as stalled.
STAT_TIMEOUT_S = float(os.environ.get("HNTUMORSEG_STAT_TIMEOUT_S", "20"))
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}

PathLike = str | os.PathLike


def stat_with_timeout(path: PathLike, follow: bool = True, timeout_s: float | None = None) -> os.stat_result | None:
    """``os.stat`` (or ``lstat``) that gives up after ``timeout_s``; None when the path does not exist."""
    box: dict = {}

    def target() -> None:
        try:
            box["st"] = os.stat(path) if follow else os.lstat(path)
        except OSError as exc:
            box["exc"] = exc

    t = threading.Thread(target=target, daemon=True, name="hntumorseg-stat")
    t.start()
    t.join(STAT_TIMEOUT_S if timeout_s is None else timeout_s)
    if t.is_alive():
        raise EnvironmentFault(f"the file system does not answer (no reply in {STAT_TIMEOUT_S:g} s)", path,
                               "check the network share or disk, then try again")
    if "exc" in box:
        return None
    return box["st"]


def check_regular_input(path: PathLike, what: str = "input", folder_ok: bool = True) -> None:
    """InputError for a FIFO, device or socket (reading would block forever); exists-checks stay with the reader."""
    st = stat_with_timeout(path)
    if st is None:
        return
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None and stat.S_ISDIR(st.st_mode) and not folder_ok:
        kind = "a folder"
    if kind is not None:
        raise InputError(f"{the(what)} is {kind}, not a regular file", path,
                         "give the file itself (copy it out of the pipe or device first)")


def the(what: str) -> str:
    """``what`` with one leading "the" ("input T2" and "the input T2" both give "the input T2"; a
    flag such as ``--out`` stays bare)."""
    return what if what.lower().startswith("the ") or what.startswith("-") else f"the {what}"


def check_path_kind(path: PathLike, what: str, want: str = "file", fix: str = "check the path") -> None:
    """InputError unless ``path`` exists and is a ``want`` ("file", "folder" or "file or folder").

    Says what the path really is (issue 22): a FIFO, device or socket is named so, never reported
    as "does not exist" or "is not a folder"; a folder where a file is wanted, and the reverse.
    """
    st = stat_with_timeout(path)
    if st is None:
        raise InputError(f"{the(what)} does not exist", path, fix)
    mode = stat.S_IFMT(st.st_mode)
    if mode in _KINDS:
        raise InputError(f"{the(what)} is {_KINDS[mode]}, not {'a folder' if want == 'folder' else 'a regular file'}",
                         path, f"give the {want} itself")
    if want == "folder" and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{the(what)} is a file, not a folder", path, "give the folder")
    if want == "file" and stat.S_ISDIR(st.st_mode):
        raise InputError(f"{the(what)} is a folder, not a file", path, "give the file")


def _identity(path: PathLike) -> tuple[int, int] | None:
    st = stat_with_timeout(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _resolved(path: PathLike) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the spelling
        return Path(os.path.abspath(Path(path).expanduser()))


def _is_link(path: PathLike) -> bool:
    st = stat_with_timeout(path, follow=False)
    return st is not None and stat.S_ISLNK(st.st_mode)


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file or folder (module docstring), existing or not."""
    ia, ib = _identity(a), _identity(b)
    if ia is not None and ib is not None:
        return ia == ib
    ra, rb = _resolved(a), _resolved(b)
    return os.path.normcase(ra) == os.path.normcase(rb)


def _keys(path: PathLike) -> set:
    """What identifies ``path`` for :func:`same_file`: its (st_dev, st_ino) when it exists, and
    its resolved, case-normalised spelling (for paths that do not exist yet)."""
    keys: set = {("path", os.path.normcase(str(_resolved(path))))}
    ident = _identity(path)
    if ident is not None:
        keys.add(("inode", ident))
    return keys


def check_outputs(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike],
                  folders: Mapping[str, PathLike] | None = None, trees: Mapping[str, PathLike] | None = None,
                  output_folders: Mapping[str, PathLike] | None = None) -> None:
    """Refuse (InputError, exit 2) any output that is, or resolves to, a protected path.

    ``outputs``: flag -> output file; ``inputs``: name -> input file (or DICOM folder);
    ``folders``: name -> protected folder an output folder may not be; ``trees``: name ->
    folder no output may lie in (a model); ``output_folders``: flag -> output folder
    (batch ``--out``). Outputs must also differ from each other and not be existing folders.
    Each path is looked at once (a 500-case cohort costs a few thousand ``stat`` calls, not
    a million comparisons).
    """
    folders, trees, output_folders = dict(folders or {}), dict(trees or {}), dict(output_folders or {})
    fix = "choose another output path: the inputs are never overwritten"
    protected: dict = {}
    for what, given in list(inputs.items()) + list(folders.items()):
        for key in _keys(given):
            protected.setdefault(key, what)
    resolved_trees = {what: _resolved(tree) for what, tree in trees.items()}
    seen: dict = {}
    for flag, out in outputs.items():
        check_name_length(out, flag)
        st = stat_with_timeout(out)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{flag} is a folder", out, "give a file name")
        keys = _keys(out)
        if _is_link(out):   # a link (dangling or not) to an input: the user meant the input
            keys.add(("path", os.path.normcase(str(_resolved(out)))))
        for key in keys:
            if key in protected:
                raise InputError(f"{flag} is the same file as {protected[key]}", out, fix)
        resolved = _resolved(out)
        for what, tree in resolved_trees.items():
            if resolved == tree or tree in resolved.parents:
                raise InputError(f"{flag} lies inside {what}", out, fix)
        for key in keys:
            if key in seen:
                raise InputError(f"{seen[key]} and {flag} name the same file", out, "give each output its own path")
        for key in keys:
            seen[key] = flag
    for flag, out_dir in output_folders.items():
        for what, given in list(folders.items()) + list(trees.items()) + list(inputs.items()):
            if same_file(out_dir, given):
                raise InputError(f"{flag} is {what}", out_dir, "give a new, separate output folder")


def check_inputs_regular(inputs: Mapping[str, PathLike]) -> None:
    """:func:`check_regular_input` for every named input."""
    for what, path in inputs.items():
        check_regular_input(path, what)


def request_paths(request) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(outputs, inputs, model trees) of a :class:`~HNTumorSegLib.pipeline.request.SegmentRequest`."""
    outputs = {"--output": request.output_path, "--probabilities": request.probabilities_path,
               "--uncertainty": request.uncertainty_path, "--save-boxes": request.boxes_output_path}
    outputs = {k: v for k, v in outputs.items() if v}
    inputs = {f"the input {name}": path for name, path in request.input_paths.items()}
    if request.prior_path:
        inputs["the prior (--prior)"] = request.prior_path
    if getattr(request, "prior_image_path", None):   # issue 23: the pre-RT T2 the prior is drawn on
        inputs["the pre-RT image (--prior-image)"] = request.prior_image_path
    outputs.update(request.registered_outputs() if hasattr(request, "registered_outputs") else {})
    if request.boxes_path:
        inputs["the boxes (--boxes)"] = request.boxes_path
    trees = {}
    model = request.model_folder()   # the request resolves its model id: models sit above protect
    if model is not None:
        trees["the model folder"] = str(model)
    return outputs, inputs, trees


def check_request(request, extra_inputs: Mapping[str, PathLike] | None = None) -> None:
    """Every input readable as a regular file, no output on a protected path (one line, exit 2).

    ``extra_inputs``: name -> path of what the run reads beyond the request's own fields (a
    refinement's base label map, issue 22): protected from every output the same way."""
    outputs, inputs, trees = request_paths(request)
    inputs.update({k: str(v) for k, v in (extra_inputs or {}).items() if v})
    check_inputs_regular(inputs)
    folder = getattr(request, "registered_folder_path", None)   # --save-registered DIR: not an input folder
    check_outputs(outputs, inputs, trees=trees, output_folders={"--save-registered": folder} if folder else None)


def protected_folders(pairs: Iterable[tuple[str, PathLike | None]]) -> dict[str, str]:
    """``{"the data folder (--data)": "cohort/"}`` from (name, path-or-None) pairs, Nones dropped."""
    return {name: str(path) for name, path in pairs if path}
