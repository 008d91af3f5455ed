"""`hntumorseg models import PATH_OR_ZIP`: nnU-Net's export layout from a folder and from a zip, unsafe zips,
licences, and what `models list` / `models show` say afterwards.

The content is the REAL tiny PET/CT nnU-Net folder (``tiny_nnunet_results``, trained by nnunetv2) laid
out as ``nnUNetv2_export_model_to_zip`` writes it (``Dataset*/Trainer__Plans__config/...``), beside a
second configuration, under a test catalogue whose entry is a non-commercial, hand-downloaded
seed-004-style model (its declaration: CT, PET, the head crop).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import nnunetv2  # noqa: F401,E402  (a requirement: missing fails, never skips)

from HNTumorSegLib.cli import main  # noqa: E402

MODEL_ID = "TEST-MEDAI"
CONFIG = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _export_layout(results: Path, root: Path, second: bool = True) -> Path:
    """``root/Dataset987_.../<Trainer__Plans__config>/`` (+ a second configuration) as nnU-Net exports it."""
    dataset = root / results.parent.name
    shutil.copytree(results, dataset / CONFIG, ignore=shutil.ignore_patterns("fold_1"))
    if second:
        other = dataset / "nnUNetTrainer__nnUNetPlans__3d_lowres"
        shutil.copytree(results, other, ignore=shutil.ignore_patterns("fold_1"))
    return root


def _zip(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return zip_path


@pytest.fixture
def env(tiny_nnunet_results, tmp_path, monkeypatch):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [{
        "id": MODEL_ID, "title": "seed-004-style test model", "task": "petct", "inputs": ["CT", "PET"],
        "kind": "nnunet", "licence": "CC-BY-NC-4.0", "licence_terms": "non-commercial", "citation": "Cai L et al.",
        "manual": {"page": "https://drive.example/folder", "clicks": "click Download",
                   "command": f"hntumorseg models import ZIP --id {MODEL_ID} --accept-licence"},
        "declaration": {"task": "petct", "channels": {"0": {"input": "CT"}, "1": {"input": "PET"}},
                        "crop": {"recipe": "seed004-head"}, "licence": "CC-BY-NC-4.0"}}]}))
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(catalogue))
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))
    return tiny_nnunet_results, tmp_path


def test_import_a_folder_in_export_layout_with_several_configurations(env, capsys):
    results, tmp = env
    download = _export_layout(results, tmp / "Downloads" / "medai")
    before = {p: p.stat().st_mtime_ns for p in download.rglob("*")}
    assert main(["models", "import", str(download), "--id", MODEL_ID, "--accept-licence", "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "holds 2 models" in err and "--configuration" in err and "3d_lowres" in err
    assert main(["models", "import", str(download), "--id", MODEL_ID, "--accept-licence", "--configuration",
                 "3d_fullres", "--progress", "none"]) == 0
    installed = tmp / "cache" / "models" / MODEL_ID / CONFIG
    assert (installed / "fold_0" / "checkpoint_final.pth").read_bytes() == \
        (results / "fold_0" / "checkpoint_final.pth").read_bytes()
    manifest = json.loads((tmp / "cache" / "models" / MODEL_ID / ".complete").read_text())
    assert manifest["folder"] == CONFIG and f"{CONFIG}/plans.json" in manifest["files"]
    assert manifest["licence_terms"] == "non-commercial" and manifest["licence_accepted"] is True
    decl = json.loads((installed / "hntumorseg-declaration.json").read_text())
    assert decl["crop"]["recipe"] == "seed004-head" and decl["crop"]["size_mm"] == [200.0, 200.0, 310.0]
    assert {p: p.stat().st_mtime_ns for p in download.rglob("*")} == before   # the user's files untouched
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(MODEL_ID))
    assert "petct" in line and "manual" in line and "CC-BY-NC-4.0 [non-commercial]" in line and "installed" in line
    assert main(["models", "show", MODEL_ID]) == 0
    out = capsys.readouterr().out
    assert "channel 0 'CT': CT image (--input CT=PATH)" in out and "channel 1 'PET': PET image" in out
    assert "crop: seed004-head 200 x 200 x 310 mm at 1 mm" in out


def test_import_a_zip_in_export_layout(env, capsys):
    results, tmp = env
    zip_path = _zip(_export_layout(results, tmp / "unzipped", second=False), tmp / "medai.zip")
    assert main(["models", "import", str(zip_path), "--id", MODEL_ID, "--accept-licence", "--progress", "none"]) == 0
    installed = tmp / "cache" / "models" / MODEL_ID / CONFIG
    assert (installed / "plans.json").is_file() and (installed / "fold_0" / "checkpoint_final.pth").is_file()
    assert zip_path.is_file()
    assert sorted(p.name for p in (tmp / "cache" / "models").iterdir()) == [MODEL_ID]   # no staging left
    # the imported model loads under its id
    from HNTumorSegLib.models import load_model

    model = load_model(MODEL_ID)
    assert model.kind == "nnunet" and model.declaration.crop and model.card.task == "petct"


def test_a_zip_with_parent_members_is_refused(env, capsys):
    results, tmp = env
    zip_path = _zip(_export_layout(results, tmp / "unzipped", second=False), tmp / "evil.zip",
                    extra={"../escaped.txt": b"x"})
    assert main(["models", "import", str(zip_path), "--id", MODEL_ID, "--accept-licence", "--progress", "none"]) == 2
    assert "outside the model folder" in capsys.readouterr().err
    assert not (tmp / "escaped.txt").exists() and not (tmp / "cache" / "escaped.txt").exists()
    models = tmp / "cache" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_non_commercial_licence_needs_accept_licence(env, capsys):
    results, tmp = env
    download = _export_layout(results, tmp / "dl", second=False)
    assert main(["models", "import", str(download), "--id", MODEL_ID, "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "CC-BY-NC-4.0 (non-commercial" in err and "--accept-licence" in err
    models = tmp / "cache" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_fetch_of_a_hand_downloaded_entry_says_where_to_click(env, capsys):
    assert main(["models", "fetch", MODEL_ID, "--accept-licence"]) == 2
    err = capsys.readouterr().err
    assert "open https://drive.example/folder, click Download, then run: hntumorseg models import" in err


def test_import_without_catalogue_entry_is_unstated_and_keeps_its_own_id(env, capsys):
    results, tmp = env
    download = _export_layout(results, tmp / "my-model", second=False)
    assert main(["models", "import", str(download), "--progress", "none"]) == 2
    assert "not stated" in capsys.readouterr().err
    assert main(["models", "import", str(download), "--accept-licence", "--progress", "none"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("my-model"))
    assert "imported" in line and "[unstated]" in line
    assert main(["models", "show", "my-model"]) == 0
    assert "inferred from the channel names" in capsys.readouterr().out


def test_slicer_import_button_logic_runs_the_import_with_progress_and_licence(env):
    """scene.model_install: the plan (button, licence dialog, what to click) and the job the widget polls."""
    import time

    from HNTumorSegLib.errors import InputError
    from HNTumorSegLib.scene.model_install import InstallJob, install_plan

    results, tmp = env
    plan = install_plan(MODEL_ID)
    assert plan.action == "import" and plan.needs_acceptance and "CC-BY-NC-4.0" in plan.licence_dialog_text()
    assert plan.instructions.startswith("Not installed. open https://drive.example/folder, click Download")
    with pytest.raises(InputError, match="licence"):
        InstallJob.import_(plan, tmp / "x.zip")                 # the dialog was not accepted
    with pytest.raises(InputError, match="cannot be installed with Download"):
        InstallJob.download(plan, accepted=True)
    evil = _zip(_export_layout(results, tmp / "evil", second=False), tmp / "evil.zip", extra={"../x": b"x"})
    job = InstallJob.import_(plan, evil, accepted=True).start()
    deadline = time.monotonic() + 600  # a child that imports torch: generous for a loaded machine
    while not job.poll().done and time.monotonic() < deadline:
        time.sleep(0.1)
    state = job.poll()
    assert state.returncode == 2 and "outside the model folder" in state.error
    zip_path = _zip(_export_layout(results, tmp / "good", second=False), tmp / "good.zip")
    job = InstallJob.import_(plan, zip_path, accepted=True).start()
    deadline, seen = time.monotonic() + 600, set()
    while not job.poll().done and time.monotonic() < deadline:
        seen.add(job.poll().stage)
        time.sleep(0.05)
    state = job.poll()
    assert state.returncode == 0, state.error
    assert {"unpack", "verify"} & (seen | {state.stage})
    assert install_plan(MODEL_ID).action == ""                 # installed: no button
