"""Issue 11: ``models fetch`` refuses before any download what it can (a malformed ``--sha256``, a
read-only cache) and refuses zip bombs and archives with too many members while unpacking.

No network: the URLs point at a closed port on 127.0.0.1, so a test that got as far as
downloading would fail with a connection error instead of the message asserted.
"""

from __future__ import annotations

import zipfile

import pytest

from HNTumorSegLib.errors import ModelError
from HNTumorSegLib.models.catalogue import get_entry
from HNTumorSegLib.models.download import fetch, safe_unzip
from faults_testlib import small_tmpfs

CLOSED_URL = "http://127.0.0.1:9/never.zip"
GOOD_HEX = "ab" * 32


def _entry():
    return get_entry("hntsmrg24-sztu-stunet-b")


@pytest.mark.parametrize("bad", ["xyz", "ab" * 31, "zz" * 32, GOOD_HEX + "00"])
def test_malformed_sha256_refused_before_download(tmp_path, bad):
    with pytest.raises(ModelError, match="64 hexadecimal"):
        fetch(_entry(), cache=tmp_path / "cache", sha256=bad, url=CLOSED_URL)
    assert not (tmp_path / "cache").exists()


def test_read_only_cache_is_one_model_error(tmp_path):
    with small_tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(ModelError, match="cannot write the model cache"):
            fetch(_entry(), cache=ro, sha256=GOOD_HEX, url=CLOSED_URL)


def test_zip_bomb_refused_and_nothing_unpacked(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.pth", b"\0" * (40 * 2 ** 20))     # 40 MiB of zeros: ~40 kB packed
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ModelError, match="zip bomb"):
        safe_unzip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_size_and_member_limits_are_configurable(tmp_path, monkeypatch):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}.txt", "x" * 1000)
    monkeypatch.setenv("HNTUMORSEG_MAX_UNPACK_MEMBERS", "4")
    with pytest.raises(ModelError, match="5 members"):
        safe_unzip(archive, tmp_path / "a")
    monkeypatch.delenv("HNTUMORSEG_MAX_UNPACK_MEMBERS")
    with pytest.raises(ModelError, match="more than"):
        safe_unzip(archive, tmp_path / "b", max_bytes=4000)
    assert sorted(safe_unzip(archive, tmp_path / "c")) == [f"f{i}.txt" for i in range(5)]
