"""Choose the torch device an inference runs on, and how it runs there (threads, autocast).

``device="auto"`` picks CUDA, then Apple MPS, then the CPU. A device asked for by name
that is not present raises :class:`~HNTumorSegLib.errors.DeviceError` (exit 2, one line),
never a silent fall-back: a user who typed ``--device cuda`` must learn that it did not run there.
The text is read by :func:`HNTumorSegLib.vocab.parse_device` (the one parser of device words);
this module only decides what the parsed word means on this machine.

Example:
    >>> import torch
    >>> dev = resolve_device("cpu")           # "auto": the GPU when there is one
    >>> network, x = torch.nn.Conv3d(1, 2, 3, padding=1).to(dev), torch.zeros(1, 1, 4, 8, 8, device=dev)
    >>> with autocast_context(dev):
    ...     y = network(x)
    >>> tuple(y.shape)
    (1, 2, 4, 8, 8)
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: `import HNTumorSegLib` must not load it
    import torch

from ..errors import DeviceError, InputError
from ..vocab import Device, parse_device


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: Any = "auto") -> "torch.device":
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps" | torch.device`` into an available torch.device.

    Raises DeviceError when the named device is absent (no CUDA build, no GPU, index out of range).
    """
    import torch

    try:   # the one parser of device words; an unknown word is a DeviceError here (kind "device")
        name = parse_device(str(device) if isinstance(device, torch.device) else (device or Device.AUTO))
    except InputError as exc:
        raise DeviceError(exc.problem, None, exc.fix) from None
    if name == Device.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if name == Device.CPU:
        return torch.device("cpu")
    if name == Device.CUDA or name.startswith(f"{Device.CUDA}:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{name}' was asked for but no CUDA GPU is available here",
                              fix="use --device auto or --device cpu")
        dev = torch.device(name)
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' was asked for but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)",
                              fix="use --device cuda:0 or --device auto")
        return torch.device("cuda", index)
    if not _mps_available(torch):   # Device.MPS: the last word parse_device accepts
        raise DeviceError("device 'mps' was asked for but Apple MPS is not available here",
                          fix="use --device auto or --device cpu")
    return torch.device("mps")


def autocast_dtype(device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype for ``device``: bf16 on CUDA GPUs that support it, else fp16; None off CUDA.

    Why none on CPU: CPU autocast is slow on CPUs without native bf16 (nnU-Net makes the same
    choice), and MPS autocast is incomplete.
    """
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: "torch.device", enabled: bool = True):
    """A context manager running the forward pass under autocast on CUDA, a no-op elsewhere."""
    import torch

    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def available_cpu_cores() -> int:
    """Cores this process may use (CPU affinity / cgroup aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def free_device_memory(device: "torch.device") -> int | None:
    """Free bytes on a CUDA device, or None when unknown (CPU, MPS)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None
