"""First-run dependency install: what is missing is computed from this Python's real metadata;
nothing is installed without a yes; protected packages (SimpleITK ...) are never passed to pip.

pip itself is not run (no network here): ``pip_install`` records the argument strings the
Slicer widget would hand to ``slicer.util.pip_install``.
"""

from __future__ import annotations

import importlib.metadata as metadata

import pytest

from HNTumorSegLib.install import (PROTECTED, REQUIREMENTS, TORCH_REQUIREMENT, declared_requirements,
                                   ensure_dependencies, missing, plan_closure, status)


def test_pins_have_floors_and_ceilings_for_nnunet_and_monai():
    pins = {r.split(">")[0].split("<")[0]: r for r in REQUIREMENTS}
    for name in ("nnunetv2", "monai"):
        spec = pins[name][len(name):]
        assert ">=" in spec and "<" in spec.replace("<=", ""), pins[name]


def test_missing_uses_installed_versions():
    sitk_version = metadata.version("SimpleITK")
    assert missing([f"SimpleITK=={sitk_version}", "numpy>=1"]) == []
    assert missing(["SimpleITK>=999"]) == ["SimpleITK>=999"]
    assert missing(["surely-not-installed-hntumorseg-xyz>=1"]) == ["surely-not-installed-hntumorseg-xyz>=1"]
    assert status("highdicom").installed == metadata.version("highdicom")


def test_declared_requirements_evaluate_markers_and_extras():
    reqs = {r.name.lower() for r in declared_requirements("highdicom")}
    assert "pydicom" in reqs and "itk" not in reqs  # itk only in the 'itk' extra
    assert "itk" in {r.name.lower() for r in declared_requirements("highdicom", extras=["itk"])}


def test_plan_never_installs_protected_and_reports_conflicts():
    plan = plan_closure(["highdicom>=0.1", "SimpleITK>=999", "numpy<1", "surely-not-installed-hntumorseg-xyz"])
    assert plan.install == ["surely-not-installed-hntumorseg-xyz"]
    assert any(c.startswith("SimpleITK>=999") for c in plan.conflicts)
    assert any(c.startswith("numpy<1") for c in plan.conflicts)
    assert {"simpleitk", "numpy", "torch", "vtk"} <= PROTECTED


def test_nothing_installed_when_all_present_or_declined():
    calls: list[str] = []
    assert ensure_dependencies(confirm=lambda text: pytest.fail("asked although nothing is missing"),
                               pip_install=calls.append) == []
    asked: list[str] = []
    assert ensure_dependencies(confirm=lambda text: asked.append(text) or False, pip_install=calls.append,
                               requirements=["surely-not-installed-hntumorseg-xyz>=1"]) == []
    assert calls == [] and "surely-not-installed-hntumorseg-xyz>=1" in asked[0]


def test_accepted_install_is_no_deps_and_exactly_the_missing():
    calls: list[str] = []
    done = ensure_dependencies(confirm=lambda text: True, pip_install=calls.append,
                               requirements=["surely-not-installed-hntumorseg-xyz>=1", "highdicom>=0.1"])
    assert calls == ['--no-deps "surely-not-installed-hntumorseg-xyz>=1"']
    assert done == ["surely-not-installed-hntumorseg-xyz>=1"]
    assert status(TORCH_REQUIREMENT).ok  # torch present here: neither PyTorchUtils nor pip asked for it


def test_protected_conflict_raises_instead_of_replacing():
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="SimpleITK"):
        ensure_dependencies(confirm=lambda text: pytest.fail("asked although it cannot install"),
                            pip_install=calls.append, requirements=["SimpleITK>=999"])
    assert not any("simpleitk" in c.lower() for c in calls)
