"""Network architectures: STU-Net (:mod:`.stunet`), nnU-Net from plans (:mod:`.nnunet`),
MONAI SegResNetDS (:mod:`.segresnet`), and :func:`build_network` for model cards.

The submodules import torch; this package file does not, so ``import HNTumorSegLib``
stays light. Import the submodules only where inference or training runs.

Example:
    >>> from HNTumorSegLib.networks import build_network
    >>> net = build_network({"name": "STUNet", "kwargs": {"size": "small"}}, 2, 3)
"""

from __future__ import annotations

from typing import Any

from ..vocab import Architecture

ARCHITECTURES = Architecture.values()   # the words: vocab.Architecture


def build_network(architecture: dict, input_channels: int, num_classes: int,
                  deep_supervision: bool = False) -> Any:
    """Build the network a model card's ``architecture`` block describes.

    - ``STUNet``: kwargs ``{"size": "small"|"base"|"large"|"huge"}`` or explicit ``depth`` and
      ``dims``; strides as ``pool_op_kernel_sizes``: 5 STU-Net strides, or an nnU-Net plan's
      list (6 or more entries, stage 0 first), converted like the official trainer.
    - ``PlainConvUNet`` / ``ResidualEncoderUNet``: kwargs are nnU-Net's ``arch_kwargs``
      (plans.json ``architecture.arch_kwargs``, class names as strings), optionally
      ``_kw_requires_import``.
    - ``SegResNetDS``: MONAI keyword arguments over seed 002's defaults.

    ``input_channels`` / ``num_classes`` come from the card's inputs and labels.
    Raises ValueError for a kwargs mismatch (the loader turns it into a ModelError).
    """
    name = architecture.get("name")
    kwargs = dict(architecture.get("kwargs") or {})
    if name == "STUNet":
        from .stunet import STUNET_CONFIGS, STUNet, stunet_strides

        size = kwargs.pop("size", None)
        if size is not None:
            if size not in STUNET_CONFIGS:
                raise ValueError(f"unknown STU-Net size {size!r}; choose one of {sorted(STUNET_CONFIGS)}")
            kwargs.setdefault("depth", STUNET_CONFIGS[size]["depth"])
            kwargs.setdefault("dims", STUNET_CONFIGS[size]["dims"])
        strides = kwargs.pop("pool_op_kernel_sizes", None)
        if strides is not None and len(strides) != 5:
            if len(strides) < 6:
                raise ValueError("STU-Net pool_op_kernel_sizes: give 5 strides or an nnU-Net plan list (6 or more)")
            strides = stunet_strides(strides)
        unknown = set(kwargs) - {"depth", "dims", "conv_kernel_sizes"}
        if unknown or "dims" not in kwargs:
            raise ValueError(f"STUNet kwargs need size or depth+dims; unknown: {sorted(unknown)}")
        return STUNet(input_channels, num_classes, depth=kwargs["depth"], dims=kwargs["dims"],
                      pool_op_kernel_sizes=strides, conv_kernel_sizes=kwargs.get("conv_kernel_sizes"),
                      enable_deep_supervision=deep_supervision)
    if name in ("PlainConvUNet", "ResidualEncoderUNet"):
        from .nnunet import build_from_arch

        requires = kwargs.pop("_kw_requires_import", ("conv_op", "norm_op", "dropout_op", "nonlin"))
        class_name = kwargs.pop("network_class_name", name)
        try:
            return build_from_arch(class_name, kwargs, input_channels, num_classes, requires,
                                   deep_supervision=deep_supervision)
        except (TypeError, KeyError) as exc:  # missing / unknown constructor arguments
            raise ValueError(f"{name} kwargs do not fit: {type(exc).__name__} {exc}") from None
    if name == "SegResNetDS":
        from .segresnet import build_segresnet_ds

        kwargs.update(in_channels=input_channels, out_channels=num_classes)
        try:
            return build_segresnet_ds(**kwargs)
        except TypeError as exc:
            raise ValueError(f"SegResNetDS kwargs do not fit: {exc}") from None
    raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
