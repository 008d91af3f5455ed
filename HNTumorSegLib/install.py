"""First-run dependency set-up inside 3D Slicer: ask once, install what is missing, never downgrade.

Other AI extensions (NNUNet, TotalSegmentator, MONAIAuto3DSeg, MONAILabel ...) share Slicer's one
Python. Installing "nnunetv2<2.9" there would *downgrade* the nnunetv2 that TotalSegmentator put
in and break it, so:

1. :data:`REQUIREMENTS` are **floors only** (the oldest versions this project works with). A
   newer installed version is left as it is; it is merely noted when it is newer than the
   versions tested here (:data:`TESTED_BELOW`), never replaced.
2. pip also gets a **constraints file** (:func:`constraints_text`): every package already
   installed may not go below its current version (``name>=installed``) and Slicer's own builds
   (:data:`PROTECTED`: SimpleITK, numpy, VTK, torch ...) stay exactly as they are
   (``name==installed``). A transitive requirement that would need a downgrade therefore makes
   pip stop with an error instead of silently replacing another extension's package.
3. torch comes from the **PyTorch extension** (``PyTorchUtils``, a build dependency of this
   extension) with a minimum version (:data:`TORCH_MIN`); it picks the CUDA build matching the
   driver, where a plain ``pip install torch`` is CPU-only on Windows. Its result is checked
   (``None`` = declined or failed; an older version = error with what to do).
4. The other packages go through ``slicer.packaging.pip_ensure`` where Slicer has it (5.12+:
   progress dialog, skip list, restart prompt); older Slicer falls back to
   ``slicer.util.pip_install`` with the same constraints and our own restart prompt.
5. Nothing is installed before the user says yes (one question listing everything). When pip
   fails (typically: no internet), the error says how to install from wheels instead
   (:func:`offline_help`).

Everything Slicer-specific is passed in (:class:`SlicerHooks`), so the logic runs in plain
Python tests with fake ``pip_ensure`` / installed versions; :func:`slicer_hooks` builds the real
ones inside Slicer.

Example (the module's Apply button):
    >>> asked = []                       # in Slicer: ensure_dependencies(slicer_hooks()); here a
    >>> hooks = SlicerHooks(confirm=lambda message, details: True,   # Python without monai, and a
    ...                     pip_install=asked.append, log=lambda line: None,   # pip that only records
    ...                     installed_version=lambda name: None if name == "monai" else installed_version(name))
    >>> report = ensure_dependencies(hooks)
    >>> report.installed, report.restart_recommended, asked
    (['monai>=1.4'], False, ['"monai>=1.4" -c "/.../hntumorseg-constraints-....txt"'])
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: What the inference worker needs beyond Slicer's own Python (torch is handled separately).
#: Floors only: see the module docstring (never downgrade another extension's packages).
REQUIREMENTS = (
    "nnunetv2>=2.5",
    "dynamic-network-architectures>=0.4",
    "monai>=1.4",
    "highdicom>=0.28",   # DICOM SEG export passes specific_character_set (0.28+); Slicer 5.12 bundles 0.27.0
    "pydicom>=2.4",
    "scikit-image>=0.21",
    "psutil>=5.9",
    "huggingface_hub>=1.0",
)
#: Versions this project was tested below (requirements.txt); newer ones are kept and only noted.
TESTED_BELOW = {"nnunetv2": "2.9", "dynamic-network-architectures": "0.5", "monai": "1.7",
                "highdicom": "0.29", "pydicom": "4", "scikit-image": "0.27", "huggingface_hub": "3"}

#: What each panel action imports beyond a fresh Slicer's own Python (its library path, in Slicer or in the
#: child it starts), and whether it needs torch. The panel asks :func:`ensure_dependencies` for exactly
#: these before the action starts, so a Download on a fresh Slicer installs huggingface_hub (small) instead
#: of failing with ModuleNotFoundError, and never waits for torch. ``Testing/test_slicer_install_fresh.py``
#: runs each action's library path in a venv holding only Slicer 5.12's bundled packages plus these.
ACTION_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "download": ("huggingface_hub>=1.0",),     # models fetch (hub entries); URL entries need nothing more
    "import": (),                              # models import: zip / folder checks, sha256 (standard library)
    "boxes": (),                               # boxes from the prior: numpy + scipy (bundled)
    "review": (),                              # volumes, lesions, comparison: metrics (numpy, scipy, SimpleITK)
    "export": ("highdicom>=0.28", "pydicom>=2.4", "scikit-image>=0.21"),   # NIfTI, CSV, DICOM SEG, RTSTRUCT
    "apply": REQUIREMENTS,                     # the worker: nnU-Net, MONAI ... and torch
    "selftest": ("pytest>=7",),                # the module's self-test runs the copied tests with pytest
}
#: The actions whose library path imports torch (the worker, the device probe): torch comes first for them.
TORCH_ACTIONS = frozenset({"apply"})


def requirements_for(action: str) -> tuple[str, ...]:
    """The requirement floors of one panel action (:data:`ACTION_REQUIREMENTS`); KeyError names the actions.

    Example:
        >>> requirements_for("download")
        ('huggingface_hub>=1.0',)
        >>> set(requirements_for("export")) <= set(REQUIREMENTS)   # every panel action's needs are in the full list
        True
        >>> requirements_for("selftest")      # not a panel action: asked for only when the self-test runs
        ('pytest>=7',)
    """
    try:
        return ACTION_REQUIREMENTS[action]
    except KeyError:
        raise KeyError(f"unknown panel action {action!r}; one of {', '.join(ACTION_REQUIREMENTS)}") from None
#: The oldest torch the worker runs with (``torch.load(weights_only=True)`` defaults, SDPA).
TORCH_MIN = "2.3"
TORCH_REQUIREMENT = f"torch>={TORCH_MIN}"
#: Slicer's own builds (or the PyTorch extension's job): pinned to the installed version, never passed to pip.
PROTECTED = frozenset(canonicalize_name(n) for n in (
    "SimpleITK", "numpy", "vtk", "torch", "torchvision", "torchaudio", "pip", "setuptools", "wheel", "requests"))
REQUESTER = "HNTumorSeg"


class DependencyError(RuntimeError):
    """Installation refused, declined or failed; the message says what to do."""


@dataclass
class SlicerHooks:
    """What the installer needs from Slicer, passed in so tests can fake it.

    ``pip_ensure``: ``slicer.packaging.pip_ensure`` (None on Slicer < 5.12); ``pip_install``:
    ``slicer.util.pip_install`` (fallback); ``torch_logic``: ``PyTorchUtils.PyTorchUtilsLogic()``
    (None when the PyTorch extension is absent); ``confirm(message, details) -> bool``;
    ``restart()``: restarts Slicer; ``installed_version(name)``; ``imported``: module names
    already imported (``sys.modules``).
    """

    confirm: Callable[[str, str], bool]
    pip_install: Callable[[str], object]
    pip_ensure: Callable[..., object] | None = None
    torch_logic: object | None = None
    restart: Callable[[], object] | None = None
    log: Callable[[str], object] = print
    installed_version: Callable[[str], str | None] | None = None
    installed_versions: Callable[[], Mapping[str, str]] | None = None
    imported: Iterable[str] | None = None

    def version_of(self, name: str) -> str | None:
        return (self.installed_version or installed_version)(name)

    def all_versions(self) -> dict[str, str]:
        return dict((self.installed_versions or installed_versions)())


@dataclass
class InstallReport:
    """What :func:`ensure_dependencies` did."""

    installed: list[str] = field(default_factory=list)
    torch_version: str | None = None
    notes: list[str] = field(default_factory=list)
    restart_recommended: bool = False


# ---- reading this Python's state ----------------------------------------------------------------
def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_versions() -> dict[str, str]:
    """``{canonical name: version}`` of every installed distribution."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonicalize_name(name)] = dist.version
    return out


def _public(version: str) -> Version | None:
    try:
        return Version(Version(version).public)  # "2.4.1+cu121" -> 2.4.1 (local labels not allowed in >=)
    except InvalidVersion:
        return None


def satisfied(requirement: str | Requirement, version: str | None) -> bool:
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate(default_environment()):
        return True
    if version is None:
        return False
    return not req.specifier or req.specifier.contains(version, prereleases=True)


def missing(requirements: Iterable[str] = REQUIREMENTS,
            version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """The requirement strings not satisfied here (absent, or older than the floor)."""
    return [r for r in requirements if not satisfied(r, version_of(Requirement(r).name))]


def declared_requirements(name: str, extras: Iterable[str] = ()) -> list[Requirement]:
    """An installed package's own requirements whose markers hold here (extras as asked)."""
    try:
        raw = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for line in raw:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None:
            envs = [dict(default_environment(), extra=e) for e in (list(extras) or [""])]
            if not any(req.marker.evaluate(env) for env in envs):
                continue
        out.append(req)
    return out


def newer_than_tested(version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """Notes for installed packages newer than tested here (kept: another extension may need them)."""
    notes = []
    for name, below in TESTED_BELOW.items():
        v = version_of(name)
        if v is not None and _public(v) is not None and _public(v) >= Version(below):
            notes.append(f"{name} {v} is newer than the versions tested with HNTumorSeg (<{below}); "
                         "it is kept as it is (other extensions may rely on it)")
    return notes


def constraints_text(versions: Mapping[str, str]) -> str:
    """pip constraints: nothing installed may go down; Slicer's own builds may not change at all."""
    lines = ["# written by HNTumorSeg: never downgrade what other extensions installed"]
    for name in sorted(versions):
        v = _public(versions[name])
        if v is None:
            continue
        key = canonicalize_name(name)
        op = "==" if key in PROTECTED else ">="
        lines.append(f"{key}{op}{v}")
    return "\n".join(lines) + "\n"


def offline_help(requirements: Iterable[str]) -> str:
    """One paragraph: how to install the same packages without internet, from wheel files."""
    reqs = " ".join(f'"{r}"' for r in requirements)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"If this computer has no internet access: on a computer with internet and Python {py} on the same "
            f"operating system, run  python -m pip download -d hntumorseg-wheels {reqs}  then copy the "
            "hntumorseg-wheels folder here and, in Slicer's Python console, run  "
            f"slicer.util.pip_install('--no-index --find-links=/path/to/hntumorseg-wheels {reqs}')  "
            "and restart Slicer.")


# ---- the steps ----------------------------------------------------------------------------------
def _check_torch(version: str | None) -> str:
    if version is None:
        raise DependencyError("PyTorch was not installed (declined, or the install failed). Install it with the "
                              f"'PyTorch Utils' module (version requirement >={TORCH_MIN}), then press Apply again.")
    v = _public(version)
    if v is None or v < Version(TORCH_MIN):
        raise DependencyError(f"PyTorch {version} is older than HNTumorSeg needs ({TORCH_REQUIREMENT}). Open the "
                              f"'PyTorch Utils' module, uninstall PyTorch, install it with version requirement "
                              f">={TORCH_MIN}, restart Slicer, then press Apply again.")
    return version


def _install_torch(hooks: SlicerHooks) -> str:
    """torch through the PyTorch extension (the matching CUDA build) or, without it, from PyPI."""
    if hooks.torch_logic is not None:
        torch = hooks.torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=f">={TORCH_MIN}")
        return _check_torch(getattr(torch, "__version__", None) if torch is not None else None)
    hooks.log("The PyTorch extension is not installed: installing torch from PyPI (CPU-only on Windows). "
              "Install the PyTorch extension from the Extensions Manager for GPU support.")
    hooks.pip_install(f'"{TORCH_REQUIREMENT}"')
    return _check_torch(hooks.version_of("torch"))


def _write_constraints(versions: Mapping[str, str]) -> str:
    fd, path = tempfile.mkstemp(prefix="hntumorseg-constraints-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(constraints_text(versions))
    return path


def updated_and_imported(before: Mapping[str, str], after: Mapping[str, str], imported: Iterable[str]) -> list[str]:
    """Packages whose version changed while they were already imported (old code still in memory)."""
    mods = {canonicalize_name(m.split(".")[0]) for m in imported}
    return [f"{name}: {before.get(name)} -> {v}" for name, v in sorted(after.items())
            if before.get(name) not in (None, v) and canonicalize_name(name) in mods]


def _install_packages(hooks: SlicerHooks, todo: list[str], report: InstallReport) -> None:
    before = hooks.all_versions()
    constraints = _write_constraints(before)
    try:
        if hooks.pip_ensure is not None:
            # Slicer 5.12+: progress dialog, Slicer's own packages skipped, restart prompt when needed
            hooks.pip_ensure(todo, constraints=constraints, skip_packages=sorted(PROTECTED),
                             prompt_install=False, prompt_restart=True, requester=REQUESTER)
        else:
            hooks.pip_install(" ".join(f'"{r}"' for r in todo) + f' -c "{constraints}"')
            changed = updated_and_imported(before, hooks.all_versions(),
                                           sys.modules if hooks.imported is None else hooks.imported)
            if changed:
                report.restart_recommended = True
                if hooks.restart is not None and hooks.confirm(
                        "Some updated packages were already loaded and may not work until Slicer restarts. "
                        "Restart Slicer now?", "\n".join(changed)):
                    hooks.restart()
    except DependencyError:
        raise
    except Exception as exc:  # CalledProcessError, OSError ...: pip could not do it
        raise DependencyError(f"Installing {', '.join(todo)} failed ({exc}); the details are in the Python "
                              "console. " + offline_help(todo)) from exc
    finally:
        os.unlink(constraints)
    report.installed.extend(todo)


def ensure_dependencies(hooks: SlicerHooks, requirements: Iterable[str] = REQUIREMENTS,
                        torch: bool = True) -> InstallReport:
    """Ask once, then install what is missing (torch first); raises :class:`DependencyError` on refusal/failure.

    ``requirements`` and ``torch``: what one panel action needs (:func:`requirements_for`,
    :data:`TORCH_ACTIONS`); the default is everything (Apply).
    """
    requirements = list(requirements)
    report = InstallReport(notes=newer_than_tested(hooks.version_of))
    for note in report.notes:
        hooks.log(note)
    torch_version = hooks.version_of("torch") if torch else None
    need_torch = torch and torch_version is None
    if torch_version is not None:
        report.torch_version = _check_torch(torch_version)  # too old: say so, never replace it here
    todo = missing(requirements, hooks.version_of)
    if not todo and not need_torch:
        return report
    listing = ([TORCH_REQUIREMENT + (" (through the PyTorch extension)" if hooks.torch_logic is not None
                                     else " (from PyPI)")] if need_torch else []) + todo
    size = "about 1-3 GB" if need_torch or any(Requirement(r).name == "nnunetv2" for r in todo) else "small"
    if not hooks.confirm(f"HNTumorSeg needs some Python packages ({size}, downloaded once). Packages that "
                         "are already installed are kept; none is downgraded. Install them now?",
                         "\n".join(listing)):
        raise DependencyError("The Python packages were not installed (declined), so HNTumorSeg cannot run yet.")
    if need_torch:
        try:
            report.torch_version = _install_torch(hooks)
        except DependencyError:
            raise
        except Exception as exc:
            raise DependencyError(f"Installing PyTorch failed ({exc}). " + offline_help([TORCH_REQUIREMENT])) from exc
        report.installed.append(TORCH_REQUIREMENT)
    if todo:
        _install_packages(hooks, todo, report)
    return report


def slicer_hooks(log: Callable[[str], object] = print) -> SlicerHooks:
    """The real hooks inside Slicer (imports ``slicer`` lazily; the PyTorch extension when present)."""
    import slicer

    packaging_module = getattr(slicer, "packaging", None)
    if packaging_module is None:
        try:
            import slicer.packaging as packaging_module  # type: ignore[no-redef]
        except ImportError:
            packaging_module = None
    try:
        import PyTorchUtils

        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    except ImportError:
        torch_logic = None

    def confirm(message: str, details: str) -> bool:
        return bool(slicer.util.confirmOkCancelDisplay(message, "HNTumorSeg", detailedText=details))

    return SlicerHooks(confirm=confirm, pip_install=slicer.util.pip_install,
                       pip_ensure=getattr(packaging_module, "pip_ensure", None), torch_logic=torch_logic,
                       restart=slicer.util.restart, log=log)
