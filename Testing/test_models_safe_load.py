"""Weights-only checkpoint loading: exactly numpy numbers allowed, everything else refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.errors import ModelError  # noqa: E402
from HNTumorSegLib.models.safe_load import load_checkpoint  # noqa: E402


def test_numpy_scalars_dtypes_and_arrays(tmp_path):
    ckpt = {"w": torch.ones(2), "ema": np.float64(0.5), "loss": np.float32(-0.3), "n": np.int64(7),
            "dt": np.dtype("float32"), "arr": np.arange(4, dtype=np.int16), "axes": (0, 1, 2),
            "device": torch.device("cpu")}
    torch.save(ckpt, tmp_path / "c.pth")
    before = set(map(str, torch.serialization.get_safe_globals()))
    out = load_checkpoint(tmp_path / "c.pth")
    assert out["ema"] == 0.5 and isinstance(out["ema"], np.float64) and out["n"] == 7
    assert out["dt"] == np.float32 and out["arr"].tolist() == [0, 1, 2, 3] and out["axes"] == (0, 1, 2)
    assert set(map(str, torch.serialization.get_safe_globals())) == before  # allowed only inside our loader, not globally


def test_checkpoint_written_under_numpy_1_names(tmp_path):
    """nnU-Net checkpoints from numpy 1.x name numpy.core.multiarray.scalar (no underscore)."""
    torch.save({"_best_ema": np.float64(0.8), "w": torch.zeros(3)}, tmp_path / "new.pth")
    with zipfile.ZipFile(tmp_path / "new.pth") as zin, zipfile.ZipFile(tmp_path / "old.pth", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)
    assert load_checkpoint(tmp_path / "old.pth")["_best_ema"] == 0.8


def test_object_arrays_and_other_objects_are_refused(tmp_path):
    torch.save({"arr": np.array([{"a": 1}, None], dtype=object)}, tmp_path / "o.pth")
    with pytest.raises(ModelError, match="not plain weights"):
        load_checkpoint(tmp_path / "o.pth")
    torch.save({"p": Path("/tmp")}, tmp_path / "p.pth")
    with pytest.raises(ModelError, match="of type pathlib"):
        load_checkpoint(tmp_path / "p.pth")


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(ModelError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "none.pth")
    (tmp_path / "t.pth").write_text("hello, not a checkpoint")
    with pytest.raises(ModelError, match="corrupt") as err:
        load_checkpoint(tmp_path / "t.pth")
    assert err.value.path == str(tmp_path / "t.pth") and "\n" not in err.value.one_line()
