"""Which device a run will use, and about how long it takes on the CPU: the panel warns before a long CPU run.

The first thing users of AI extensions ask is "is it using my GPU?". The panel therefore shows
the device each run used (the worker reports it, ``ResultEvent.info["device"]``), and before a
run that would go to the CPU it estimates the time and asks when that is over
:data:`LONG_RUN_S`.

How the estimate is made (rough, an upper bound when boxes restrict the region):
``tiles x folds x TTA flips x seconds per tile``. Tiles are the sliding-window tiles (50 %
overlap, :func:`~HNTumorSegLib.inference.tiling.tile_slices`) over the volume resampled to the
model's spacing. Seconds per tile come from ``bench/results/box_restricted.json`` ("fit" run:
13.86 s for 2 tiles of 48x192x192 with STU-Net-S on 2 CPU cores, i.e.
:data:`BENCH_SECONDS_PER_TILE_VOXEL`), scaled by the tile's voxels, by the model's weight bytes
relative to STU-Net-S (14.5 M parameters: a tiny demo network costs a few percent of it) and by
the cores available (linear up to 8). The estimate is for telling "seconds" from "an hour", not
for planning.

Example:
    >>> est = estimate_run("demo-midrt", shape_zyx=(32, 96, 96), spacing_xyz=(0.9, 0.9, 3.0), device="cpu")
    >>> est.device, est.n_tiles, est.long_cpu_run
    ('cpu', 27, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ModelError
from ..fileio import read_json
from ..inference.tiling import tile_slices
from ..models.card import CARD_NAME, read_card
from ..models.loader import resolve_model_path
from ..models.nnunet_folder import available_folds, is_nnunet_folder, split_folder_name

#: bench/results/box_restricted.json, run "fit": 13.86 s / (2 tiles x 48x192x192 voxels), STU-Net-S, 2 cores.
BENCH_SECONDS_PER_TILE_VOXEL = 13.86 / (2 * 48 * 192 * 192)
BENCH_WEIGHT_BYTES = 14_545_839 * 4  # STU-Net-S float32 weights
BENCH_CORES = 2
#: Warn before a CPU run estimated longer than this (seconds).
LONG_RUN_S = 120.0


@dataclass(frozen=True)
class RunEstimate:
    """The device a run goes to and its estimated duration (seconds; None when unknown)."""

    device: str
    seconds: float | None
    n_tiles: int
    n_networks: int

    @property
    def long_cpu_run(self) -> bool:
        return self.device == "cpu" and self.seconds is not None and self.seconds > LONG_RUN_S

    def warning_text(self) -> str:
        """The question the panel asks before a long CPU run."""
        minutes = max(1, round((self.seconds or 0) / 60))
        return (f"No GPU was found: this run will use the CPU and take about {minutes} minute"
                f"{'s' if minutes != 1 else ''} (a rough estimate: {self.n_tiles} tiles x {self.n_networks} "
                "network passes). Quality 'fast' (one fold, no flips) or lesion boxes make it shorter. Continue?")


def planned_device(requested: str = "auto") -> str:
    """The device a run will use: ``"cpu"``, ``"cuda:0"``, ``"mps"`` (DeviceError when a named one is absent)."""
    from ..inference.devices import resolve_device

    dev = resolve_device(requested)
    return f"{dev.type}:{dev.index}" if dev.index is not None else dev.type


def probe_device(requested: str = "auto", python: str | None = None, timeout_s: float = 120.0) -> str:
    """:func:`planned_device` asked of a child Python (the worker's), so that torch is never imported
    in Slicer's GUI process (it would pin torch's files until Slicer restarts). About 2 s (torch's
    import); the panel asks once per session and device choice. A named device that is absent
    gives the child's one-line DeviceError as an InputError.

    The child (``python -m HNTumorSegLib.scene.run_estimate DEVICE``, :func:`main`) answers in the
    worker protocol's words: a ``result`` event with ``info.device``, or an ``error`` event.
    """
    from ..childproc import default_python, run_to_end
    from ..errors import error_class
    from ..protocol import ErrorEvent, ResultEvent

    argv = [python or default_python(), "-m", "HNTumorSegLib.scene.run_estimate", str(requested)]
    try:
        done = run_to_end(argv, timeout_s)
    except OSError as exc:
        raise RuntimeError(f"could not check the device: {argv[0]}: {exc.strerror or exc}") from None
    final = done.final
    if isinstance(final, ResultEvent) and final.info.get("device"):
        return str(final.info["device"])
    if isinstance(final, ErrorEvent) and final.user_fixable:
        raise error_class(final.kind)(final.message)
    why = (f"it took longer than {timeout_s:g} s" if done.timed_out
           else final.message if isinstance(final, ErrorEvent) else done.stderr_tail[-1:])
    raise RuntimeError(f"could not check the device: {why}")


def device_and_estimate(model: str | Path, shape_zyx: Sequence[int], spacing_xyz: Sequence[float],
                        device: str = "auto", full: bool = False, python: str | None = None,
                        cache: dict | None = None) -> tuple[str, RunEstimate]:
    """The device a run will use (:func:`probe_device`, asked once per ``cache``) and its estimate.

    Called in the scene logic's preparation thread (:mod:`.handoff`), never on the GUI thread:
    the probe starts a child Python (about 2 s; up to its 120 s timeout on a stuck machine).
    """
    cache = {} if cache is None else cache
    if device not in cache:
        cache[device] = probe_device(device, python)
    return cache[device], estimate_run(model, shape_zyx, spacing_xyz, resolved_device=cache[device],
                                       all_folds=full, tta=full)


def main(argv: list[str] | None = None) -> int:
    """The child of :func:`probe_device`: print one ``result`` (``info.device``) or ``error`` event."""
    import sys

    from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError
    from ..protocol import ErrorEvent, ResultEvent

    argv = sys.argv[1:] if argv is None else argv
    try:
        device = planned_device(argv[0] if argv else "auto")
    except InputError as exc:
        print(ErrorEvent(exc.kind, exc.one_line()).to_json(), flush=True)
        return EXIT_BAD_INPUT
    print(ResultEvent(files={}, info={"device": device}).to_json(), flush=True)
    return EXIT_OK


def _model_geometry(folder: Path) -> tuple[list[float] | None, list[int], list, list[int], int]:
    """(spacing_xyz, patch_zyx, folds, tta_axes, weight bytes of one network) of a card or nnU-Net folder."""
    if folder.is_file():
        folder = folder.parent
    card_path = folder / CARD_NAME
    if card_path.is_file():
        card = read_card(card_path)
        sizes = [(folder / p).stat().st_size for p in card.weights.values() if (folder / p).is_file()]
        return (card.spacing_xyz, list(card.patch_size_zyx or []), list(card.folds), list(card.tta_axes),
                max(sizes) if sizes else BENCH_WEIGHT_BYTES)
    if is_nnunet_folder(folder):
        plans = read_json(folder / "plans.json", "nnU-Net plans", error=ModelError)   # depth-limited, one line
        config = split_folder_name(folder)[2] or "3d_fullres"
        cfg = plans["configurations"][config]
        folds = available_folds(folder)
        ckpts = [p.stat().st_size for p in folder.glob("fold_*/checkpoint_*.pth")]
        # nnU-Net checkpoints also hold the optimiser state (about twice the weights again)
        return (list(reversed(cfg["spacing"])), list(cfg["patch_size"]), folds, [0, 1, 2],
                (max(ckpts) // 3) if ckpts else BENCH_WEIGHT_BYTES)
    return None, [], [0], [0, 1, 2], BENCH_WEIGHT_BYTES


def estimate_run(model: str | Path, shape_zyx: Sequence[int], spacing_xyz: Sequence[float], device: str = "auto",
                 all_folds: bool = False, tta: bool = False, cores: int | None = None,
                 resolved_device: str | None = None) -> RunEstimate:
    """Estimate a run of ``model`` on a volume of ``shape_zyx`` voxels at ``spacing_xyz`` mm (module docstring).

    ``resolved_device``: the device already resolved (:func:`probe_device`); else resolved here (imports torch).
    """
    from ..inference.devices import available_cpu_cores

    dev = resolved_device or planned_device(device)
    spacing_model, patch, folds, tta_axes, weight_bytes = _model_geometry(resolve_model_path(model))
    spacing_zyx = list(reversed([float(s) for s in spacing_xyz]))
    target = list(reversed(spacing_model)) if spacing_model else spacing_zyx
    resampled = [max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx, target)]
    if len(patch) != 3:
        patch = [min(r, 128) for r in resampled]
    padded = [max(r, p) for r, p in zip(resampled, patch)]
    n_tiles = len(tile_slices(padded, patch, 0.5))
    n_networks = (len(folds) if all_folds else 1) * (2 ** len(tta_axes) if tta else 1)
    if dev != "cpu":
        return RunEstimate(dev, None, n_tiles, n_networks)
    cores = cores or available_cpu_cores()
    per_tile = BENCH_SECONDS_PER_TILE_VOXEL * math.prod(patch) * (weight_bytes / BENCH_WEIGHT_BYTES)
    seconds = n_tiles * n_networks * per_tile * BENCH_CORES / max(1, min(cores, 8))
    return RunEstimate(dev, seconds, n_tiles, n_networks)


def device_used(run) -> str:
    """The device a finished run used, as the worker reported it (``ResultEvent.info["device"]``); "" otherwise."""
    from ..protocol import ResultEvent

    final = getattr(run, "final", None)
    return str(final.info.get("device", "")) if isinstance(final, ResultEvent) else ""


def device_used_text(run) -> str:
    """The line the panel shows after a run: which device it ran on (and a hint when that was the CPU)."""
    device = device_used(run)
    if not device:
        return ""
    if device == "cpu":
        return f"Last run used: CPU (no GPU found or chosen; {_gpu_hint()})"
    return f"Last run used: {device.upper() if device == 'mps' else device}"


def _gpu_hint() -> str:
    return "a CUDA GPU with the PyTorch extension's CUDA build makes runs much faster"


if __name__ == "__main__":
    raise SystemExit(main())
