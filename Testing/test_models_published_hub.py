"""`hntumorseg models fetch` of a Hugging Face entry, against a hub on 127.0.0.1 (HF_ENDPOINT; no real network).

The repository served holds a REAL nnU-Net folder in GradientSegHNTS's layout (trained by nnunetv2 in
:mod:`published_fixture`) nested like a release (``Dataset.../nnUNetTrainer__...__3d_fullres_bs8/``),
a second results folder, and a README. The checkpoint is an LFS file (hub sha256), the JSON files
are plain git blobs (hub blob id). huggingface_hub does the HTTP (:mod:`hub_server` answers the
endpoints it calls).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import huggingface_hub  # noqa: F401,E402  (a requirement: missing fails, never skips)
import nnunetv2  # noqa: F401,E402  (a requirement: missing fails, never skips)

from HNTumorSegLib.cli import main  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from published_fixture import build_gradientseg_results, gradientseg_test_cases  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = "JintaoRen/GradientSegHNTS"
FOLDER = "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres_bs8"
CKPT = f"Dataset504_midRT_geodist/{FOLDER}/fold_0/checkpoint_final.pth"


@pytest.fixture(scope="module")
def released(test_cache_dir):
    folder = build_gradientseg_results(test_cache_dir)
    files = {"README.md": b"# GradientSegHNTS weights\n",
             "Dataset504_midRT_geodist/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json": b"{}"}
    for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
        files[f"Dataset504_midRT_geodist/{FOLDER}/{name}"] = (folder / name).read_bytes()
    return folder, files


@pytest.fixture
def hub_env(released, tmp_path, monkeypatch):
    folder, files = released
    hub = FakeHub(REPO, files, lfs={CKPT})
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [{
        "id": "GradientSegHNTS", "title": "t", "task": "midrt", "inputs": ["T2", "gradient_map"], "kind": "nnunet",
        "licence": "Apache-2.0", "citation": "Ren J et al.", "licence_terms": "open",
        "hub": {"repo_id": REPO, "revision": hub.commit, "folder": FOLDER},
        "declaration": {"task": "midrt", "channels": {"0": {"input": "T2"},
                                                      "1": {"derived": "gradient", "from": "T2", "recipe": "seed003"}},
                        "box_margin_vox": 4, "licence": "Apache-2.0", "citation": "Ren J et al."}}]}))
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(catalogue))
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))     # nothing written outside the test folder
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub writes what it received in 10 MB chunks, so a connection dropped inside the first
    # chunk of a file leaves nothing to resume from; the tiny test checkpoint (~0.6 MB) needs small chunks
    # for the drop to fall after a written chunk, as it does in the released checkpoints (hundreds of MB)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    with hub:
        yield hub, files, tmp_path / "cache"


def test_fetch_resumes_after_a_dropped_connection_and_installs_the_verified_folder(hub_env, capsys):
    hub, files, cache = hub_env
    size = len(files[CKPT])
    hub.drop_once[CKPT] = size // 2
    assert main(["models", "fetch", "GradientSegHNTS", "--progress", "none"]) == 0
    assert "installed in" in capsys.readouterr().out
    gets = [(path, rng) for method, path, rng in hub.requests if method == "GET" and path.endswith(CKPT)]
    assert len(gets) >= 2 and gets[0][1] is None
    assert any(rng and int(rng.split("=")[1].split("-")[0]) > 0 for _, rng in gets[1:]), gets  # resumed, not restarted
    installed = cache / "models" / "GradientSegHNTS" / FOLDER
    for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
        assert (installed / name).read_bytes() == files[f"Dataset504_midRT_geodist/{FOLDER}/{name}"]
    manifest = json.loads((cache / "models" / "GradientSegHNTS" / ".complete").read_text())
    assert manifest["revision"] == hub.commit and f"{FOLDER}/fold_0/checkpoint_final.pth" in manifest["files"]
    assert (installed / "hntumorseg-declaration.json").is_file()
    assert not [p for p in (cache / "models").iterdir() if p.name != "GradientSegHNTS"]   # no staging left
    assert not any(p.name == "README.md" for p in installed.rglob("*"))    # only the results folder
    assert main(["models", "verify", "GradientSegHNTS", "--no-load"]) == 0
    assert main(["models", "show", "GradientSegHNTS"]) == 0
    out = capsys.readouterr().out
    assert "gradient map made from T2" in out and "inferred" not in out   # the catalogue's declaration


def test_fetched_model_segments_by_id(hub_env, tmp_path, test_cache_dir, capsys):
    hub, files, cache = hub_env
    assert main(["models", "fetch", "GradientSegHNTS", "--progress", "none"]) == 0
    case = gradientseg_test_cases(build_gradientseg_results(test_cache_dir))[0]
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", "--model", "GradientSegHNTS", "--input", f"T2={case['T2']}", "--prior", str(case["prior"]),
                 "--output", str(out), "--device", "cpu", "--no-tta", "--progress", "none"]) == 0
    from HNTumorSegLib.image import read_image

    assert np.count_nonzero(read_image(out, label=True).array) > 0


def test_a_changed_byte_is_refused_and_nothing_is_left(hub_env, capsys):
    hub, files, cache = hub_env
    hub.tamper.add(CKPT)
    assert main(["models", "fetch", "GradientSegHNTS", "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "checkpoint_final.pth" in err
    models = cache / "models"
    assert not models.exists() or not any(models.iterdir())


def test_revision_must_be_the_pinned_commit(hub_env, capsys):
    hub, files, cache = hub_env
    assert main(["models", "fetch", "GradientSegHNTS", "--revision", "main"]) == 2
    assert "differs from the catalogue's pinned revision" in capsys.readouterr().err
    assert not any(method == "GET" for method, _, _ in hub.requests)   # refused before any request


def test_revision_given_by_the_user_must_be_a_commit(hub_env, capsys, monkeypatch, tmp_path):
    hub, files, cache = hub_env
    data = json.loads(Path(os.environ["HNTUMORSEG_CATALOGUE"]).read_text())
    data["models"][0]["hub"]["revision"] = None
    Path(os.environ["HNTUMORSEG_CATALOGUE"]).write_text(json.dumps(data))
    assert main(["models", "fetch", "GradientSegHNTS"]) == 2
    assert "has no pinned revision" in capsys.readouterr().err
    assert main(["models", "fetch", "GradientSegHNTS", "--revision", "main"]) == 2
    assert "not a 40-character commit hash" in capsys.readouterr().err
    assert main(["models", "fetch", "GradientSegHNTS", "--revision", "a" * 40, "--progress", "none"]) == 2
    assert "cannot read" in capsys.readouterr().err    # the hub does not know that commit
