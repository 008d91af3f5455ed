"""Weights: checksums, finding the state_dict inside a checkpoint, strict loading.

Every load is strict: a network whose keys or shapes differ from the checkpoint's is a
wrong model, and silently loading part of it would give plausible-looking nonsense.
Mismatches are summarised in one line (counts and a few example keys).

Example:
    >>> import torch
    >>> net = torch.nn.Conv3d(1, 2, 3)
    >>> torch.save({"state_dict": net.state_dict(), "epoch": 10}, "fold_0.pt")
    >>> verify_sha256("fold_0.pt", sha256_file("fold_0.pt"))          # raises ModelError on mismatch
    >>> ckpt = torch.load("fold_0.pt", weights_only=True)
    >>> load_strict(net, extract_state_dict(ckpt, "fold_0.pt"), "fold_0.pt")
    >>> load_strict(torch.nn.Conv3d(1, 3, 3), extract_state_dict(ckpt, "fold_0.pt"), "fold_0.pt")
    Traceback (most recent call last):
    HNTumorSegLib.errors.ModelError: ...
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, TypeGuard

from ..errors import ModelError

if TYPE_CHECKING:   # torch is imported when weights are read
    from torch import Tensor
    from torch.nn import Module

#: keys under which checkpoints keep their weights: nnU-Net, MONAI/Auto3DSeg, Lightning-like.
STATE_DICT_KEYS = ("network_weights", "state_dict", "model", "model_state_dict", "net")
#: prefixes wrappers add (DistributedDataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise ModelError unless the file's sha256 equals ``expected`` (case-insensitive)."""
    actual = sha256_file(path)
    if actual.lower() != expected.strip().lower():
        raise ModelError(f"checksum mismatch (sha256 {actual[:12]}..., expected {expected[:12]}...)", path,
                         "the file is damaged or not the published one: download it again")


def _is_tensor_dict(obj: object) -> TypeGuard[dict[str, Tensor]]:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(checkpoint: object, path: str | Path) -> dict[str, Tensor]:
    """The state_dict inside a checkpoint: the checkpoint itself, or under a known key."""
    sd: dict[str, Tensor] | None = None
    if _is_tensor_dict(checkpoint):
        sd = checkpoint
    elif isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            inner = checkpoint.get(key)
            if _is_tensor_dict(inner):
                sd = inner
                break
    if sd is None:
        keys = ", ".join(map(str, list(checkpoint)[:6])) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ModelError(f"no network weights found in checkpoint (top level: {keys})", path,
                         f"save a state_dict, or a dict with one of the keys {', '.join(STATE_DICT_KEYS)}")
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def load_strict(network: Module, state_dict: Mapping[str, Tensor], path: str | Path, what: str = "network") -> None:
    """``network.load_state_dict(state_dict, strict=True)`` with a one-line ModelError on mismatch."""
    own = network.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {list(state_dict[k].shape)} vs network {list(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
        if shapes:
            parts.append(f"{len(shapes)} of other shape (e.g. {shapes[0]})")
        raise ModelError(f"weights do not fit the {what}: {'; '.join(parts)}", path,
                         "check that the model card / trainer, input channels and labels match these weights")
    network.load_state_dict(state_dict, strict=True)
