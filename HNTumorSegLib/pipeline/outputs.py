"""All-or-nothing output writing, and the way back from the working grid to the output grid.

:class:`OutputSet` writes every output of a run (labels, probabilities, uncertainty, boxes) to
hidden temporary files beside their final paths, verifies each (images are read back: header
and voxel count, :func:`HNTumorSegLib.image.write_sitk_verified`; a full disk is caught here,
since ``sitk.WriteImage`` does not raise on it), and renames them only when all were written.
Any error (or Ctrl-C, or the worker's SIGTERM) removes the temporary files and any folder it
made. :meth:`OutputSet.commit` itself is all or nothing: an earlier file at a final path is
kept as a hard-linked backup until every rename succeeded, and put back if one fails.

:func:`to_target_block` brings probabilities from the working grid back to the output grid: each
class map is resampled linearly (labels are then the argmax there: smoother than resampling
labels with nearest neighbour), only over the part of the output grid the working grid
covers; outside it is background.

Example:
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask
    >>> labels_image = Image(np.zeros((4, 8, 8), np.uint8)); labels_image.array[1:3, 2:5, 2:5] = 1
    >>> boxes = boxes_from_mask(labels_image)
    >>> with OutputSet() as out:
    ...     out.add_image("labels", labels_image, "case/labels.nii.gz")
    ...     out.add_json("boxes", [b.to_dict() for b in boxes], "case/boxes.json")
    >>> out.files
    {'labels': 'case/labels.nii.gz', 'boxes': 'case/boxes.json'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from ..errors import EnvironmentFault, InputError
from ..fileio import os_error, publish, temp_beside
from ..image import Image, resample_to, write_sitk_verified


class OutputSet:
    """Stage outputs in temporary files; :meth:`commit` renames them all (see the module docstring)."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path, Path]] = []   # role, tmp, final
        self._made_dirs: list[Path] = []
        self.files: dict[str, str] = {}
        self.committed = False

    def _prepare(self, final: str | os.PathLike) -> Path:
        p = Path(final).expanduser()
        if p.is_dir():
            raise InputError("the output path is a folder", p, "give a file name such as labels.nii.gz")
        missing = []
        d = p.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, p.parent, "create the folder") from None
        self._made_dirs.extend(reversed(missing))
        return p

    def _stage(self, role: str, final: str | os.PathLike) -> tuple[Path, Path]:
        p = self._prepare(final)
        tmp = temp_beside(p)
        self._staged.append((role, tmp, p))
        return tmp, p

    def add_image(self, role: str, image: Image, final: str | os.PathLike) -> None:
        tmp, p = self._stage(role, final)
        write_sitk_verified(image.to_sitk(), tmp, p)

    def add_multichannel(self, role: str, channels: np.ndarray, grid: Image, final: str | os.PathLike) -> None:
        """A 4D image (x, y, z, channel) holding ``channels`` (K, z, y, x) on ``grid``."""
        tmp, p = self._stage(role, final)
        vols = [grid.with_array(np.asarray(c, np.float32)).to_sitk() for c in channels]
        write_sitk_verified(sitk.JoinSeries(vols), tmp, p)

    def add_written(self, role: str, final: str | os.PathLike, write: Callable[[Path], Any]) -> None:
        """A file made by ``write(staged_path)`` (the DICOM writers), committed with the others.

        Example:
            >>> with OutputSet() as out:          # the writer gets the staged path; the rename comes at commit
            ...     out.add_written("notes", "case/notes.txt", lambda tmp: tmp.write_text("reviewed"))
            >>> Path("case/notes.txt").read_text()
            'reviewed'
        """
        tmp, p = self._stage(role, final)
        try:
            try:
                write(tmp)
            except OSError as exc:   # a full disk names the user's file, not our hidden temp (issue 22)
                raise os_error(exc, p) from None
            except (InputError, EnvironmentFault) as exc:
                if exc.path is not None and Path(exc.path) == tmp:
                    exc.path = str(p)
                    exc.args = (exc.one_line(),)
                raise
        except BaseException:   # this one is never committed; a caller may go on with the others (issue 25)
            self._staged.pop()
            tmp.unlink(missing_ok=True)
            raise

    def add_json(self, role: str, data: Any, final: str | os.PathLike) -> None:
        tmp, p = self._stage(role, final)
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"   # strict JSON (issue 22)
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise os_error(exc, p) from None

    def commit(self) -> dict[str, str]:
        """Rename every staged file over its final path, all or nothing (module docstring)."""
        backups: list[tuple[Path, Path | None]] = []   # (final, backup of the earlier file or None)
        try:
            for role, tmp, final in self._staged:
                backup = None
                if final.exists():
                    backup = temp_beside(final)
                    backup.unlink()
                    try:
                        os.link(final, backup)
                    except OSError:  # no hard links here (FAT, some shares): no way back for this one
                        backup = None
                backups.append((final, backup))
                publish(tmp, final)
                self.files[role] = str(final)
        except BaseException:
            for final, backup in reversed(backups):   # put the earlier files back
                try:
                    if backup is not None:
                        os.replace(backup, final)
                    elif final.exists() and str(final) in self.files.values():
                        final.unlink()
                except OSError:
                    pass
            self.files.clear()
            self.rollback()
            raise
        for _final, backup in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self._staged.clear()
        self.committed = True
        return self.files

    def rollback(self) -> None:
        for _, tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()
        for d in reversed(self._made_dirs):
            try:
                d.rmdir()  # only when empty: never removes anything of the user's
            except OSError:
                pass

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit on success, roll back on any exception (which then propagates)."""
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


def covered_block(target: Image, grid: Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Index range (lo, hi inclusive, i j k) of ``target`` voxels that may lie inside ``grid``."""
    cont = target.physical_to_index(grid.corners_lps())
    n = np.asarray(target.shape_xyz)
    if np.any(cont.max(axis=0) < -0.5) or np.any(cont.min(axis=0) > n - 0.5):
        return None
    lo = np.clip(np.floor(cont.min(axis=0)).astype(int) - 1, 0, n - 1)
    hi = np.clip(np.ceil(cont.max(axis=0)).astype(int) + 1, 0, n - 1)
    return lo, hi


Slices3 = tuple[slice, slice, slice]


def to_target_block(channels: np.ndarray, grid: Image, target: Image, fill) -> tuple[np.ndarray, Slices3]:
    """Resample ``channels`` (K, z, y, x) on ``grid`` linearly onto the block of ``target`` it covers.

    Returns the block's values (K, bz, by, bx) and its slices in ``target``; voxels of the block
    outside ``grid`` get ``fill[k]``. Only the block is computed: a 144 mm crop on a whole-body CT
    never costs whole-body memory.
    """
    k = channels.shape[0]
    if grid.same_grid(target):
        return channels.astype(np.float32, copy=False), (slice(None),) * 3
    block = covered_block(target, grid)
    if block is None:
        return np.zeros((k, 0, 0, 0), np.float32), (slice(0, 0),) * 3
    lo, hi = block
    sub = Image(np.zeros((hi - lo + 1)[::-1], np.uint8), target.spacing, tuple(target.index_to_physical(lo)),
                target.direction)
    sl = (slice(int(lo[2]), int(hi[2]) + 1), slice(int(lo[1]), int(hi[1]) + 1), slice(int(lo[0]), int(hi[0]) + 1))
    out = np.empty((k,) + sub.array.shape, np.float32)
    for c in range(k):
        moved = resample_to(grid.with_array(channels[c].astype(np.float32, copy=False)), sub,
                            interpolator="linear", default_value=float(fill[c]))
        out[c] = moved.array
    return out, sl


def paste(block: np.ndarray, sl: Slices3, shape: tuple[int, int, int], fill, dtype=np.float32) -> np.ndarray:
    """A full (K, z, y, x) array of ``shape`` holding ``block`` at ``sl`` and ``fill[k]`` elsewhere."""
    k = block.shape[0]
    out = np.empty((k,) + tuple(shape), dtype)
    for c in range(k):
        out[c] = fill[c]
        out[c][sl] = block[c]
    return out
