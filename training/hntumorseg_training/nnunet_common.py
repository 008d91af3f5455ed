"""Helpers shared by our nnU-Net v2 trainers (kept outside ``nnunet_trainers/`` on purpose).

nnU-Net imports every module of an ``nnUNet_extTrainer`` folder as a top-level module while
it looks for a trainer class, then forgets them; so the trainer modules import only from
``hntumorseg_training`` proper, never from each other.

* :class:`ShortRunMixin`: environment variables that shorten a run (smoke tests, CI, a first
  try of a new machine) without renaming the trainer, so the results folder keeps the name
  the extension and nnUNetv2_predict expect:
  ``HNTUMORSEG_NUM_EPOCHS``, ``HNTUMORSEG_ITERS_PER_EPOCH``, ``HNTUMORSEG_VAL_ITERS``.
  Unset (the normal case), the seed's settings hold.
* :func:`unwrap`: the bare network under DDP / torch.compile wrappers.

Example:
    >>> class MyTrainer(ShortRunMixin, nnUNetTrainer): ...
    $ HNTUMORSEG_NUM_EPOCHS=2 HNTUMORSEG_ITERS_PER_EPOCH=5 nnUNetv2_train 501 3d_fullres 0 -tr MyTrainer
"""

from __future__ import annotations

import os
from typing import Any

ENV_EPOCHS = "HNTUMORSEG_NUM_EPOCHS"
ENV_ITERS = "HNTUMORSEG_ITERS_PER_EPOCH"
ENV_VAL_ITERS = "HNTUMORSEG_VAL_ITERS"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


class ShortRunMixin:
    """Applies the ``HNTUMORSEG_*`` run-length overrides after nnU-Net's ``__init__``.

    The mixin defines no ``__init__`` (nnUNetTrainer records its init arguments by
    signature); subclasses call :meth:`apply_run_length_overrides` at the end of theirs.
    """

    def apply_run_length_overrides(self) -> None:
        for env, attr in ((ENV_EPOCHS, "num_epochs"), (ENV_ITERS, "num_iterations_per_epoch"),
                          (ENV_VAL_ITERS, "num_val_iterations_per_epoch")):
            value = _env_int(env)
            if value is not None:
                setattr(self, attr, value)
        if _env_int(ENV_EPOCHS) is not None:
            self.save_every = max(1, min(getattr(self, "save_every", 50), self.num_epochs))


def unwrap(network: Any) -> Any:
    """The module under ``DistributedDataParallel`` and ``torch.compile`` wrappers."""
    mod = getattr(network, "module", network)
    return getattr(mod, "_orig_mod", mod)


def walk_transforms(transform: Any):
    """Yield every transform of a batchgeneratorsv2 pipeline, depth first (RandomTransform's
    wrapped transform right after it)."""
    yield transform
    for child in getattr(transform, "transforms", None) or []:
        yield from walk_transforms(child)
    inner = getattr(transform, "transform", None)
    if inner is not None:
        yield from walk_transforms(inner)


def deep_supervision_weights(n_outputs: int, decay: float, ddp: bool = False) -> "Any":
    """nnU-Net's deep-supervision weights with a chosen decay: ``w_i = decay**i``, lowest output
    0 (1e-6 under DDP without compile, nnU-Net's own workaround), normalised to sum 1."""
    import numpy as np

    weights = np.array([decay ** i for i in range(n_outputs)], dtype=float)
    if n_outputs > 1:
        weights[-1] = 1e-6 if ddp else 0.0
    return weights / weights.sum()
