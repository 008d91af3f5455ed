"""Loading STU-Net's official pre-trained checkpoints (TotalSegmentator pre-training) for fine-tuning.

Accepted files (read with ``torch.load(weights_only=True)`` via HNTumorSegLib's safe loader):

* nnU-Net v1 ``.model`` (the official STU-Net release): a dict with ``state_dict``;
* nnU-Net v2 ``.pth`` (``checkpoint_final.pth``): a dict with ``network_weights``;
* a bare ``state_dict``. ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are removed.

Rules (seed 000 fine-tunes STU-Net-S/B this way):

1. the segmentation heads ``seg_outputs.*`` are dropped (105 TotalSegmentator classes vs
   our 3): the new heads keep their fresh initialisation;
2. convolutions that read the input image - ``conv_blocks_context.0.0.conv1.weight`` and the
   first block's 1x1x1 projection ``conv_blocks_context.0.0.conv3.weight`` - are repeated
   cyclically over the new input channels (1 CT channel -> CT + PET, or T2 + gradient map) and
   **rescaled by c_pretrained / c_new**. Choice: the rescaling keeps the layer's output
   unchanged when every channel carries the same image, so the pre-trained activations and
   the instance-norm statistics start where pre-training left them; without it the first
   layer's response grows with the channel count;
3. every other key must exist in both with the same shape (strict): a size mismatch
   (e.g. a base checkpoint for a small trainer) is a :class:`ModelError` naming the key.

Example:
    >>> net = build_stunet("base", input_channels=2, num_classes=3)
    >>> report = load_pretrained_stunet(net, "base_ep4k.model")
    >>> report["repeated"]
    ['conv_blocks_context.0.0.conv1.weight', 'conv_blocks_context.0.0.conv3.weight']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from HNTumorSegLib.errors import ModelError

HEAD_PREFIX = "seg_outputs."
INPUT_KEYS = ("conv_blocks_context.0.0.conv1.weight", "conv_blocks_context.0.0.conv3.weight")
#: environment variable the ``_ft`` trainers read the checkpoint path from.
ENV_PRETRAINED = "HNTUMORSEG_PRETRAINED"


def read_pretrained_state(path: str | os.PathLike) -> dict:
    """The network weights of a v1 ``.model`` / v2 ``.pth`` / bare state_dict (module docstring)."""
    import torch

    from HNTumorSegLib.models.safe_load import load_checkpoint

    path = Path(path)
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("network_weights"), dict):
        state = ckpt["network_weights"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise ModelError("is not a STU-Net checkpoint (no 'state_dict' nor 'network_weights')", path,
                         "give the official .model (nnU-Net v1) or a checkpoint_final.pth (nnU-Net v2)")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def adapt_state_dict(pretrained: dict, target: dict, path: Any = None) -> tuple[dict, dict]:
    """Pretrained weights shaped for ``target`` (a state_dict) by the rules above.

    Returns ``(state, report)``; ``state`` holds every target key except the heads, ``report``
    lists ``dropped`` (pretrained heads), ``repeated`` (input convolutions) and ``heads_kept``.
    """
    import torch

    body_target = {k: v for k, v in target.items() if not k.startswith(HEAD_PREFIX)}
    body_src = {k: v for k, v in pretrained.items() if not k.startswith(HEAD_PREFIX)}
    missing = sorted(set(body_target) - set(body_src))
    unexpected = sorted(set(body_src) - set(body_target))
    if missing or unexpected:
        detail = (f"missing {missing[:3]}" if missing else "") + (" " if missing and unexpected else "") + \
                 (f"unexpected {unexpected[:3]}" if unexpected else "")
        raise ModelError(f"pre-trained checkpoint does not fit this STU-Net ({detail})", path,
                         "use the checkpoint of the same STU-Net size as the trainer (small/base/large/huge)")
    state, repeated = {}, []
    for key, want in body_target.items():
        have = body_src[key]
        if key in INPUT_KEYS and have.dim() == 5 and have.shape[0] == want.shape[0] \
                and have.shape[2:] == want.shape[2:] and have.shape[1] != want.shape[1]:
            c_src, c_new = have.shape[1], want.shape[1]
            index = torch.arange(c_new) % c_src
            have = have[:, index] * (c_src / c_new)
            repeated.append(key)
        if tuple(have.shape) != tuple(want.shape):
            raise ModelError(f"pre-trained {key} has shape {tuple(have.shape)}, this STU-Net {tuple(want.shape)}",
                             path, "use the checkpoint of the same STU-Net size as the trainer")
        state[key] = have.to(dtype=want.dtype)
    dropped = sorted(k for k in pretrained if k.startswith(HEAD_PREFIX))
    heads = sorted(k for k in target if k.startswith(HEAD_PREFIX))
    return state, {"dropped": dropped, "repeated": repeated, "heads_kept": heads}


def load_pretrained_stunet(network: Any, path: str | os.PathLike) -> dict:
    """Load ``path`` into ``network`` (DDP/compile wrappers allowed); returns the adapt report."""
    from hntumorseg_training.nnunet_common import unwrap

    module = unwrap(network)
    target = module.state_dict()
    state, report = adapt_state_dict(read_pretrained_state(path), target, path)
    merged = dict(target)
    merged.update(state)
    module.load_state_dict(merged, strict=True)
    report["loaded"] = len(state)
    return report
