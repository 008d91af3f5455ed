"""The real-file DICOM corpus of the tests (issue 25): its index and a folder for each entry.

Why: the phantom writer makes conformant series; files from scanners, planning systems and
other tools find defects it cannot. ``Testing/corpus/index.json`` lists each entry (vendor,
modality, transfer syntax, character set, what it tests, how it is used) and where its files
come from: pydicom's own test files and the ``pydicom-data`` package (both installed, never
downloaded here), small files vendored under ``Testing/corpus/<source>/`` (licence and README
beside them), or *derived* at test time from another entry - a character set grafted on as raw
bytes, or the pixels re-encoded in another transfer syntax - deterministically (same bytes on
every run). Nothing is fetched at test time.

    >>> folder = materialise("pydicom-ct5n", tmp_path)     # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import conftest
import numpy as np

CORPUS = conftest.TESTING / "corpus"
INDEX = CORPUS / "index.json"
USES = ("source", "read", "refused", "contours")


@lru_cache(maxsize=1)
def index() -> dict:
    return json.loads(INDEX.read_text(encoding="utf-8"))


def entries(use: str | None = None) -> list[dict]:
    assert use is None or use in USES, use
    return [e for e in index()["entries"] if use is None or e["use"] == use]


def entry(entry_id: str) -> dict:
    found = [e for e in index()["entries"] if e["id"] == entry_id]
    assert len(found) == 1, entry_id
    return found[0]


def origin_root(origin: str) -> Path:
    """The folder an origin's ``root`` paths are relative to (the installed packages or the corpus)."""
    if origin == "vendored":
        return CORPUS
    if origin == "pydicom":
        return Path(str(conftest.require_module("pydicom.data").__file__)).parent
    if origin == "pydicom-data":
        store = conftest.require_module("data_store", "pip install -r requirements-test.txt (pydicom-data)")
        return Path(str(store.__file__)).parent / "data"
    raise AssertionError(origin)


def source_files(e: dict) -> list[tuple[Path, Path]]:
    """(file, path relative to the entry's folder) of a non-derived entry, sorted."""
    root = origin_root(e["origin"]) / e["root"]
    found = sorted({p for pattern in e["files"] for p in root.glob(pattern) if p.is_file()})
    assert found, f"{e['id']}: no file matches {e['files']} under {root}"
    return [(p, p.relative_to(root)) for p in found]


def materialise(entry_id: str, dest: Path) -> Path:
    """A fresh folder ``dest/<id>`` holding the entry's files (copies: tests may not touch the originals)."""
    e = entry(entry_id)
    out = Path(dest) / entry_id
    if out.exists():
        return out
    if e["origin"] == "derived":
        _derive(e, out, dest)
        return out
    for f, rel in source_files(e):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out / rel)
    return out


def _derive(e: dict, out: Path, dest: Path) -> None:
    import pydicom

    how = e["derive"]
    base = materialise(how["from"], Path(dest) / "_bases")
    out.mkdir(parents=True)
    files = sorted(p for p in base.rglob("*") if p.is_file())
    if how.get("transfer_syntax") == "1.2.840.10008.1.2.4.70":   # JPEG lossless SV1: dcmtk's encoder
        tool = conftest.require_tool("dcmcjpeg", "Debian: dcmtk")
        for f in files:
            run = subprocess.run([tool, "+e1", str(f), str(out / f.name)], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
        return
    for f in files:
        ds = pydicom.dcmread(f)
        if "charset_of" in how:
            donor = pydicom.dcmread(origin_root("pydicom") / how["charset_of"])
            ds.SpecificCharacterSet = donor.SpecificCharacterSet
            ds.PatientName = donor.PatientName          # encoded by pydicom in the donor's character set
            ds.save_as(out / f.name)
        else:
            _transcode(ds, how["transfer_syntax"], out / f.name)


def _transcode(ds, syntax: str, path: Path) -> None:
    from pydicom.uid import UID

    uid = UID(syntax)
    if uid.is_compressed:
        # RLE: pydicom's own encoder; JPEG-LS: pyjpegls (lossless, deterministic); the same UIDs (the
        # pixels are the same), so the run is reproducible
        ds.compress(uid, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, implicit_vr=uid.is_implicit_VR, little_endian=True)


def voxels(path: Path) -> np.ndarray:
    """The rescaled voxels of one single-frame file as pydicom decodes them (JPEG lossless, which
    pydicom cannot decode without GDCM or pylibjpeg-libjpeg, by imagecodecs): independent of the
    GDCM inside SimpleITK that our reader uses."""
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        imagecodecs = conftest.require_module("imagecodecs")
        raw = imagecodecs.ljpeg_decode(next(generate_frames(ds.PixelData, number_of_frames=1)))
        pixels = raw.astype(np.int16 if int(ds.PixelRepresentation) else np.uint16)
    else:
        pixels = ds.pixel_array
    return pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)


def _tm_seconds(tm: str) -> float:
    """Seconds since midnight of a DICOM TM value (HHMMSS.FFFFFF)."""
    tm = str(tm).strip()
    return int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:] or 0)


def suv_bw_factor(path: Path) -> float:
    """SUVbw per Bq/mL of a BQML PET slice decay-corrected to START, written out from the QIBA
    formula (independent of our :mod:`HNTumorSegLib.dicom.suv`): body weight [g] / injected dose
    decayed from the injection to the series start [Bq]."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.Units == "BQML" and ds.DecayCorrection == "START", path
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    assert _tm_seconds(ds.SeriesTime) <= _tm_seconds(ds.AcquisitionTime), path     # the series time is the start
    elapsed = _tm_seconds(ds.SeriesTime) - _tm_seconds(drug.RadiopharmaceuticalStartTime)  # same day in these files
    decayed = float(drug.RadionuclideTotalDose) * 2.0 ** (-elapsed / float(drug.RadionuclideHalfLife))
    return float(ds.PatientWeight) * 1000.0 / decayed


def write_readme_table(readme: Path) -> None:
    """Put :func:`readme_table` in place of the README's table after its marker (run by hand after
    changing the index; the test checks they agree)."""
    marker = "<!-- corpus table: generated from Testing/corpus/index.json (Testing/corpus_lib.readme_table) -->\n"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(marker)
    tail = rest[rest.index("\n\n"):]
    readme.write_text(head + marker + readme_table() + tail, encoding="utf-8")


def raw_patient_name(path: Path) -> bytes:
    """The PatientName value bytes as stored (no decoding)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    raw = ds.get_item(0x00100010)
    return bytes(raw.value or b"")


def readme_table() -> str:
    """The README 'DICOM corpus' table, one row per entry of the index."""
    rows = ["| entry | vendor | modality | transfer syntax | character set | use |",
            "|---|---|---|---|---|---|"]
    for e in entries():
        use = e["use"] + (f' ("{e["message"]}")' if e["use"] == "refused" else "")
        charset = e["charset"].replace("\\", "\\\\")
        rows.append(f"| `{e['id']}` | {e['vendor']} | {e['modality']} | {e['transfer_syntax']} | {charset} | {use} |")
    return "\n".join(rows)
