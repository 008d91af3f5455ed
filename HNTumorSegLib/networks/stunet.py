"""STU-Net (Huang et al. 2023), written so that official checkpoints load strictly.

STU-Net is a residual U-Net with six resolution stages, 3x3x3 kernels everywhere,
nearest-neighbour upsampling followed by a 1x1x1 convolution, and one segmentation head
per decoder stage. Its sizes (seed 000, seed 004 Table 4, the official trainers):

========  ======================  ==============================  ===========
size      depth (blocks/stage)    dims (channels per stage)        parameters
========  ======================  ==============================  ===========
small     1                       16, 32, 64, 128, 256, 256        14.6 M
base      1                       32, 64, 128, 256, 512, 512       58.3 M
large     2                       64, 128, 256, 512, 1024, 1024    440 M
huge      3                       96, 192, 384, 768, 1536, 1536    1.46 B
========  ======================  ==============================  ===========

(parameters: 1 input channel, 105 classes as the TotalSegmentator pre-training.)

The module tree, and therefore every ``state_dict`` key and tensor shape, equals the
official implementation (uni-medical/STU-Net, ``nnUNet-2.2/.../STUNetTrainer.py``):
``conv_blocks_context.{stage}.{block}.{conv1,norm1,conv2,norm2,conv3}``,
``upsample_layers.{u}.conv``, ``conv_blocks_localization.{u}.{block}...`` and
``seg_outputs.{u}``; ``conv3`` (the 1x1x1 projection of the residual) exists only in the
first block of a stage. The strides come from the nnU-Net plans exactly as the official
``STUNetTrainer.build_network_architecture`` takes them: ``pool_op_kernel_sizes[1:]``
cut to, or padded with ``[1, 1, 1]`` up to, five entries (:func:`stunet_strides`).

Choice: the official v2 network is left at PyTorch's default initialisation; for
training from scratch we apply nnU-Net's He initialisation (negative slope 1e-2) as the
official nnU-Net v1 STU-Net did. Loading weights overrides it either way.

Example:
    >>> import torch
    >>> net = build_stunet("small", input_channels=2, num_classes=3,
    ...                    pool_op_kernel_sizes=[[1, 1, 1]] + [[2, 2, 2]] * 4)   # the released STU-Nets pool 5 times
    >>> with torch.no_grad():
    ...     net.eval()(torch.zeros(1, 2, 32, 32, 32)).shape
    torch.Size([1, 3, 32, 32, 32])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: depth (residual blocks per stage) and dims (channels per stage) of each official size.
STUNET_CONFIGS: dict[str, dict[str, tuple[int, ...]]] = {
    "small": {"depth": (1,) * 6, "dims": tuple(16 * m for m in (1, 2, 4, 8, 16, 16))},
    "base": {"depth": (1,) * 6, "dims": tuple(32 * m for m in (1, 2, 4, 8, 16, 16))},
    "large": {"depth": (2,) * 6, "dims": tuple(64 * m for m in (1, 2, 4, 8, 16, 16))},
    "huge": {"depth": (3,) * 6, "dims": tuple(96 * m for m in (1, 2, 4, 8, 16, 16))},
}

#: nnU-Net trainer class names of the official STU-Net trainers -> size.
STUNET_TRAINERS: dict[str, str] = {}
for _size in STUNET_CONFIGS:
    STUNET_TRAINERS[f"STUNetTrainer_{_size}"] = _size
    STUNET_TRAINERS[f"STUNetTrainer_{_size}_ft"] = _size
STUNET_TRAINERS["STUNetTrainer"] = "base"  # the official base trainer is also named plainly

_KERNELS = [[3, 3, 3]] * 6


def stunet_strides(pool_op_kernel_sizes: Sequence[Sequence[int]]) -> list[list[int]]:
    """The five strides STU-Net uses for an nnU-Net plan (official trainer rule).

    nnU-Net's first entry is the stride of stage 0 (always 1); STU-Net has exactly five
    downsamplings, so the rest is cut to five or padded with ``[1, 1, 1]``.

    >>> stunet_strides([[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
    [[2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1], [1, 1, 1]]
    """
    strides = [list(map(int, s)) for s in list(pool_op_kernel_sizes)[1:]][:5]
    while len(strides) < 5:
        strides.append([1, 1, 1])
    return strides


class BasicResBlock(nn.Module):
    """conv-IN-LReLU-conv-IN + (1x1x1 projected) skip, then LReLU (official block)."""

    def __init__(self, input_channels: int, output_channels: int, kernel_size: Sequence[int] = (3, 3, 3),
                 padding: Sequence[int] = (1, 1, 1), stride: Sequence[int] | int = 1,
                 use_1x1conv: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(input_channels, output_channels, kernel_size, stride=stride, padding=padding)
        self.norm1 = nn.InstanceNorm3d(output_channels, affine=True)
        self.act1 = nn.LeakyReLU(inplace=True)
        self.conv2 = nn.Conv3d(output_channels, output_channels, kernel_size, padding=padding)
        self.norm2 = nn.InstanceNorm3d(output_channels, affine=True)
        self.act2 = nn.LeakyReLU(inplace=True)
        # None (not an Identity) so that no key appears in the state_dict, as upstream.
        self.conv3 = (nn.Conv3d(input_channels, output_channels, kernel_size=1, stride=stride)
                      if use_1x1conv else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        y += x  # in place: saves one feature map per block at inference
        return self.act2(y)


class UpsampleLayerNearest(nn.Module):
    """Nearest-neighbour upsampling by the stage stride, then a 1x1x1 convolution."""

    def __init__(self, input_channels: int, output_channels: int, pool_op_kernel_size: Sequence[int],
                 mode: str = "nearest"):
        super().__init__()
        self.conv = nn.Conv3d(input_channels, output_channels, kernel_size=1)
        self.pool_op_kernel_size = [float(k) for k in pool_op_kernel_size]
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=self.pool_op_kernel_size, mode=self.mode)
        return self.conv(x)


class _DeepSupervisionSwitch(nn.Module):
    """Holds ``deep_supervision`` where nnU-Net's trainer sets it (``net.decoder``); no weights."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.deep_supervision = enabled


class STUNet(nn.Module):
    """STU-Net with the official module names (see the module docstring).

    Args:
        input_channels: image channels (e.g. 2 for CT + PET).
        num_classes: segmentation heads (background included for softmax output).
        depth: residual blocks per stage (6 entries).
        dims: channels per stage (6 entries).
        pool_op_kernel_sizes: the 5 strides between stages (see :func:`stunet_strides`).
        conv_kernel_sizes: 6 kernel sizes; the official trainers always use 3x3x3.
        enable_deep_supervision: return one output per decoder stage (highest resolution
            first) instead of the full-resolution logits only. Off for inference.
    """

    def __init__(self, input_channels: int, num_classes: int, depth: Sequence[int] = (1,) * 6,
                 dims: Sequence[int] = (32, 64, 128, 256, 512, 512),
                 pool_op_kernel_sizes: Sequence[Sequence[int]] | None = None,
                 conv_kernel_sizes: Sequence[Sequence[int]] | None = None,
                 enable_deep_supervision: bool = False, initialise: bool = True):
        super().__init__()
        pool_op_kernel_sizes = [list(p) for p in (pool_op_kernel_sizes or [[2, 2, 2]] * 5)]
        conv_kernel_sizes = [list(k) for k in (conv_kernel_sizes or _KERNELS)]
        if len(pool_op_kernel_sizes) != len(dims) - 1 or len(depth) != len(dims) \
                or len(conv_kernel_sizes) != len(dims):
            raise ValueError(f"STU-Net needs len(dims) == len(depth) == len(kernels) == len(strides) + 1, got "
                             f"dims {len(dims)}, depth {len(depth)}, kernels {len(conv_kernel_sizes)}, "
                             f"strides {len(pool_op_kernel_sizes)}")
        self.conv_op = nn.Conv3d
        self.input_channels = input_channels
        self.num_classes = num_classes
        self.pool_op_kernel_sizes = pool_op_kernel_sizes
        self.conv_kernel_sizes = conv_kernel_sizes
        self.decoder = _DeepSupervisionSwitch(enable_deep_supervision)
        pads = [[k // 2 for k in krnl] for krnl in conv_kernel_sizes]
        num_pool = len(pool_op_kernel_sizes)

        def stage(c_in: int, c_out: int, level: int, n_blocks: int, stride=1) -> nn.Sequential:
            k, p = conv_kernel_sizes[level], pads[level]
            return nn.Sequential(BasicResBlock(c_in, c_out, k, p, stride=stride, use_1x1conv=True),
                                 *[BasicResBlock(c_out, c_out, k, p) for _ in range(n_blocks - 1)])

        self.conv_blocks_context = nn.ModuleList([stage(input_channels, dims[0], 0, depth[0])])
        for d in range(1, num_pool + 1):
            self.conv_blocks_context.append(stage(dims[d - 1], dims[d], d, depth[d], pool_op_kernel_sizes[d - 1]))
        self.upsample_layers = nn.ModuleList(
            UpsampleLayerNearest(dims[-1 - u], dims[-2 - u], pool_op_kernel_sizes[-1 - u]) for u in range(num_pool))
        self.conv_blocks_localization = nn.ModuleList(
            stage(dims[-2 - u] * 2, dims[-2 - u], len(dims) - 2 - u, depth[-2 - u]) for u in range(num_pool))
        self.seg_outputs = nn.ModuleList(
            nn.Conv3d(dims[-2 - u], num_classes, kernel_size=1) for u in range(num_pool))
        if initialise:
            self.apply(_he_init)

    @property
    def input_shape_must_be_divisible_by(self) -> list[int]:
        """Per-axis product of the strides: patch sizes must be multiples of it."""
        out = [1, 1, 1]
        for s in self.pool_op_kernel_sizes:
            out = [a * int(b) for a, b in zip(out, s)]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        skips = []
        for block in self.conv_blocks_context[:-1]:
            x = block(x)
            skips.append(x)
        x = self.conv_blocks_context[-1](x)
        outputs = []
        last = len(self.conv_blocks_localization) - 1
        for u, (up, block) in enumerate(zip(self.upsample_layers, self.conv_blocks_localization)):
            x = block(torch.cat((up(x), skips[-(u + 1)]), dim=1))
            if self.decoder.deep_supervision or u == last:
                outputs.append(self.seg_outputs[u](x))
        if self.decoder.deep_supervision:
            return tuple(outputs[::-1])
        return outputs[-1]


def _he_init(module: nn.Module) -> None:
    """nnU-Net's InitWeights_He(neg_slope=1e-2) for convolutions (biases to 0)."""
    if isinstance(module, nn.Conv3d):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_stunet(size: str, input_channels: int, num_classes: int,
                 pool_op_kernel_sizes: Sequence[Sequence[int]] | None = None,
                 deep_supervision: bool = False, initialise: bool = True) -> STUNet:
    """An official-size STU-Net.

    ``pool_op_kernel_sizes`` is the nnU-Net plan's list (stage 0 first, 6 or more
    entries, converted by :func:`stunet_strides`) or ``None`` for 2x2x2 everywhere.
    """
    if size not in STUNET_CONFIGS:
        raise ValueError(f"unknown STU-Net size {size!r}; choose one of {sorted(STUNET_CONFIGS)}")
    cfg = STUNET_CONFIGS[size]
    strides = stunet_strides(pool_op_kernel_sizes) if pool_op_kernel_sizes is not None else [[2, 2, 2]] * 5
    return STUNet(input_channels, num_classes, depth=cfg["depth"], dims=cfg["dims"],
                  pool_op_kernel_sizes=strides, conv_kernel_sizes=_KERNELS,
                  enable_deep_supervision=deep_supervision, initialise=initialise)
