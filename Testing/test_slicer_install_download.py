"""A Download on a fresh Slicer (issue 26, item 2): the installer ensures what it imports; size, MB, licence shown.

* the installer lists ``huggingface_hub`` (``models fetch`` of a hub entry imports it) and a
  Download asks for exactly that - not torch, not nnU-Net (:func:`HNTumorSegLib.install.requirements_for`);
* ``fetch_from_hub`` against a hub on 127.0.0.1 (:mod:`hub_server`, real HTTP through huggingface_hub)
  says the size and the licence before the first file byte is requested, as a progress event;
* during a file, progress reports the megabytes received (a watcher over the staging folder), driven
  here by a download stand-in that writes in steps and waits until each step was reported (no sleeps).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import huggingface_hub  # noqa: F401  (a requirement: missing fails, never skips)

from HNTumorSegLib.install import (ACTION_REQUIREMENTS, REQUIREMENTS, TORCH_ACTIONS, SlicerHooks,
                                   ensure_dependencies, requirements_for)
from HNTumorSegLib.models.catalogue import CatalogueEntry
from HNTumorSegLib.vocab import Task
from hub_server import FakeHub

REPO = "someone/tiny-model"
FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def test_installer_lists_what_download_imports():
    assert "huggingface_hub>=1.0" in REQUIREMENTS
    assert requirements_for("download") == ("huggingface_hub>=1.0",)
    assert "download" not in TORCH_ACTIONS and "apply" in TORCH_ACTIONS
    for action, reqs in ACTION_REQUIREMENTS.items():   # every panel action's needs are in the full first-run list
        if action != "selftest":
            assert set(reqs) <= set(REQUIREMENTS), action
    with pytest.raises(KeyError, match="unknown panel action"):
        requirements_for("frobnicate")


def test_download_on_a_fresh_slicer_installs_huggingface_hub_only():
    """Fresh Slicer: no torch, no huggingface_hub. Download asks once for huggingface_hub; torch is not touched."""
    versions: dict[str, str] = {"numpy": "2.3.4", "requests": "2.32.5"}
    asked, pip = [], []

    def pip_install(args: str):
        pip.append(args)
        versions["huggingface_hub"] = "1.2.0"

    hooks = SlicerHooks(confirm=lambda message, details: asked.append((message, details)) or True,
                        pip_install=pip_install, log=lambda line: None, installed_version=versions.get,
                        installed_versions=lambda: dict(versions), imported=())
    report = ensure_dependencies(hooks, requirements_for("download"), torch=False)
    assert report.installed == ["huggingface_hub>=1.0"] and report.torch_version is None
    assert len(asked) == 1 and asked[0][1] == "huggingface_hub>=1.0" and "small" in asked[0][0]
    assert len(pip) == 1 and "torch" not in pip[0]
    asked.clear()
    assert ensure_dependencies(hooks, requirements_for("download"), torch=False).installed == []   # asked once
    assert asked == []


@pytest.fixture
def hub(tmp_path, monkeypatch):
    files = {f"Dataset001_x/{FOLDER}/plans.json": b"{}", f"Dataset001_x/{FOLDER}/dataset.json": b"{}",
             f"Dataset001_x/{FOLDER}/fold_0/checkpoint_final.pth": bytes(range(256)) * 4096}   # 1 MiB, LFS
    server = FakeHub(REPO, files, lfs={f"Dataset001_x/{FOLDER}/fold_0/checkpoint_final.pth"})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))     # nothing written outside the test folder
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with server:
        yield server, files


def test_hub_fetch_says_size_and_licence_before_the_first_byte(hub, tmp_path):
    from HNTumorSegLib.models.hub import fetch_from_hub

    server, files = hub
    entry = CatalogueEntry(id="tiny", title="t", task=Task.MIDRT, input_names=["T2"], kind="nnunet",
                           licence="CC-BY-4.0", citation="c",
                           hub={"repo_id": REPO, "revision": server.commit, "folder": FOLDER})
    events = []

    def progress(stage, fraction, message):
        file_gets = [r for r in server.requests if "/resolve/" in r[1] and r[0] == "GET"]
        events.append((stage, fraction, message, len(file_gets)))

    folder = fetch_from_hub(entry, cache=tmp_path / "cache", progress=progress)
    assert (folder / FOLDER / "fold_0" / "checkpoint_final.pth").stat().st_size == 1 << 20
    announce = next(e for e in events if "to download" in e[2])
    total = sum(len(v) for v in files.values())
    assert announce[2] == f"tiny: 3 files, {total / 2 ** 20:.1f} MB to download; licence CC-BY-4.0"
    assert announce[3] == 0, "the size and licence came after a file was requested"
    assert events.index(announce) < next(i for i, e in enumerate(events) if e[2].startswith("file 1/3"))


def test_progress_reports_megabytes_while_a_file_downloads(tmp_path):
    """The watcher reports MB received of the whole download while one file is still arriving."""
    from HNTumorSegLib.models.hub import _watched

    staging = tmp_path / "staging"
    (staging / "done").mkdir(parents=True)
    (staging / "done" / "earlier.bin").write_bytes(b"\0" * (2 << 20))    # an earlier file: 2 MiB already counted
    reported: list[str] = []
    seen = threading.Condition()

    def progress(stage, fraction, message):
        with seen:
            reported.append(message)
            seen.notify_all()

    def wait_for(text: str) -> None:
        with seen:
            assert seen.wait_for(lambda: any(text in m for m in reported), timeout=60), (text, reported)

    def download() -> Path:   # a stand-in for hf_hub_download: writes its partial file in two steps
        part = staging / ".cache" / "x.incomplete"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"\1" * (1 << 20))
        wait_for("3.0 MB / 10.0 MB")
        with part.open("ab") as fh:
            fh.write(b"\1" * (3 << 20))
        wait_for("6.0 MB / 10.0 MB")
        return part

    path = _watched(download, staging, 2 << 20, 10 << 20, progress, every_s=0.02)
    assert path.name == "x.incomplete"
    assert any(m.startswith("3.0 MB / 10.0 MB, 30%") for m in reported)
    assert any(m.startswith("6.0 MB / 10.0 MB, 60%") for m in reported)


def test_a_failed_download_raises_in_the_callers_thread(tmp_path):
    from HNTumorSegLib.errors import ModelError
    from HNTumorSegLib.models.hub import _watched

    def download():
        raise ModelError("the hub refused x (HTTP 403)", None, "check")

    with pytest.raises(ModelError, match="HTTP 403"):
        _watched(download, tmp_path, 0, 10, lambda *a: None, every_s=0.01)
