"""First-run dependency set-up inside 3D Slicer: ask, then install exactly what is missing.

Slicer ships its own Python with SimpleITK, numpy, VTK... Installing nnU-Net naively would let
pip replace Slicer's SimpleITK (and more) with wheels built for another ABI. So:

1. :func:`missing` tells which of :data:`REQUIREMENTS` are absent or outside their pins
   (``importlib.metadata`` + ``packaging`` specifiers, environment markers evaluated);
2. nothing is installed before the user says yes (``confirm`` gets the full list);
3. torch comes first, through the PyTorch extension's ``PyTorchUtils`` when the caller passes
   its installer (it picks the CUDA build matching the driver), else from PyPI;
4. each package is installed with ``pip install --no-deps``; then its declared requirements are
   read from its installed metadata and only the unsatisfied ones are installed, the same way,
   until nothing is missing (:func:`plan_closure`). :data:`PROTECTED` packages (SimpleITK,
   numpy, VTK, torch ...) are never installed or replaced by this: a conflict with them is
   reported instead.

Pins (floors and ceilings): the versions this project is tested with, see requirements.txt.

Example (the Slicer widget's use; ``pip_install`` is ``slicer.util.pip_install``):
    >>> ensure_dependencies(confirm=slicer.util.confirmOkCancelDisplay,
    ...                     pip_install=slicer.util.pip_install, torch_installer=pytorch_utils_install)
"""

from __future__ import annotations

import importlib.metadata as metadata
from dataclasses import dataclass, field
from typing import Callable, Iterable

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

#: What the inference worker needs beyond Slicer's own Python (torch is handled separately).
REQUIREMENTS = (
    "nnunetv2>=2.5,<2.9",
    "dynamic-network-architectures>=0.4,<0.5",
    "monai>=1.4,<1.7",
    "highdicom>=0.23,<0.29",
    "pydicom>=2.4,<4",
    "scikit-image>=0.21,<0.27",
    "psutil>=5.9,<8",
)
TORCH_REQUIREMENT = "torch>=2.3"
#: Never installed or replaced by us: Slicer's own builds (or torch's installer's job).
PROTECTED = frozenset(canonicalize_name(n) for n in (
    "SimpleITK", "numpy", "vtk", "torch", "torchvision", "torchaudio", "pip", "setuptools", "wheel"))


@dataclass
class Status:
    """One requirement's state in this Python."""

    requirement: Requirement
    installed: str | None

    @property
    def ok(self) -> bool:
        if self.installed is None:
            return False
        return not self.requirement.specifier or self.requirement.specifier.contains(self.installed, prereleases=True)


@dataclass
class Plan:
    """What :func:`plan_closure` decided: ``install`` (pip --no-deps, in order) and ``conflicts``."""

    install: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def status(requirement: str | Requirement) -> Status:
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    return Status(req, installed_version(req.name))


def missing(requirements: Iterable[str] = REQUIREMENTS) -> list[str]:
    """The requirement strings not satisfied in this Python (absent, or version outside the pins)."""
    return [str(s.requirement) for s in map(status, requirements) if not s.ok]


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


def plan_closure(roots: Iterable[str], installed_after: Callable[[str], None] | None = None) -> Plan:
    """Unsatisfied requirements of ``roots`` and, transitively, of what is installed, protected ones apart.

    Walks installed metadata only: a requirement not installed yet goes into ``install``; the
    caller installs it (``installed_after`` is called with it, then its own requirements are
    walked). A protected package that is absent or off its pins becomes a ``conflict``.
    """
    plan = Plan()
    seen: set[str] = set()
    queue = [Requirement(r) for r in roots]
    while queue:
        req = queue.pop(0)
        key = canonicalize_name(req.name)
        st = status(req)
        if key in PROTECTED:
            if not st.ok:
                plan.conflicts.append(f"{req} (installed: {st.installed or 'none'})")
            continue
        if key in seen:
            continue
        seen.add(key)
        if not st.ok:
            plan.install.append(str(req))
            if installed_after is None:
                continue  # dry run: cannot see its requirements before it is installed
            installed_after(str(req))
        queue.extend(declared_requirements(req.name, req.extras))
    return plan


def ensure_dependencies(confirm: Callable[[str], bool], pip_install: Callable[[str], None],
                        torch_installer: Callable[[], object] | None = None,
                        requirements: Iterable[str] = REQUIREMENTS) -> list[str]:
    """Ask, then install what is missing; returns the requirement strings installed (empty if none or declined).

    ``pip_install`` gets a pip argument string (``slicer.util.pip_install`` takes that form).
    Raises ``RuntimeError`` when a protected package (e.g. SimpleITK) conflicts: we never replace it.
    """
    requirements = list(requirements)
    _raise_on_conflicts(plan_closure(requirements))  # before asking: a yes must not end in a refusal
    need_torch = not status(TORCH_REQUIREMENT).ok
    todo = missing(requirements)
    if not todo and not need_torch:
        return []
    listing = ([TORCH_REQUIREMENT + (" (through the PyTorch extension)" if torch_installer else "")]
               if need_torch else []) + todo
    if not confirm("HNTumorSeg needs these Python packages, about 1-3 GB, downloaded once:\n  "
                   + "\n  ".join(listing) + "\nInstall them now?"):
        return []
    done = []
    if need_torch:
        if torch_installer is not None:
            torch_installer()
        else:
            pip_install(f'"{TORCH_REQUIREMENT}"')
        done.append(TORCH_REQUIREMENT)

    def install(req: str) -> None:
        pip_install(f'--no-deps "{req}"')
        done.append(req)

    _raise_on_conflicts(plan_closure(requirements, installed_after=install))
    return done


def _raise_on_conflicts(plan: Plan) -> None:
    if plan.conflicts:
        raise RuntimeError("these packages of Slicer's own Python do not fit the requirements and are left as "
                           "they are: " + "; ".join(plan.conflicts) + " - update Slicer, or report this")
