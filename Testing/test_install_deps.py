"""First-run dependency install in Slicer (HNTumorSegLib.install): never downgrade, torch via the PyTorch extension.

Slicer is not here, so its parts are fakes that record what they were asked: ``pip_ensure``
(Slicer 5.12's ``slicer.packaging.pip_ensure``), ``pip_install`` (the older fallback) and the
PyTorch extension's ``PyTorchUtilsLogic.installTorch``. The installed versions are a dict: the
state another AI extension (TotalSegmentator, MONAIAuto3DSeg) would leave behind. The helpers
that read real metadata (``installed_version``, ``declared_requirements``) run on this venv.
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import types

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from HNTumorSegLib.install import (PROTECTED, REQUIREMENTS, TORCH_MIN, TORCH_REQUIREMENT, DependencyError,
                                   SlicerHooks, constraints_text, declared_requirements, ensure_dependencies,
                                   installed_version, installed_versions, missing, offline_help,
                                   updated_and_imported)


class FakeSlicer:
    """Slicer's Python as the hooks see it: installed versions, pip, the PyTorch extension, dialogs."""

    def __init__(self, versions: dict[str, str], with_pip_ensure=True, torch_ext_gives: str | None = "2.5.1",
                 answer=True, pip_fails=False):
        self.versions = dict(versions)
        self.calls: list[tuple] = []
        self.constraints: list[str] = []
        self.asked: list[tuple[str, str]] = []
        self.answer = answer
        self.pip_fails = pip_fails
        self.torch_ext_gives = torch_ext_gives
        self.with_pip_ensure = with_pip_ensure
        self.restarted = False

    def _apply(self, reqs):
        if self.pip_fails:
            raise subprocess.CalledProcessError(1, ["pip", "install"])
        for r in reqs:
            req = Requirement(r)
            floor = next((s.version for s in req.specifier if s.operator == ">="), "1.0")
            self.versions[req.name] = floor  # pip installs the floor here: the lowest it may

    def pip_ensure(self, requirements, constraints=None, skip_packages=None, prompt_install=True,
                   prompt_restart=True, requester=None, **kw):
        assert prompt_restart is True  # Slicer asks for a restart when an imported package changed
        self.calls.append(("pip_ensure", list(requirements), sorted(skip_packages or []), prompt_install, requester))
        self.constraints.append(open(constraints).read())
        self._apply(requirements)

    def pip_install(self, args: str):
        self.calls.append(("pip_install", args))
        parts = args.split(" -c ")
        if len(parts) == 2:
            self.constraints.append(open(parts[1].strip('"')).read())
        self._apply([p.strip('"') for p in parts[0].split('" "')])

    def install_torch(self, askConfirmation=False, torchVersionRequirement=None, **kw):
        self.calls.append(("installTorch", torchVersionRequirement))
        if self.torch_ext_gives is None:
            return None
        self.versions["torch"] = self.torch_ext_gives
        return types.SimpleNamespace(__version__=self.torch_ext_gives)

    def hooks(self, torch_extension=True) -> SlicerHooks:
        return SlicerHooks(
            confirm=lambda message, details: self.asked.append((message, details)) or self.answer,
            pip_install=self.pip_install,
            pip_ensure=self.pip_ensure if self.with_pip_ensure else None,
            torch_logic=types.SimpleNamespace(installTorch=self.install_torch) if torch_extension else None,
            restart=lambda: setattr(self, "restarted", True), log=lambda line: None,
            installed_version=self.versions.get, installed_versions=lambda: dict(self.versions), imported=["monai"])


# what TotalSegmentator + MONAIAuto3DSeg could leave: newer than our old ceilings (nnunetv2<2.9, monai<1.7)
OTHER_EXTENSIONS = {"simpleitk": "2.4.0", "numpy": "1.26.4", "nnunetv2": "2.9.3", "monai": "1.8.0",
                    "dynamic-network-architectures": "0.5.1", "pydicom": "3.0.1", "psutil": "6.0.0",
                    "scikit-image": "0.19.3"}


def _name(req: str) -> str:
    return Requirement(req).name


def test_requirements_are_floors_only():
    for r in REQUIREMENTS + (TORCH_REQUIREMENT,):
        ops = {s.operator for s in Requirement(r).specifier}
        assert ops == {">="}, r  # no ceiling, no pin: those would downgrade another extension's package


def test_nothing_downgraded_when_other_extensions_installed_newer():
    fake = FakeSlicer({**OTHER_EXTENSIONS, "torch": "2.4.0+cu121"})
    report = ensure_dependencies(fake.hooks())
    (kind, asked_for, skipped, prompt_install, requester), = fake.calls
    assert kind == "pip_ensure" and requester == "HNTumorSeg" and prompt_install is False  # we asked once already
    # only the absent package and the one below its floor; nnunetv2 2.9.3 and monai 1.8.0 stay
    assert asked_for == ["highdicom>=0.28", "scikit-image>=0.21", "huggingface_hub>=1.0"]
    assert report.installed == asked_for
    for name, before in OTHER_EXTENSIONS.items():
        assert Version(fake.versions[name]) >= Version(before), name
    assert fake.versions["nnunetv2"] == "2.9.3" and fake.versions["monai"] == "1.8.0"
    assert {"simpleitk", "numpy", "torch"} <= set(skipped)
    # constraints handed to pip: nothing may go down, Slicer's builds may not move at all
    lines = set(fake.constraints[0].splitlines())
    assert {"monai>=1.8.0", "nnunetv2>=2.9.3", "simpleitk==2.4.0", "numpy==1.26.4", "torch==2.4.0"} <= lines
    assert any("monai 1.8.0 is newer than the versions tested" in n for n in report.notes)
    assert report.torch_version == "2.4.0+cu121" and not any(c[0] == "installTorch" for c in fake.calls)
    assert "highdicom>=0.28" in fake.asked[0][1] and "torch" not in fake.asked[0][1]


def test_torch_goes_through_the_pytorch_extension_with_a_minimum():
    fake = FakeSlicer({"simpleitk": "2.4.0"})
    report = ensure_dependencies(fake.hooks(torch_extension=True))
    assert fake.calls[0] == ("installTorch", f">={TORCH_MIN}")
    assert not any(c[0] == "pip_install" and "torch" in c[1] for c in fake.calls)
    assert all("torch" not in r for c in fake.calls if c[0] == "pip_ensure" for r in c[1])
    assert report.torch_version == "2.5.1" and report.installed[0] == TORCH_REQUIREMENT
    assert "through the PyTorch extension" in fake.asked[0][1]


def test_torch_extension_result_is_checked():
    declined = FakeSlicer({}, torch_ext_gives=None)
    with pytest.raises(DependencyError, match="PyTorch was not installed"):
        ensure_dependencies(declined.hooks())
    assert not any(c[0] == "pip_ensure" for c in declined.calls)  # stops before the rest
    too_old = FakeSlicer({}, torch_ext_gives="2.1.0")
    with pytest.raises(DependencyError, match=r"older than HNTumorSeg needs \(torch>=2.3\)"):
        ensure_dependencies(too_old.hooks())
    installed_old = FakeSlicer({"torch": "2.0.1", **{_name(r): "99" for r in REQUIREMENTS}})
    with pytest.raises(DependencyError, match="PyTorch Utils"):
        ensure_dependencies(installed_old.hooks())
    assert installed_old.calls == [] and installed_old.versions["torch"] == "2.0.1"  # not replaced by us


def test_without_the_extension_torch_comes_from_pypi():
    fake = FakeSlicer({}, with_pip_ensure=False)
    ensure_dependencies(fake.hooks(torch_extension=False), requirements=["monai>=1.4"])
    assert fake.calls[0] == ("pip_install", f'"{TORCH_REQUIREMENT}"')
    assert "(from PyPI)" in fake.asked[0][1]


def test_older_slicer_fallback_uses_constraints_and_prompts_restart():
    fake = FakeSlicer({"torch": "2.5.0", "monai": "1.3.0", "numpy": "2.1.0"}, with_pip_ensure=False)
    report = ensure_dependencies(fake.hooks(), requirements=["monai>=1.4", "highdicom>=0.23"])
    kind, args = fake.calls[0]
    assert kind == "pip_install" and args.startswith('"monai>=1.4" "highdicom>=0.23" -c "')
    assert {"monai>=1.3.0", "numpy==2.1.0", "torch==2.5.0"} <= set(fake.constraints[0].splitlines())
    # monai was imported (fake sys.modules) and changed version: restart recommended and offered
    assert report.restart_recommended and fake.restarted
    assert "monai: 1.3.0 -> 1.4" in fake.asked[-1][1]


def test_nothing_asked_or_installed_when_all_present():
    fake = FakeSlicer({"torch": "2.5.0", **{_name(r): "99.0" for r in REQUIREMENTS}})
    fake.answer = None  # would fail the truth test if asked
    report = ensure_dependencies(fake.hooks())
    assert fake.calls == [] and fake.asked == [] and report.installed == []


def test_declined_installs_nothing():
    fake = FakeSlicer({}, answer=False)
    with pytest.raises(DependencyError, match="declined"):
        ensure_dependencies(fake.hooks())
    assert fake.calls == [] and len(fake.asked) == 1


def test_offline_failure_says_how_to_install_from_wheels():
    fake = FakeSlicer({"torch": "2.5.0"}, pip_fails=True)
    with pytest.raises(DependencyError) as err:
        ensure_dependencies(fake.hooks(), requirements=["monai>=1.4"])
    text = str(err.value)
    assert "no internet" in text and "pip download -d hntumorseg-wheels" in text
    assert "--no-index --find-links=" in text and '"monai>=1.4"' in text
    assert offline_help(["a>=1"]).count('"a>=1"') == 2


def test_constraints_text_and_restart_detection_on_real_metadata():
    real = installed_versions()
    text = constraints_text(real)
    assert f"simpleitk=={metadata.version('SimpleITK')}" in text.splitlines()
    assert f"highdicom>={metadata.version('highdicom')}" in text.splitlines()
    assert not any("+" in line for line in text.splitlines())  # local labels ("+cpu") are not allowed in >=
    assert updated_and_imported({"monai": "1.3"}, {"monai": "1.4", "scipy": "2"}, ["monai.networks", "os"]) \
        == ["monai: 1.3 -> 1.4"]
    assert updated_and_imported({"scipy": "1"}, {"scipy": "2"}, ["os"]) == []


def test_missing_and_metadata_helpers_read_this_python():
    sitk_version = metadata.version("SimpleITK")
    assert missing([f"SimpleITK>={sitk_version}", "numpy>=1"]) == []
    assert missing(["SimpleITK>=999"]) == ["SimpleITK>=999"]
    assert missing(["surely-not-installed-hntumorseg-xyz>=1"]) == ["surely-not-installed-hntumorseg-xyz>=1"]
    assert installed_version("highdicom") == metadata.version("highdicom")
    reqs = {r.name.lower() for r in declared_requirements("highdicom")}
    assert "pydicom" in reqs
    assert {"simpleitk", "numpy", "torch", "vtk"} <= PROTECTED
