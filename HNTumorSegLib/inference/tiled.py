"""Sliding-window inference for ONE network: :class:`TiledPredictor` and its :class:`TilingOptions`.

"One network" is one architecture with its cross-validation folds: the folds are the same
network trained k times, and nnU-Net averages them in logit space tile by tile, so they run
here together into one accumulator. Combining *different* networks (probability averaging,
weights) and the uncertainty map are :mod:`.ensemble_predictor`'s job.

The tiling and weighting are nnU-Net v2's (see :mod:`.tiling`), so for one nnU-Net model
:meth:`TiledPredictor.predict_logits` equals nnUNetPredictor's aggregated logits. What
differs is how the work is done: float32 accumulators (nnU-Net accumulates in float16, which
is slow on CPUs), no producer thread and no per-fold ``load_state_dict`` (every fold is its
own module), torch threads capped at the cores really available (and, on a CPU, timed: one
thread against all, :class:`_ThreadTuner`), accumulators on the CPU when the volume would not
fit in free GPU memory, and - for a :class:`~.tiling.Region` - only the tiles that matter,
accumulated only over their bounding box.

Example:
    >>> import torch
    >>> fold0, fold1 = torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Conv3d(2, 3, 3, padding=1)
    >>> x = np.zeros((2, 12, 40, 40), np.float32)              # (channels, z, y, x), normalised
    >>> tiled = TiledPredictor([fold0, fold1], (8, 32, 32), num_classes=3, device="cpu",
    ...                        options=TilingOptions(tta=True))
    >>> logits = tiled.predict_logits(x)            # torch (3, z, y, x): nnU-Net's raw logits
    >>> prob = tiled.predict_probabilities(x, region=[(slice(2, 6), slice(10, 20), slice(10, 30))])
    >>> tuple(logits.shape), prob.shape
    ((3, 12, 40, 40), (3, 12, 40, 40))
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: `import HNTumorSegLib` must not load it
    import torch
    from numpy.typing import ArrayLike
    from torch.nn import Module

from ..vocab import AccumulateOn, NetworkOutput, RegionTiling
from . import tiling
from .devices import autocast_context, free_device_memory, resolve_device
from .ensemble import EnsembleMember, as_members, background_probabilities, logits_to_probabilities
from .tiling import Region, RegionLike, Slices3, grow_region

ProgressFn = Callable[..., None]
#: What a predictor's ``networks`` may be (:func:`~.ensemble.as_members`): a module, a list of fold
#: modules, ``EnsembleMember`` objects or ``(fold modules, weight)`` pairs.
NetworksLike = Union["Module", EnsembleMember, Sequence[Union["Module", EnsembleMember, tuple[Sequence["Module"], float]]]]
#: A device as the predictors take it (``"auto"``, ``"cpu"``, ``"cuda:1"``, ``"mps"`` or a torch.device).
DeviceLike = Union[str, "torch.device", None]


@dataclass(frozen=True)
class TilingOptions:
    """How one network is run over a volume (all optional; the defaults are nnU-Net's).

    Args:
        tta: mirroring test-time augmentation over ``mirror_axes`` (8 passes in 3D).
        mirror_axes: spatial axes (0=z, 1=y, 2=x) TTA may flip (a member's own axes win).
        step: tile step as a fraction of the patch (nnU-Net: 0.5).
        use_gaussian: nnU-Net's Gaussian tile weight (else every voxel of a tile counts 1).
        use_amp: autocast on CUDA (bf16 where supported, else fp16); never on CPU/MPS.
        region_tiling: for a region, ``"fit"`` lays new tiles centred on each box (fewest tiles,
            default), ``"grid"`` keeps the full grid's tiles that touch the region (equals the
            full run inside the region exactly), ``"shrink"`` is ``"fit"`` with a box smaller
            than the patch getting a smaller tile rounded up to ``shape_divisor`` (fastest,
            less context).
        region_margin: voxels (int or per axis z, y, x) added around each region box; the grown
            boxes are where tiles run and where predictions are kept.
        shape_divisor: per-axis multiple a tile must be for the network (``"shrink"`` and
            ``low_memory``); default: the network's ``input_shape_must_be_divisible_by``.
        accumulate_on: ``"auto"`` (GPU when the accumulators fit in ``memory_fraction`` of its
            free memory, else CPU), ``"device"`` or ``"cpu"``.
        memory_fraction: the share of free GPU memory the accumulators may take in ``"auto"``.
        low_memory: the retry after a GPU out-of-memory: accumulators on the CPU and tiles about
            half the patch per axis (:func:`.tiling.reduced_patch`): slower, less context, fits.
        num_threads: torch CPU threads while predicting (default: torch's setting capped at the
            cores this process may use, then timed against one thread).
        batch_size: tiles per forward pass (default :func:`.tiling.default_batch_size`: on a CPU up to
            :data:`.tiling.CPU_BATCH_TILES` tiles of at most :data:`.tiling.CPU_BATCH_VOXELS` voxels in all, else 1).
            Labels do not depend on it (Testing/test_tiles_batch.py); the last float bits may.
    """

    tta: bool = False
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    step: float = 0.5
    use_gaussian: bool = True
    use_amp: bool = True
    region_tiling: str = RegionTiling.FIT
    region_margin: int | tuple[int, int, int] = 0
    shape_divisor: tuple[int, ...] | None = None
    accumulate_on: str = AccumulateOn.AUTO
    memory_fraction: float = 0.5
    low_memory: bool = False
    num_threads: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.step <= 1:
            raise ValueError(f"step must be in (0, 1], got {self.step}")
        object.__setattr__(self, "region_tiling", RegionTiling.parse(self.region_tiling, "region_tiling"))
        object.__setattr__(self, "accumulate_on", AccumulateOn.parse(self.accumulate_on, "accumulate_on"))
        if any(int(a) not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(f"mirror_axes must be drawn from 0, 1, 2, got {self.mirror_axes}")
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        if self.shape_divisor is not None:
            object.__setattr__(self, "shape_divisor", tuple(int(d) for d in self.shape_divisor))

    @property
    def margin_zyx(self) -> tuple[int, int, int]:
        m = self.region_margin
        z, y, x = (int(v) for v in (m if isinstance(m, (list, tuple)) else [m] * 3))
        return z, y, x


_FORWARD = [0.0]   # seconds in network forward passes in this process (issue 27's overhead figure)


def forward_seconds() -> float:
    """Seconds this process has spent in network forward passes so far (the worker reports the
    difference per request as ``timings["forward"]``: a run's overhead is its total minus that)."""
    return _FORWARD[0]


@dataclass
class TilePlan:
    """Tiles (padded coordinates), the accumulator's box, the slices undoing the padding, the padded shape."""

    tiles: list[Slices3]
    bbox: Slices3
    revert: Slices3
    padded_shape: tuple[int, ...]


class TiledPredictor:
    """Sliding window for one network and its folds (module docstring).

    Args:
        networks: a module, a list of fold modules, or one ``EnsembleMember``.
        patch_size: tile size (z, y, x) (the member's own patch wins).
        num_classes: output channels K of the network.
        device: ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``; absent -> DeviceError.
        options: :class:`TilingOptions`.
        output: ``"softmax"`` or ``"sigmoid_regions"`` (per-channel region maps; :class:`~HNTumorSegLib.vocab.NetworkOutput`), for plain modules.
        progress: ``progress(stage="inference", fraction=..., message="fold 1/2 tile 13/40")``.
    """

    def __init__(self, networks: NetworksLike, patch_size: Sequence[int], num_classes: int, device: DeviceLike = "auto",
                 options: TilingOptions | None = None, *, output: str = "softmax",
                 progress: ProgressFn | None = None) -> None:
        members = as_members(networks, output=output)
        if len(members) != 1:
            raise ValueError("a TiledPredictor runs one network (with its folds); use EnsemblePredictor for more")
        self.member: EnsembleMember = members[0]
        self.output = self.member.output
        self.options = options or TilingOptions()
        patch = tuple(int(p) for p in (self.member.patch_size or patch_size))
        if len(patch) != 3:
            raise ValueError(f"patch_size must have 3 entries (z, y, x), got {patch_size}")
        self.num_classes = int(num_classes)
        self.device = resolve_device(device)
        self.progress = progress
        self.patch_size = (tiling.reduced_patch(patch, self._divisor()) if self.options.low_memory else patch)
        self.batch_size = int(self.options.batch_size or tiling.default_batch_size(self.device.type, self.patch_size,
                                                                              self.options.low_memory))
        for net in self.member.networks:
            net.to(self.device).eval()

    @property
    def networks(self) -> list:
        return self.member.networks

    @property
    def accumulate_on(self) -> str:
        """Where the accumulators go: ``low_memory`` forces ``"cpu"``."""
        return "cpu" if self.options.low_memory else self.options.accumulate_on

    # ---- public API ---------------------------------------------------------------------
    def predict_logits(self, x: np.ndarray, region: RegionLike | None = None) -> "torch.Tensor":
        """Fold-averaged, Gaussian-aggregated logits (K, z, y, x) float32 on the CPU, whole volume.

        This is what nnUNetPredictor's ``predict_logits_from_preprocessed_data`` returns; nnU-Net's
        export (resampling back, softmax, argmax) takes it from here.

        ``region`` (as :meth:`predict_probabilities`): only its tiles run, and outside it the
        logits are :func:`background_logits` (softmax, sigmoid and argmax all give background
        there), so nnU-Net's export writes background outside the region. With
        ``region_tiling="grid"`` the logits inside the region equal the whole-volume run's.
        """
        import torch

        x = check_input(x)
        shape = x.shape[1:]
        grown = None if region is None else grow_region(region, shape, self.options.margin_zyx)
        if grown is not None and grown.is_empty:
            return torch.from_numpy(background_logits(self.num_classes, shape, self.output))
        plan = self.plan(shape, grown)
        counter = TileProgress(self.progress, len(self.networks) * len(plan.tiles), 1)
        with use_threads(self.options.num_threads), torch.inference_mode():
            logits = self._aggregate(x, plan, counter).float().cpu()
        if grown is None:
            return logits[(slice(None), *plan.revert)]
        full = background_logits(self.num_classes, plan.padded_shape, self.output)
        full[(slice(None), *plan.bbox)] = logits.numpy()
        full = np.ascontiguousarray(full[(slice(None), *plan.revert)])
        full[:, ~grown.mask_zyx] = background_logits(self.num_classes, (1, 1, 1), self.output)[:, 0, 0, 0, None]
        return torch.from_numpy(full)

    def predict_probabilities(self, x: np.ndarray, region: RegionLike | None = None, *, plan: TilePlan | None = None,
                              counter: "TileProgress | None" = None) -> np.ndarray:
        """Probabilities (K, z, y, x) float32; with ``region`` (a :class:`~.tiling.Region`, bool mask,
        slices or list of slices) only its tiles run and everything outside it is background.

        ``plan``/``counter``: given by :class:`~.ensemble_predictor.EnsemblePredictor`, which
        plans all members first to report progress over the whole run.
        """
        import torch

        x = check_input(x)
        shape = x.shape[1:]
        grown = None if region is None else grow_region(region, shape, self.options.margin_zyx)
        if grown is not None and grown.is_empty:
            return background_probabilities(self.num_classes, shape, self.output)
        plan = plan or self.plan(shape, grown)
        counter = counter or TileProgress(self.progress, len(self.networks) * len(plan.tiles), 1)
        with use_threads(self.options.num_threads), torch.inference_mode():
            logits = self._aggregate(x, plan, counter)
            p = logits_to_probabilities(logits, self.output)
            del logits
            p = self._place(p.float().cpu().numpy(), plan, shape)
        if grown is not None:   # outside the tiles' box it is background already: only the box is masked (issue 27)
            box = tuple(slice(max(b.start - r.start, 0), min(b.stop - r.start, n))
                        for b, r, n in zip(plan.bbox, plan.revert, shape))
            set_background_outside(p[(slice(None), *box)], grown.mask_zyx[box], self.output)
        return p

    def count_tiles(self, shape: Sequence[int], region: RegionLike | None = None) -> int:
        """How many tiles (per fold, TTA not counted) a prediction over ``shape`` would run."""
        shape = tuple(int(s) for s in shape)
        grown = None if region is None else grow_region(region, shape, self.options.margin_zyx)
        if grown is not None and grown.is_empty:
            return 0
        return len(self.plan(shape, grown).tiles)

    def plan(self, shape: Sequence[int], region: Region | None = None) -> TilePlan:
        """Where the tiles of a run over ``shape`` go (``region``: already grown, see :func:`grow_region`)."""
        shape = tuple(int(s) for s in shape)
        patch = self.patch_size
        pads = tiling.padding_for(shape, patch)
        padded_shape = tuple(s + lo + hi for s, (lo, hi) in zip(shape, pads))
        revert = tiling.slices3(slice(lo, lo + s) for (lo, _), s in zip(pads, shape))
        step = self.options.step
        if region is None:
            tiles = tiling.tile_slices(padded_shape, patch, step)
        elif self.options.region_tiling == "grid":
            mask = region.mask_zyx
            if padded_shape != shape:
                mask = np.zeros(padded_shape, bool)
                mask[revert] = region.mask_zyx
            tiles = tiling.tiles_touching(tiling.tile_slices(padded_shape, patch, step), mask)
        else:
            boxes = [tiling.slices3(slice(b.start + lo, b.stop + lo) for b, (lo, _) in zip(box, pads))
                     for box in region.boxes]
            divisor = self._divisor() if self.options.region_tiling == "shrink" else None
            tiles = tiling.tiles_fitting_boxes(boxes, padded_shape, patch, step, divisor=divisor)
        return TilePlan(tiles, tiling.tiles_bounding_box(tiles), revert, padded_shape)

    # ---- internals ----------------------------------------------------------------------
    def _divisor(self) -> tuple[int, ...] | None:
        if self.options.shape_divisor is not None:
            return self.options.shape_divisor
        divs = [getattr(n, "input_shape_must_be_divisible_by", None) for n in self.member.networks]
        if any(d is None for d in divs):
            return None
        d = np.max(np.array([np.broadcast_to(np.asarray(v), (3,)) for v in divs]), axis=0)
        return tuple(int(v) for v in d)

    def _aggregate(self, x: np.ndarray, plan: TilePlan, counter: "TileProgress"):
        """Gaussian-weighted, fold-averaged logits over ``plan.bbox`` (K, *bbox) as a torch tensor."""
        import torch

        patch, tiles, bbox = self.patch_size, plan.tiles, plan.bbox
        if any(lo or hi for lo, hi in tiling.padding_for(x.shape[1:], patch)):
            x, _ = tiling.pad_to_patch(x, patch)
        xt = torch.from_numpy(x)
        bshape = tuple(b.stop - b.start for b in bbox)
        acc_device = self._accumulator_device(bshape)
        logits = torch.zeros((self.num_classes, *bshape), dtype=torch.float32, device=acc_device)
        weights = torch.zeros(bshape, dtype=torch.float32, device=acc_device)
        ug = self.options.use_gaussian
        origin = [b.start for b in bbox]
        local = [tuple(slice(s.start - o, s.stop - o) for s, o in zip(t, origin)) for t in tiles]
        for loc in local:
            weights[loc] += tiling.gaussian_tensor(_shape(loc), acc_device, ug)
        member = self.member
        axes = member.mirror_axes if member.mirror_axes is not None else self.options.mirror_axes
        nets = member.networks
        batches = tiling.tile_batches(tiles, self.batch_size)
        tuner = _ThreadTuner(enabled=self.device.type == "cpu" and self.options.num_threads is None
                             and len(batches) * len(nets) >= 4
                             and len({(len(b), _shape(tiles[b[0]])) for b in batches[1:3]}) == 1)
        for fi, net in enumerate(nets):
            for batch in batches:
                # contiguous copies: convolutions on a strided view are markedly slower on CPUs
                inp = torch.stack([xt[(slice(None), *tiles[ti])] for ti in batch]).contiguous()
                inp = inp.to(self.device, non_blocking=True)
                tuner.before()
                t_fwd = time.perf_counter()
                out = self._forward(net, inp, axes if self.options.tta else ())
                _FORWARD[0] += time.perf_counter() - t_fwd
                tuner.after()
                out = out.float()
                if out.shape[1] != self.num_classes:
                    raise ValueError(f"network returned {out.shape[1]} channels, expected {self.num_classes}")
                out *= tiling.gaussian_tensor(tuple(out.shape[2:]), self.device, ug)   # in place, the batch at once
                for bi, ti in enumerate(batch):
                    logits[(slice(None), *local[ti])] += out[bi].to(acc_device)
                    counter.step(fi, len(nets), ti, len(tiles))
        weights *= len(nets)
        logits /= weights
        return logits

    def _forward(self, net, inp, axes: Sequence[int]):
        import torch

        with autocast_context(self.device, self.options.use_amp):
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
        if free is None or need > self.options.memory_fraction * free:
            return torch.device("cpu")
        return self.device

    def _place(self, p: np.ndarray, plan: TilePlan, shape: tuple) -> np.ndarray:
        """Put probabilities over ``plan.bbox`` (padded coordinates) into a full (K, *shape) array."""
        if all(b.start == 0 and b.stop == s for b, s in zip(plan.bbox, plan.padded_shape)):
            return np.ascontiguousarray(p[(slice(None), *plan.revert)])
        full = background_probabilities(self.num_classes, plan.padded_shape, self.output)
        full[(slice(None), *plan.bbox)] = p
        return np.ascontiguousarray(full[(slice(None), *plan.revert)])


def check_input(x: ArrayLike) -> np.ndarray:
    """The network input as a contiguous float32 (C, z, y, x) array (ValueError for another rank)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"input must be (channels, z, y, x), got shape {x.shape}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


#: the logit margin of "strictly background" (:func:`background_logits`): softmax of (0, -1e4) is 1.0
#: in float32 and sigmoid(-1e4) is 0.0, yet linear interpolation against real logits stays finite.
BACKGROUND_LOGIT = 1.0e4


def background_logits(num_classes: int, shape: Sequence[int], output: str) -> np.ndarray:
    """Logits (K, *shape) float32 meaning 'nothing here': the logit twin of
    :func:`.ensemble.background_probabilities` (softmax: background 0, the others -1e4; sigmoid:
    every map -1e4), for exports that take logits (nnU-Net's)."""
    out = np.full((num_classes, *shape), -BACKGROUND_LOGIT, dtype=np.float32)
    if output == NetworkOutput.SOFTMAX:
        out[0] = 0.0
    return out


def set_background_outside(prob: np.ndarray, keep_zyx: np.ndarray, output: str) -> None:
    """In place: strictly background (:func:`.ensemble.background_probabilities`) where ``keep_zyx`` is False."""
    bg = background_probabilities(prob.shape[0], (1, 1, 1), output)[:, 0, 0, 0]
    prob[:, ~keep_zyx] = bg[:, None]


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


class TileProgress:
    """Turns tile counts into ``progress(stage, fraction, message)`` calls over a whole run
    (``member`` is set by the ensemble so messages say which network runs)."""

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


class use_threads:
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
