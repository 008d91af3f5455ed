"""Export's folder (issue 26, item 4): a folder picker, and an empty folder refused in one line.

The field (``exportDirectoryPathLineEdit``) picks folders only (``ctkPathLineEdit::Dirs``); an empty
field was ``Path("")``, the working directory, so the files landed wherever Slicer was started.
Scene logic (:func:`HNTumorSegLib.scene.review.export_folder`, used by the logic's export and the
panel) refuses it before anything is written. Real MRML nodes (slicer-core).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.review import export_folder  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402

#: The .ui in a source tree, or (self-test in an installed Slicer) in the module's Resources beside HNTumorSegTesting.
UI_CANDIDATES = (Path(__file__).resolve().parents[1] / "HNTumorSeg" / "Resources" / "UI" / "HNTumorSeg.ui",
                 Path(__file__).resolve().parents[1] / "Resources" / "UI" / "HNTumorSeg.ui")


@pytest.fixture
def result(tmp_path):
    scene = make_scene().scene
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[2:4, 4:8, 4:8] = 1
    grid = Image(labels, (1.0, 1.0, 3.0))
    t2 = volume_node_from_image(scene, grid.with_array(labels.astype(np.float32)), "T2")
    return SegmentationSceneLogic(scene), import_label_map(scene, grid, t2), t2


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_folder_is_refused_and_nothing_lands_in_the_working_directory(result, tmp_path, empty):
    logic, seg, t2 = result
    here = tmp_path / "working-directory"
    here.mkdir()
    old = os.getcwd()
    os.chdir(here)
    try:
        with pytest.raises(InputError) as info:
            logic.export(seg, t2, empty, formats=("nifti", "csv"))
    finally:
        os.chdir(old)
    assert str(info.value).startswith("no export folder chosen - choose the folder in the Export section")
    assert list(here.iterdir()) == []


def test_the_panels_folder_must_be_a_full_path_and_a_folder(tmp_path):
    with pytest.raises(InputError, match="not a full path"):
        export_folder("exports", absolute=True)
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export_folder(str(afile), absolute=True)
    assert export_folder(f"  {tmp_path}/new  ", absolute=True) == tmp_path / "new"   # made by Export


def test_a_chosen_folder_still_exports(result, tmp_path):
    logic, seg, t2 = result
    files = logic.export(seg, t2, str(tmp_path / "out"), formats=("nifti", "csv"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["T2_gtv.nii.gz", "T2_stats.csv"]
    assert set(files) == {"nifti", "csv"}


def test_the_field_picks_folders():
    ui = next((p for p in UI_CANDIDATES if p.is_file()), None)
    assert ui is not None, f"HNTumorSeg.ui is in none of {UI_CANDIDATES}"
    widget = next(w for w in ET.parse(ui).getroot().iter("widget") if w.get("name") == "exportDirectoryPathLineEdit")
    assert widget.get("class") == "ctkPathLineEdit"
    filters = next((p.find("set").text for p in widget.findall("property") if p.get("name") == "filters"), "")
    flags = set(filters.split("|"))
    assert "ctkPathLineEdit::Dirs" in flags and "ctkPathLineEdit::Files" not in flags
