"""Load checkpoints with ``torch.load(weights_only=True)`` and nothing else.

A checkpoint is a pickle; unpickling an arbitrary pickle runs arbitrary code. So every
weight file is read by PyTorch's restricted unpickler, which accepts tensors and plain
containers only. Real nnU-Net checkpoints also hold numpy values written by the trainer
(``_best_ema`` is a ``numpy.float64``, the logger's lists hold numpy scalars); we allow
exactly those: numpy scalars, numeric/bool dtypes, and numeric arrays (the dtype classes
are needed because unpickling a dtype calls its ``__setstate__``). Both the numpy >= 2
module names (``numpy._core``) and the numpy 1.x names (``numpy.core``) used by older
checkpoints are accepted. There is no fallback to unsafe loading: anything else is
refused with a :class:`ModelError` naming the type found.

Example:
    >>> import numpy as np, torch
    >>> torch.save({"network_weights": {"w": torch.ones(2)}, "_best_ema": np.float64(0.8)}, "checkpoint_final.pth")
    >>> ckpt = load_checkpoint("checkpoint_final.pth")      # as an nnU-Net trainer writes it: tensors, numpy
    >>> weights = ckpt["network_weights"]
    >>> weights["w"].tolist(), float(ckpt["_best_ema"])
    ([1.0, 1.0], 0.8)
    >>> import datetime                                     # any other object: refused, never run
    >>> torch.save({"x": datetime.date(2024, 1, 1)}, "evil.pth")
    >>> load_checkpoint("evil.pth")
    Traceback (most recent call last):
    HNTumorSegLib.errors.ModelError: ...
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    from torch import device as TorchDevice

_NUMERIC_DTYPE_CLASSES = (
    "BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType", "Int32DType", "UInt32DType",
    "Int64DType", "UInt64DType", "LongLongDType", "ULongLongDType", "Float16DType", "Float32DType",
    "Float64DType", "LongDoubleDType", "Complex64DType", "Complex128DType", "ByteDType", "UByteDType",
    "ShortDType", "UShortDType", "IntDType", "UIntDType", "LongDType", "ULongDType",
)


def numpy_safe_globals() -> list:
    """The numpy callables/classes a weights-only unpickler may meet in nnU-Net checkpoints."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list = []
    for fn in (multiarray.scalar, multiarray._reconstruct):
        allowed.append(fn)
        # checkpoints written under numpy 1.x name the function numpy.core.multiarray.<name>
        allowed.append((fn, f"numpy.core.multiarray.{fn.__name__}"))
        allowed.append((fn, f"numpy._core.multiarray.{fn.__name__}"))
    allowed += [np.dtype, np.ndarray]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        seen = set()
        for name in _NUMERIC_DTYPE_CLASSES:
            cls = getattr(dtypes, name, None)
            if cls is not None and cls not in seen:
                seen.add(cls)
                allowed.append(cls)
    return allowed


def load_checkpoint(path: str | Path, map_location: str | TorchDevice = "cpu") -> object:
    """Read a checkpoint with the weights-only unpickler; raise ModelError on any problem.

    Refused: a missing file, a file that is not a PyTorch checkpoint or is truncated, and a
    checkpoint holding any pickled object beyond tensors, plain containers and numpy numbers.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError("checkpoint file not found", path, "check the model folder")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "Weights only load failed" in text:
            found = _unsupported_global(text)
            raise ModelError(
                f"checkpoint holds a pickled object{' ' + found if found else ''} that is not plain weights; "
                "refused because loading it could run arbitrary code",
                path, "use a checkpoint saved with torch.save(model.state_dict()) or by nnU-Net") from None
        raise ModelError(f"checkpoint is corrupt ({_short(text)})", path,
                         "download or copy the file again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError,
            KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"checkpoint is corrupt or not a PyTorch file ({type(exc).__name__}: {_short(str(exc))})",
                         path, "download or copy the file again") from None


def _unsupported_global(text: str) -> str:
    marker = "Unsupported global: GLOBAL "
    if marker in text:
        return "of type " + text.split(marker, 1)[1].split()[0]
    return ""


def _short(text: str, limit: int = 160) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[: limit - 3] + "..."
