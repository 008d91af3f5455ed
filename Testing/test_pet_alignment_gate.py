"""The PET->CT alignment gate (issue 24, item 3): deterministic, checked, and never silently wrong.

* the 400 mm / 30 mm shift is recovered within 4 mm, and two separate processes with 1 and 2
  threads (``OMP_NUM_THREADS``, ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``) give the same transform;
* a PET 5 m from its CT: ``segment`` exits 2 with one line naming the shift and ``--align-pet
  force``, nothing written; with ``--align-pet force`` it is placed within 4 mm and the run's
  result JSON says how (gate failed, figures);
* ``--align-pet off`` refuses a PET off its CT and leaves one on it alone; ``force`` registers even
  an overlapping PET; the request carries the option through JSON and the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.prompts.pet_ct_registration import pet_on_ct
from HNTumorSegLib.report.qa_report import QACase, render_html
from HNTumorSegLib.vocab import AlignPet

REPO = Path(__file__).resolve().parent.parent
SHIFT = (30.0, -20.0, 400.0)      # the existing fallback test's case: 400 mm above, 30 mm aside
FAR = (0.0, 0.0, 5000.0)          # 5 m away: beyond any table travel

ONE_PROCESS = """
import json, sys
import numpy as np
from HNTumorSegLib.image import Image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.prompts.pet_ct_registration import pet_on_ct
case = make_petct_case(seed=1, in_plane=64)
pet = case["PET"]
lost = Image(pet.array, pet.spacing, tuple(np.add(pet.origin, json.loads(sys.argv[1]))), pet.direction)
print(json.dumps(pet_on_ct(case["CT"], lost).to_dict()))
"""


@pytest.fixture(scope="module")
def study():
    case = make_petct_case(seed=1, in_plane=64)
    return case["CT"], case["PET"]


def _moved(pet: Image, shift_mm) -> Image:
    return Image(pet.array, pet.spacing, tuple(np.add(pet.origin, shift_mm)), pet.direction)


def _in_process(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads),
               PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", ONE_PROCESS, json.dumps(SHIFT)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_shift_recovered_within_4mm_identical_with_1_and_2_threads():
    one, two = _in_process(1), _in_process(2)
    for found in (one, two):
        assert found["registered"] and found["gate_passed"], found
        assert np.allclose(found["translation_mm"], SHIFT, atol=4.0), found["translation_mm"]
        assert max(abs(v) for v in found["rotation_deg"]) < 2.0
        assert found["overlap_before"] == 0.0 and found["overlap_after"] > 0.9
        assert found["body_dice_after"] > 0.9
    assert np.allclose(one["translation_mm"], two["translation_mm"], atol=0.1)
    assert np.allclose(one["rotation_deg"], two["rotation_deg"], atol=0.01)
    assert one == two      # in fact the same bits (rounded to 1e-6 in the JSON)


def _petct_args(tmp_path, ct: Image, pet: Image, *extra: str) -> tuple[list[str], Path]:
    ct_path = write_image(ct, tmp_path / "ct.nii.gz")
    pet_path = write_image(pet, tmp_path / "pet.nii.gz")
    out = tmp_path / "out" / "labels.nii.gz"
    return ["segment", "--model", "demo-petct", "--input", f"CT={ct_path}", "--input", f"PET={pet_path}",
            "--output", str(out), "--device", "cpu", *extra], out


def test_pet_5m_away_exits_2_with_one_line(study, tmp_path, capsys):
    ct, pet = study
    argv, out = _petct_args(tmp_path, ct, _moved(pet, FAR), "--progress", "none")
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "alignment gate" in lines[0] and "shift 5000 mm" in lines[0] and "--align-pet force" in lines[0]
    assert "pet.nii.gz" in lines[0]
    assert not out.exists() and not out.parent.exists()


def test_force_places_a_pet_5m_away_in_process(study, tmp_path):
    """The pipeline's own record (validate_request -> ValidatedCase.alignment -> the result's JSON)."""
    from HNTumorSegLib.pipeline.validate import validate_request

    ct, pet = study
    argv, out = _petct_args(tmp_path, ct, _moved(pet, FAR))
    paths = {"CT": argv[4].split("=", 1)[1], "PET": argv[6].split("=", 1)[1]}
    case = validate_request(SegmentRequest(model="demo-petct", input_paths=paths, output_path=str(out), device="cpu",
                                           align_pet="force"))
    assert case.alignment["registered"] and not case.alignment["gate_passed"]
    assert np.allclose(case.alignment["translation_mm"], FAR, atol=4.0)
    assert case.images["PET"].same_grid(ct) and any("gate FAILED" in w for w in case.warnings)
    json.dumps(case.alignment, allow_nan=False)      # strict JSON, as fileio writes it


@pytest.mark.slow
def test_force_places_a_pet_5m_away_through_segment(study, tmp_path, capsys):
    ct, pet = study
    argv, out = _petct_args(tmp_path, ct, _moved(pet, FAR), "--progress", "json", "--align-pet", "force")
    # force: placed within 4 mm; the result JSON carries the transform, the overlaps and the failed check
    assert main(argv) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    result = [e for e in events if e["event"] == "result"][-1]
    alignment = result["info"]["alignment"]
    assert alignment["mode"] == "force" and alignment["registered"] and alignment["gate_passed"] is False
    assert alignment["failed_checks"] == ["shift 5000 mm (at most 2000)"]
    assert np.allclose(alignment["translation_mm"], FAR, atol=4.0)
    assert alignment["overlap_before"] == 0.0 and alignment["overlap_after"] > 0.9
    assert alignment["body_dice_before"] == 0.0 and alignment["body_dice_after"] > 0.9
    assert any("gate FAILED" in w and "--align-pet force" in w for w in result["info"]["warnings"])
    assert out.is_file()


def test_align_off_refuses_a_lost_pet_and_leaves_a_placed_one(study):
    ct, pet = study
    with pytest.raises(InputError, match="--align-pet off") as caught:
        pet_on_ct(ct, _moved(pet, SHIFT), mode="off", path="pet.nii.gz")
    assert "pet.nii.gz" in caught.value.one_line() and "--align-pet auto" in caught.value.one_line()
    kept = pet_on_ct(ct, pet, mode=AlignPet.OFF)
    assert not kept.registered and kept.overlap_before > 0.9


def test_force_registers_an_overlapping_pet_and_says_so(study):
    ct, pet = study
    notes: list[str] = []
    nudged = (5.0, 3.0, -20.0)            # overlaps (88 %): auto leaves it where its header puts it
    assert not pet_on_ct(ct, _moved(pet, nudged)).registered
    found = pet_on_ct(ct, _moved(pet, nudged), mode="force", warn=notes.append)
    assert found.registered and found.gate_passed and found.pet.same_grid(ct)
    assert np.allclose(found.translation_mm, nudged, atol=2.0)
    assert found.body_dice_after > found.body_dice_before and found.metric < found.metric_before
    assert len(notes) == 1 and notes[0].startswith("--align-pet force: registered") and "gate passed" in notes[0]


def test_request_carries_align_pet(tmp_path):
    req = SegmentRequest(model="demo-petct", input_paths={"CT": "ct.nii.gz", "PET": "pet.nii.gz"},
                         output_path="o.nii.gz", align_pet="FORCE")
    assert req.align_pet is AlignPet.FORCE
    assert SegmentRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    argv = req.to_argv()
    assert argv[argv.index("--align-pet") + 1] == "force"
    assert "--align-pet" not in SegmentRequest(model="m", input_paths={"CT": "c"}, output_path="o.nii.gz").to_argv()
    with pytest.raises(InputError, match="did you mean force"):
        SegmentRequest(model="m", input_paths={"CT": "c"}, output_path="o.nii.gz", align_pet="forse")


def test_qa_report_shows_the_alignment():
    alignment = {"registered": True, "mode": "force", "gate_passed": False, "failed_checks": ["shift 5000 mm"],
                 "summary": "shift (0.0, 0.0, 5000.0) mm (5000 mm)"}
    page = render_html([QACase("7", alignment=alignment), QACase("8", alignment={"registered": False})])
    assert "PET registered to the CT (force, gate FAILED: shift 5000 mm): shift (0.0, 0.0, 5000.0) mm" in page
    assert page.count("PET registered") == 1


def test_slicer_panel_option_reaches_the_request_and_the_result_reaches_the_panel(study, tmp_path):
    """The run panel's "PET to CT" combo (panel parameter ``align_pet``) goes into the worker's request;
    the finished run's alignment becomes the panel's status line (:func:`alignment_of_run`)."""
    from conftest import require_module

    require_module("slicer", "pip install slicer-core")
    from types import SimpleNamespace

    from HNTumorSegLib.prompts.pet_ct_registration import alignment_of_run
    from HNTumorSegLib.scene.logic import SegmentationSceneLogic
    from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    from HNTumorSegLib.scene.panel_params import PanelParameters
    from HNTumorSegLib.vocab import Task

    ct, pet = study
    scene = make_scene().scene
    params = PanelParameters(task=Task.PETCT, model="demo-petct", ct=volume_node_from_image(scene, ct, "CT"),
                             pet=volume_node_from_image(scene, pet, "PET"), use_boxes=False, align_pet=AlignPet.FORCE)
    (tmp_path / "work").mkdir()
    request = SegmentationSceneLogic(scene).build_request(params.to_run_parameters(), tmp_path / "work", tmp_path)
    assert request.align_pet is AlignPet.FORCE
    found = pet_on_ct(ct, _moved(pet, (4.0, 0.0, 0.0)), mode="force").to_dict()
    line = alignment_of_run(SimpleNamespace(final=SimpleNamespace(info={"alignment": found})))
    assert line.startswith("PET registered to the CT (force, gate passed): shift (") and "body overlap" in line
    assert alignment_of_run(SimpleNamespace(final=None)) == ""
