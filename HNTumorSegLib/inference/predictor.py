"""Sliding-window inference: Gaussian-weighted tiles, mirroring TTA, fold and model ensembles,
a box-restricted fast path, and an optional uncertainty map.

The tiling and weighting are nnU-Net v2's (see :mod:`.tiling`), so for one nnU-Net model the
aggregated logits equal nnUNetPredictor's. What differs is how the work is done: float32
accumulators (nnU-Net accumulates in float16, which is slow on CPUs), no producer thread and
no per-fold ``load_state_dict`` (every fold is its own module), torch threads capped at the
cores really available, accumulators on the CPU when the volume would not fit in free GPU
memory, and - in box-restricted mode - only the tiles that matter, accumulated only over
their bounding box.

Example:
    >>> pred = Predictor([fold0, fold1], patch_size=(48, 192, 192), num_classes=3)
    >>> prob = pred.predict_logits(x)                            # (3, z, y, x) probabilities
    >>> prob = pred.predict_logits(x, region=[(slice(40, 70), slice(100, 180), slice(200, 260))])
    >>> res = Predictor(nets, (16, 64, 64), 3, tta=True, uncertainty="entropy").predict(x)
    >>> res.probabilities.shape, res.uncertainty.shape, res.n_tiles
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: `import HNTumorSegLib` must not load it
    import torch

from . import tiling
from .devices import autocast_context, free_device_memory, resolve_device
from .ensemble import (UNCERTAINTIES, EnsembleMember, as_members, background_probabilities, hard_labels,
                       logits_to_probabilities, predictive_entropy)

ProgressFn = Callable[..., None]
REGION_TILINGS = ("fit", "grid", "shrink")


@dataclass
class PredictionResult:
    """What :meth:`Predictor.predict` returns."""

    probabilities: np.ndarray                 # (K, z, y, x) float32
    uncertainty: np.ndarray | None = None     # (z, y, x) float32 in [0, 1], or None
    n_tiles: int = 0                          # network passes over tiles (folds x tiles, TTA not counted)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


class Predictor:
    """Sliding-window predictor for one network, its folds, or an ensemble of architectures.

    Args:
        networks: a module, a list of fold modules, or a list of ``EnsembleMember`` /
            ``(networks, weight)`` pairs (cross-architecture probability averaging).
        patch_size: tile size (z, y, x); a member may carry its own.
        num_classes: output channels K of every network.
        device: ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``; absent -> DeviceError.
        tta: mirroring test-time augmentation over ``mirror_axes`` (8 passes in 3D).
        step: tile step as a fraction of the patch (nnU-Net: 0.5).
        use_amp: autocast on CUDA (bf16 where supported, else fp16); never on CPU/MPS.
        output: ``"softmax"`` or ``"sigmoid"`` (per-channel region maps).
        mirror_axes: spatial axes (0=z, 1=y, 2=x) TTA may flip.
        fold_average: ``"logits"`` (nnU-Net's way, default) or ``"probabilities"``
            (each fold becomes a member: needed for fold disagreement).
        uncertainty: None, ``"entropy"`` or ``"disagreement"`` (see :mod:`.ensemble`).
        region_tiling: in box-restricted mode, ``"fit"`` lays new tiles centred on each region
            component (fewest tiles, default) or ``"grid"`` keeps the full grid's tiles that touch
            the region (equals the full run inside the region exactly) or ``"shrink"`` (as
            ``"fit"``, but a box smaller than the patch gets a smaller tile, rounded up to
            ``shape_divisor``: the fastest, with less context around the box).
        region_margin: voxels (int or per axis) added around each region component's box;
            the grown boxes are where tiles run and where predictions are kept.
        progress: ``progress(stage="inference", fraction=..., message="fold 1/2 tile 13/40")``.
        num_threads: torch CPU threads while predicting (default: torch's current setting capped
            at the cores this process may use).
        shape_divisor: per-axis multiple a tile must be for the network (``"shrink"`` mode);
            default: the network's ``input_shape_must_be_divisible_by`` if it has one, else
            ``"shrink"`` behaves as ``"fit"``.
        accumulate_on: ``"auto"`` (GPU when the accumulators fit in ``memory_fraction`` of its
            free memory, else CPU), ``"device"`` or ``"cpu"``.
        low_memory: the retry after a GPU out-of-memory: accumulators on the CPU and tiles
            about half the patch along each axis (:func:`.tiling.reduced_patch`); slower, and
            with less context per tile, but it fits where the full patch did not.
    """

    def __init__(self, networks: Any, patch_size: Sequence[int], num_classes: int, device: Any = "auto",
                 tta: bool = False, step: float = 0.5, use_amp: bool = True, *, output: str = "softmax",
                 mirror_axes: Sequence[int] = (0, 1, 2), fold_average: str = "logits",
                 uncertainty: str | None = None, region_tiling: str = "fit",
                 region_margin: int | Sequence[int] = 0, progress: ProgressFn | None = None,
                 num_threads: int | None = None, accumulate_on: str = "auto",
                 memory_fraction: float = 0.5, use_gaussian: bool = True,
                 shape_divisor: Sequence[int] | None = None, low_memory: bool = False) -> None:
        self.members = as_members(networks, output=output)
        self.output = self.members[0].output
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must have 3 entries (z, y, x), got {patch_size}")
        self.num_classes = int(num_classes)
        self.device = resolve_device(device)
        self.tta = bool(tta)
        if not 0 < step <= 1:
            raise ValueError(f"step must be in (0, 1], got {step}")
        self.step = float(step)
        self.use_amp = bool(use_amp)
        self.mirror_axes = tuple(int(a) for a in mirror_axes)
        if fold_average not in ("logits", "probabilities"):
            raise ValueError("fold_average must be 'logits' or 'probabilities'")
        self.fold_average = fold_average
        if uncertainty is not None and uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be None or one of {UNCERTAINTIES}")
        self.uncertainty = uncertainty
        if region_tiling not in REGION_TILINGS:
            raise ValueError(f"region_tiling must be one of {REGION_TILINGS}")
        self.region_tiling = region_tiling
        margin = region_margin if isinstance(region_margin, (list, tuple)) else [region_margin] * 3
        self.region_margin = tuple(int(m) for m in margin)
        self.progress = progress
        self.num_threads = num_threads
        if accumulate_on not in ("auto", "device", "cpu"):
            raise ValueError("accumulate_on must be 'auto', 'device' or 'cpu'")
        self.low_memory = bool(low_memory)
        self.accumulate_on = "cpu" if self.low_memory else accumulate_on
        self.memory_fraction = float(memory_fraction)
        self.use_gaussian = bool(use_gaussian)
        self.shape_divisor = None if shape_divisor is None else tuple(int(d) for d in shape_divisor)
        for member in self.members:
            for net in member.networks:
                net.to(self.device).eval()

    # ---- public API ---------------------------------------------------------------------
    def predict_logits(self, x: np.ndarray, region: Any = None) -> np.ndarray:
        """Probabilities (K, z, y, x) float32 for an input (C, z, y, x) (name kept from the API contract)."""
        return self.predict(x, region=region).probabilities

    def predict(self, x: np.ndarray, region: Any = None) -> PredictionResult:
        """Run the ensemble; ``region`` (bool mask, slices or list of slices) restricts it to boxes."""
        import torch

        t0 = time.perf_counter()
        x = self._check_input(x)
        shape = x.shape[1:]
        members = self._expanded_members()
        keep = region_info = None
        if region is not None:
            region_info = self._grown_region(region, shape)
            keep = region_info[0]
            if not region_info[1]:
                prob = background_probabilities(self.num_classes, shape, self.output)
                unc = np.zeros(shape, np.float32) if self.uncertainty else None
                return PredictionResult(prob, unc, 0, time.perf_counter() - t0)
        plans = [self._plan(m, shape, region_info) for m in members]
        total = sum(len(m.networks) * len(p[0]) for m, p in zip(members, plans))
        counter = _Progress(self.progress, total, len(members))
        prob_sum = None
        labels = []
        weight_sum = sum(m.weight for m in members)
        with _threads(self.num_threads), torch.inference_mode():
            for mi, (member, (tiles, bbox, revert, padded_shape)) in enumerate(zip(members, plans)):
                counter.member = mi
                logits = self._aggregate(member, x, tiles, bbox, counter)
                p = logits_to_probabilities(logits, self.output)
                del logits
                p = self._place(p.float().cpu().numpy(), bbox, revert, padded_shape, shape)
                if self.uncertainty == "disagreement":
                    labels.append(hard_labels(p, self.output))
                if prob_sum is None:
                    # one member: no weighted copy of a whole-volume array
                    prob_sum = p if len(members) == 1 else p * np.float32(member.weight / weight_sum)
                else:
                    prob_sum += p * np.float32(member.weight / weight_sum)
                del p
        if keep is not None:
            # strictly background outside the (grown) region
            bg = background_probabilities(self.num_classes, (1, 1, 1), self.output)[:, 0, 0, 0]
            prob_sum[:, ~keep] = bg[:, None]
        unc = self._uncertainty(prob_sum, labels, keep)
        return PredictionResult(prob_sum, unc, total, time.perf_counter() - t0)

    def predict_raw_logits(self, x: np.ndarray) -> "torch.Tensor":
        """Fold-averaged, Gaussian-aggregated logits (K, z, y, x) float32 on the CPU, one member only.

        This is what nnUNetPredictor's ``predict_logits_from_preprocessed_data`` returns; nnU-Net's
        export (resampling back, softmax, argmax) takes it from here.
        """
        import torch

        if len(self.members) != 1:
            raise ValueError("predict_raw_logits needs exactly one ensemble member")
        x = self._check_input(x)
        member = self.members[0]
        tiles, bbox, revert, _ = self._plan(member, x.shape[1:], None)
        counter = _Progress(self.progress, len(member.networks) * len(tiles), 1)
        with _threads(self.num_threads), torch.inference_mode():
            logits = self._aggregate(member, x, tiles, bbox, counter).float().cpu()
        return logits[(slice(None), *revert)]

    def count_tiles(self, shape: Sequence[int], region: Any = None) -> int:
        """How many tiles (per fold, TTA not counted) a prediction over ``shape`` would run."""
        keep = None if region is None else self._grown_region(region, tuple(shape))
        if keep is not None and not keep[1]:
            return 0
        return sum(len(self._plan(m, tuple(shape), keep)[0]) for m in self._expanded_members())

    # ---- internals ----------------------------------------------------------------------
    def _check_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"input must be (channels, z, y, x), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating) or x.dtype != np.float32:
            x = x.astype(np.float32)
        return np.ascontiguousarray(x)

    def _expanded_members(self) -> list[EnsembleMember]:
        if self.fold_average == "logits":
            return self.members
        out = []
        for m in self.members:
            for i, net in enumerate(m.networks):
                out.append(EnsembleMember([net], m.weight / len(m.networks), m.output, m.patch_size,
                                          m.mirror_axes, f"{m.name}fold{i}"))
        return out

    def _grown_region(self, region: Any, shape: tuple) -> tuple[np.ndarray, list]:
        """The region as a mask and as component boxes, both grown by ``region_margin``.

        Boxes given as slices are used as they are (no connected-component labelling of a
        whole-volume mask: that alone costs seconds on a 512 x 512 x 123 volume).
        """
        mask = tiling.region_to_mask(region, shape)
        if isinstance(region, np.ndarray):
            boxes = tiling.region_boxes(mask) if mask.any() else []
        else:
            given = [region] if tiling._is_slices(region) else list(region)
            boxes = [tuple(slice(*sl.indices(n)[:2]) for sl, n in zip(b, shape)) for b in given]
            boxes = [b for b in boxes if all(sl.stop > sl.start for sl in b)]
        if any(self.region_margin):
            boxes = [tiling.dilate_box(b, self.region_margin, shape) for b in boxes]
            if isinstance(region, np.ndarray):
                mask = mask.copy()      # never grow the caller's own mask
            for b in boxes:
                mask[b] = True
        return mask, boxes

    def _plan(self, member: EnsembleMember, shape: tuple, keep: tuple | None):
        """Tiles (in padded coordinates), the accumulator's box, the un-padding slices, the padded shape."""
        patch = self._patch_for(member)
        pads = tiling.padding_for(shape, patch)
        padded_shape = tuple(s + lo + hi for s, (lo, hi) in zip(shape, pads))
        revert = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, shape))
        if keep is None:
            tiles = tiling.tile_slices(padded_shape, patch, self.step)
        elif self.region_tiling == "grid":
            keep_p = keep[0]
            if padded_shape != tuple(shape):
                keep_p = np.zeros(padded_shape, bool)
                keep_p[revert] = keep[0]
            tiles = tiling.tiles_touching(tiling.tile_slices(padded_shape, patch, self.step), keep_p)
        else:
            boxes = [tuple(slice(b.start + lo, b.stop + lo) for b, (lo, _) in zip(box, pads)) for box in keep[1]]
            divisor = self._divisor(member) if self.region_tiling == "shrink" else None
            tiles = tiling.tiles_fitting_boxes(boxes, padded_shape, patch, self.step, divisor=divisor)
        bbox = tiling.tiles_bounding_box(tiles)
        return tiles, bbox, revert, padded_shape

    def _patch_for(self, member: EnsembleMember) -> tuple[int, ...]:
        patch = tuple(member.patch_size or self.patch_size)
        return tiling.reduced_patch(patch, self._divisor(member)) if self.low_memory else patch

    def _divisor(self, member: EnsembleMember) -> tuple[int, ...] | None:
        if self.shape_divisor is not None:
            return self.shape_divisor
        divs = [getattr(n, "input_shape_must_be_divisible_by", None) for n in member.networks]
        if any(d is None for d in divs):
            return None
        d = np.max(np.array([np.broadcast_to(np.asarray(v), (3,)) for v in divs]), axis=0)
        return tuple(int(v) for v in d)

    def _aggregate(self, member: EnsembleMember, x: np.ndarray, tiles: list, bbox: tuple, counter: "_Progress"):
        """Gaussian-weighted, fold-averaged logits over ``bbox`` (K, *bbox) as a torch tensor."""
        import torch

        patch = self._patch_for(member)
        if any(lo or hi for lo, hi in tiling.padding_for(x.shape[1:], patch)):
            x, _ = tiling.pad_to_patch(x, patch)
        xt = torch.from_numpy(x)
        bshape = tuple(b.stop - b.start for b in bbox)
        acc_device = self._accumulator_device(bshape)
        logits = torch.zeros((self.num_classes, *bshape), dtype=torch.float32, device=acc_device)
        weights = torch.zeros(bshape, dtype=torch.float32, device=acc_device)
        gauss: dict[tuple, tuple] = {}      # tile shape -> (weight on accumulator device, on compute device)
        for t in tiles:
            shp = tuple(s.stop - s.start for s in t)
            if shp not in gauss:
                g = (torch.from_numpy(np.array(tiling.gaussian_importance_map(shp))) if self.use_gaussian
                     else torch.ones(shp, dtype=torch.float32))
                gauss[shp] = (g.to(acc_device), g.to(self.device))
        origin = [b.start for b in bbox]
        local = [tuple(slice(s.start - o, s.stop - o) for s, o in zip(t, origin)) for t in tiles]
        for loc in local:
            weights[loc] += gauss[tuple(s.stop - s.start for s in loc)][0]
        axes = member.mirror_axes if member.mirror_axes is not None else self.mirror_axes
        nets = member.networks
        tuner = _ThreadTuner(enabled=self.device.type == "cpu" and self.num_threads is None
                             and len(tiles) * len(nets) >= 4 and len({_shape(t) for t in tiles[1:3]}) == 1)
        for fi, net in enumerate(nets):
            for ti, (tile, loc) in enumerate(zip(tiles, local)):
                # a contiguous copy: convolutions on a strided view are markedly slower on CPUs
                inp = xt[(slice(None), *tile)][None].contiguous().to(self.device, non_blocking=True)
                tuner.before()
                out = self._forward(net, inp, axes if self.tta else ())
                tuner.after()
                out = out[0].float()
                if out.shape[0] != self.num_classes:
                    raise ValueError(f"network returned {out.shape[0]} channels, expected {self.num_classes}")
                out *= gauss[tuple(out.shape[1:])][1]
                logits[(slice(None), *loc)] += out.to(acc_device)
                counter.step(fi, len(nets), ti, len(tiles))
        weights *= len(nets)
        logits /= weights
        return logits

    def _forward(self, net, inp, axes: Sequence[int]):
        import torch

        with autocast_context(self.device, self.use_amp):
            out = _first(net(inp))
            if axes:
                dims = [a + 2 for a in axes]
                out = out.float()
                combos = [c for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)]
                for c in combos:
                    out += torch.flip(_first(net(torch.flip(inp, c))), c).float()
                out /= len(combos) + 1
        return out

    def _accumulator_device(self, bshape: tuple):
        import torch

        if self.device.type == "cpu" or self.accumulate_on == "cpu":
            return torch.device("cpu")
        if self.accumulate_on == "device":
            return self.device
        need = (self.num_classes * 2 + 1) * int(np.prod(bshape)) * 4   # logits, probabilities, weights
        free = free_device_memory(self.device)
        if free is None or need > self.memory_fraction * free:
            return torch.device("cpu")
        return self.device

    def _place(self, p: np.ndarray, bbox: tuple, revert: tuple, padded_shape: tuple, shape: tuple) -> np.ndarray:
        """Put probabilities over ``bbox`` (padded coordinates) into a full (K, *shape) array."""
        if all(b.start == 0 and b.stop == s for b, s in zip(bbox, padded_shape)):
            return np.ascontiguousarray(p[(slice(None), *revert)])
        full = background_probabilities(self.num_classes, padded_shape, self.output)
        full[(slice(None), *bbox)] = p
        return np.ascontiguousarray(full[(slice(None), *revert)])

    def _uncertainty(self, prob: np.ndarray, labels: list, keep: np.ndarray | None) -> np.ndarray | None:
        if self.uncertainty is None:
            return None
        if self.uncertainty == "entropy":
            u = predictive_entropy(prob, self.output)
        else:
            final = hard_labels(prob, self.output)
            u = np.mean([lab != final for lab in labels], axis=0).astype(np.float32)
        if keep is not None:
            u[~keep] = 0.0
        return u


def _shape(tile) -> tuple:
    return tuple(s.stop - s.start for s in tile)


class _ThreadTuner:
    """On a CPU, time tile 2 with all threads and tile 3 with one thread; keep the faster for the rest.

    Why: on a shared or small machine (2 cores, other jobs running) OpenMP's threads wait for
    each other at every layer, and one thread can be 3x faster than two for small tiles; on an
    idle machine two threads win. Measuring beats guessing. Only used when the caller did not
    fix ``num_threads`` and there are >= 4 passes with equal tile shapes (tile 1 is a warm-up).
    """

    def __init__(self, enabled: bool) -> None:
        import torch

        self.n = torch.get_num_threads()
        self.enabled = enabled and self.n > 1
        self.calls = 0
        self.t0 = 0.0
        self.times: dict[int, float] = {}

    def before(self) -> None:
        if not self.enabled:
            return
        import torch

        self.calls += 1
        if self.calls in (2, 3):
            torch.set_num_threads(self.n if self.calls == 2 else 1)
            self.t0 = time.perf_counter()

    def after(self) -> None:
        if not self.enabled or self.calls not in (2, 3):
            return
        import torch

        self.times[self.calls] = time.perf_counter() - self.t0
        if self.calls == 3:
            # keep one thread only when it is clearly faster (10 %): two threads win on a free machine
            torch.set_num_threads(1 if self.times[3] < 0.9 * self.times[2] else self.n)
            self.enabled = False


def _first(out):
    """Deep-supervision networks return a list: the full-resolution output is the first."""
    return out[0] if isinstance(out, (list, tuple)) else out


class _Progress:
    """Turns tile counts into ``progress(stage, fraction, message)`` calls."""

    def __init__(self, fn: ProgressFn | None, total: int, n_members: int) -> None:
        self.fn, self.total, self.n_members = fn, max(total, 1), n_members
        self.done = 0
        self.member = 0

    def step(self, fold: int, n_folds: int, tile: int, n_tiles: int) -> None:
        self.done += 1
        if self.fn is None:
            return
        msg = f"fold {fold + 1}/{n_folds} tile {tile + 1}/{n_tiles}"
        if self.n_members > 1:
            msg = f"member {self.member + 1}/{self.n_members} " + msg
        self.fn(stage="inference", fraction=self.done / self.total, message=msg)


class _threads:
    """Set torch's intra-op threads for the duration of a prediction, capped at the usable cores."""

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self):
        import torch

        from .devices import available_cpu_cores

        self.before = torch.get_num_threads()
        want = self.n if self.n else min(self.before, available_cpu_cores())
        if want != self.before:
            torch.set_num_threads(int(want))
        return self

    def __exit__(self, *exc):
        import torch

        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)
        return False
