"""The Slicer panel's model box and its Download / Import buttons, library side (no Qt; the widget binds these).

* the list per task (other tasks hidden, not-installed entries marked) and what selecting one shows;
* Download: a REAL Hugging Face fetch in a child process (``InstallJob``) against a hub on 127.0.0.1
  (:mod:`hub_server`, serving the nnU-Net folder in GradientSegHNTS's layout of :mod:`published_fixture`),
  polled as the panel's timer does, from a fresh interpreter standing in for Slicer's GUI process
  (torch and huggingface_hub never imported there); a refused licence and a changed byte leave nothing;
* Import: configurations read from a zip before the import starts, licence refusal, then the import.

The widget itself (HNTumorSeg/HNTumorSegSlicer/model_panel.py) needs the Slicer application and is
checked statically by Testing/test_ui_static.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.runner import child_env
from HNTumorSegLib.scene.model_choice import NO_MODEL_TEXT, choose_model, model_box_state, models_for_task
from HNTumorSegLib.scene.model_install import InstallJob, configurations_in, install_plan
from hub_server import FakeHub
from published_fixture import build_gradientseg_results

REPO = "JintaoRen/GradientSegHNTS"
FOLDER = "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres_bs8"
CKPT = f"Dataset504_midRT_geodist/{FOLDER}/fold_0/checkpoint_final.pth"
HUB_ID = "TEST-GradSeg-NC"


def _wait(job: InstallJob, timeout_s: float = 300):
    deadline, seen = time.monotonic() + timeout_s, []
    while not job.poll().done and time.monotonic() < deadline:
        seen.append(job.poll().percent)
        time.sleep(0.05)
    state = job.poll()
    assert state.done, "the install child did not finish"
    return state, seen


def _nothing_in(cache: Path) -> bool:
    models = cache / "models"
    return not models.exists() or not any(models.iterdir())


# ---- the list per task, as shipped -----------------------------------------------------------------
def test_shipped_list_per_task_marks_what_is_not_installed_and_says_what_to_click(tmp_path, monkeypatch):
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))
    labels = {task: [c.label for c in models_for_task(task)] for task in ("prert", "midrt", "petct")}
    assert labels["midrt"] == ["demo-midrt", "GradientSegHNTS  [not installed: Download]",
                               "GradientSegHNTS-3d_fullres  [not installed: Download]"]
    assert labels["petct"] == ["demo-petct", "HECKTOR2025-MEDAI  [not installed: Import]"]
    assert labels["prert"] == ["UW-LAIR-hntsmrg24-task1  [not installed: Import]",
                               "hntsmrg24-sztu-stunet-b  [not installed: Import]"]
    # selecting a listed-but-missing model shows its instructions and the button that applies, not an error
    grad = model_box_state(labels["midrt"][1], "midrt")
    assert grad.model == "GradientSegHNTS" and grad.can_download and not grad.can_import and not grad.can_run
    assert "press Download and type the commit hash" in grad.info_text and "Licence: Apache-2.0" in grad.info_text
    medai = model_box_state(labels["petct"][1], "petct")
    assert medai.model == "HECKTOR2025-MEDAI" and medai.can_import and not medai.can_download and not medai.can_run
    assert "drive.google.com" in medai.info_text and "then press Import" in medai.info_text
    assert "CC-BY-NC-4.0" in medai.info_text
    uw = model_box_state("UW-LAIR-hntsmrg24-task1", "prert")
    assert uw.can_import and "Dropbox" in uw.info_text and "unstated" in uw.info_text
    for task, items in labels.items():
        for label in items:
            text = model_box_state(label, task).info_text
            assert "hntumorseg " not in text and "--" not in text, text   # what to click, not which command
    # installed ones run; an empty box and another task's model say what to do
    assert model_box_state("demo-midrt", "midrt").can_run
    assert model_box_state("", "midrt").info_text == NO_MODEL_TEXT and "Browse..." in NO_MODEL_TEXT
    other = model_box_state("HECKTOR2025-MEDAI", "midrt")
    assert not (other.can_run or other.can_import) and "switch the task to petct" in other.info_text
    # Apply with a missing model: one line saying what to click
    with pytest.raises(InputError, match="is not installed yet") as err:
        choose_model(labels["petct"][1], "petct", require_installed=True)
    assert "press Import" in str(err.value) and "hntumorseg" not in str(err.value)


# ---- Download: a Hugging Face entry with a non-commercial licence and no pinned commit ---------------
@pytest.fixture
def hub(test_cache_dir, tmp_path, monkeypatch):
    folder = build_gradientseg_results(test_cache_dir)   # real nnunetv2-trained folder, cached between runs
    files = {"README.md": b"# weights\n"}
    for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
        files[f"Dataset504_midRT_geodist/{FOLDER}/{name}"] = (folder / name).read_bytes()
    server = FakeHub(REPO, files, lfs={CKPT})
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [{
        "id": HUB_ID, "title": "GradientSegHNTS layout, NC licence for the test", "task": "midrt",
        "inputs": ["T2", "gradient_map"], "kind": "nnunet", "licence": "CC-BY-NC-4.0", "licence_terms": "non-commercial",
        "citation": "Ren J et al.", "homepage": "https://huggingface.co/" + REPO,
        "hub": {"repo_id": REPO, "revision": None, "folder": FOLDER},
        "declaration": {"task": "midrt", "channels": {"0": {"input": "T2"},
                                                      "1": {"derived": "gradient", "from": "T2", "recipe": "seed003"}},
                        "box_margin_vox": 4}}]}))
    for key, value in {"HNTUMORSEG_CATALOGUE": catalogue, "HNTUMORSEG_CACHE": tmp_path / "cache",
                       "HF_ENDPOINT": server.url, "HF_HOME": tmp_path / "hf-home", "HF_HUB_DISABLE_TELEMETRY": "1",
                       "HF_HUB_DISABLE_XET": "1"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with server:
        yield server, tmp_path / "cache"


GUI_PROCESS = r"""
import json, sys, time
from HNTumorSegLib.scene.model_choice import model_box_state, models_for_task
from HNTumorSegLib.scene.model_install import InstallJob, install_plan
label = [c.label for c in models_for_task("midrt") if c.id == sys.argv[1]][0]
state = model_box_state(label, "midrt")
plan = install_plan(state.model)
job = InstallJob.download(plan, revision=sys.argv[2], accepted=True).start()   # the licence dialog said Yes
percents, stages = [], set()
while not job.poll().done:
    s = job.poll(); percents.append(s.percent); stages.add(s.stage); time.sleep(0.05)
s = job.poll()
after = model_box_state(state.model, "midrt")
print(json.dumps({"label": label, "can_download": state.can_download, "needs": [plan.needs_acceptance, plan.needs_revision],
                  "rc": s.returncode, "error": s.error, "text": s.stage_text(), "percents": percents,
                  "stages": sorted(stages | {s.stage}), "can_run_after": after.can_run, "info_after": after.info_text,
                  "label_after": [c.label for c in models_for_task("midrt") if c.id == sys.argv[1]][0],
                  "gui_imported": [m for m in ("torch", "huggingface_hub", "nnunetv2") if m in sys.modules]}))
"""


@pytest.mark.slow   # a local model hub: ~38 s of set-up (default run kept under 15 min)
def test_download_runs_in_a_child_with_progress_and_keeps_the_gui_process_light(hub):
    server, cache = hub
    out = subprocess.run([sys.executable, "-c", GUI_PROCESS, HUB_ID, server.commit], capture_output=True, text=True,
                         timeout=600, env=child_env())
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["label"] == f"{HUB_ID}  [not installed: Download]" and got["can_download"]
    assert got["needs"] == [True, True]                           # licence dialog, then the commit
    assert got["rc"] == 0, got["error"]
    assert got["text"] == "Installed: press Apply to run it."
    assert got["gui_imported"] == []                              # fetch ran in the child
    assert max(got["percents"]) > 0 and got["percents"] == sorted(got["percents"])   # the bar only moves forward
    assert got["can_run_after"] and got["label_after"] == HUB_ID and "Not installed" not in got["info_after"]
    assert (cache / "models" / HUB_ID / FOLDER / "fold_0" / "checkpoint_final.pth").read_bytes() == \
        server.files[CKPT]
    assert any(m == "GET" and p.endswith(CKPT) for m, p, _ in server.requests)
    assert choose_model(HUB_ID, "midrt", require_installed=True).installed   # Apply accepts it


@pytest.mark.slow   # a local model hub: ~38 s of set-up (default run kept under 15 min)
def test_download_refused_licence_bad_commit_and_changed_byte_leave_nothing(hub):
    server, cache = hub
    plan = install_plan(HUB_ID)
    assert plan.action == "download" and plan.needs_acceptance and plan.needs_revision
    assert "CC-BY-NC-4.0" in plan.licence_dialog_text() and "non-commercial" in plan.licence_dialog_text()
    with pytest.raises(InputError, match="licence .* was not accepted"):       # the dialog said No
        InstallJob.download(plan, revision=server.commit, accepted=False)
    with pytest.raises(InputError, match="'main' is not a commit"):           # a branch moves: refused at once
        InstallJob.download(plan, revision="main", accepted=True)
    with pytest.raises(InputError, match="no commit given"):
        InstallJob.download(plan, revision="  ", accepted=True)
    assert server.requests == [] and _nothing_in(cache)                       # nothing asked, nothing written
    server.tamper.add(CKPT)
    state, _ = _wait(InstallJob.download(plan, revision=server.commit, accepted=True).start())
    assert state.returncode == 2 and "checksum mismatch" in state.error and not state.ok
    assert state.stage_text() == state.error                                  # the panel shows the one line
    assert _nothing_in(cache)
    assert model_box_state(HUB_ID, "midrt").can_download                      # still offered, still marked


# ---- Import: configuration asked before, licence refusal, import ------------------------------------
def test_import_asks_the_configuration_refuses_without_licence_then_installs(tiny_nnunet_results, tmp_path,
                                                                             monkeypatch):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [{
        "id": "TEST-MANUAL", "title": "hand-downloaded", "task": "petct", "inputs": ["CT", "PET"], "kind": "nnunet",
        "licence": "unstated: ask the authors", "licence_terms": "unstated", "citation": "c",
        "manual": {"page": "https://drive.example/f", "clicks": "click Download", "command": "(command line)"}}]}))
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(catalogue))
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))
    export = tmp_path / "unzipped"
    for config in ("3d_fullres", "3d_lowres"):
        dest = export / tiny_nnunet_results.parent.name / f"nnUNetTrainer__nnUNetPlans__{config}"
        for p in tiny_nnunet_results.rglob("*"):
            if p.is_file() and "fold_1" not in p.parts:
                (dest / p.relative_to(tiny_nnunet_results)).parent.mkdir(parents=True, exist_ok=True)
                (dest / p.relative_to(tiny_nnunet_results)).write_bytes(p.read_bytes())
    zip_path = tmp_path / "download.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:   # files only, no folder entries (as Google Drive zips)
        for p in sorted(export.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(export).as_posix())
    names = ["nnUNetTrainer__nnUNetPlans__3d_fullres", "nnUNetTrainer__nnUNetPlans__3d_lowres"]
    assert configurations_in(zip_path) == names and configurations_in(export) == names   # the panel asks which
    assert configurations_in(tmp_path / "missing.zip") == []
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    assert configurations_in(tmp_path / "broken.zip") == []   # no question; the import says what is wrong
    state = model_box_state("TEST-MANUAL  [not installed: Import]", "petct")
    assert state.can_import and "open https://drive.example/f, click Download, then press Import" in state.info_text
    plan = install_plan("TEST-MANUAL")
    assert plan.action == "import" and plan.needs_acceptance and "unstated" in plan.licence_dialog_text()
    with pytest.raises(InputError, match="was not accepted"):
        InstallJob.import_(plan, zip_path, accepted=False)
    assert _nothing_in(tmp_path / "cache")
    job = InstallJob.import_(plan, zip_path, accepted=True, configuration="3d_lowres").start()
    state, _ = _wait(job)
    assert state.ok, state.error
    installed = tmp_path / "cache" / "models" / "TEST-MANUAL" / names[1]
    assert (installed / "fold_0" / "checkpoint_final.pth").is_file()
    after = model_box_state("TEST-MANUAL", "petct")
    assert after.can_run and not after.can_import and [c.label for c in models_for_task("petct")] == ["TEST-MANUAL"]
