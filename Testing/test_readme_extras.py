"""README's pip extras hold what HNTumorSegLib imports (issue 21).

README (sections 6 and 8) says a plain ``pip install -e .`` gives the ``hntumorseg`` command with a
light core, and that ``pip install -e ".[inference,dicom,hub]"`` adds everything segmenting, DICOM
and downloads need. Here every third-party package HNTumorSegLib imports (read from its source with
``ast``, so an import inside a function counts too) must be a core dependency or in an extra of
pyproject.toml, and every extra README names must exist. Imports made only by the Slicer side
(``install.py``, ``scene/``) are left out: they run inside Slicer's own Python, which has slicer,
VTK and packaging, and ``install.py`` installs the rest there.

Example:
    $ .venv/bin/python -m pytest -q -p no:cacheprovider Testing/test_readme_extras.py
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_testlib as rt  # noqa: E402

PACKAGE = rt.REPO_ROOT / "HNTumorSegLib"
SLICER_SIDE = ("install.py", "scene/")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9_.-]+", spec)[0])


def imported_modules() -> dict[str, set[str]]:
    """Top-level third-party module -> the HNTumorSegLib files (relative paths) that import it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "HNTumorSegLib":
                    found.setdefault(top, set()).add(rel)
    return found


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core dependency names, {extra: names}) of pyproject.toml, canonical."""
    project = tomllib.loads((rt.REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(s) for s in project["dependencies"]}
    extras = {k: {_requirement_name(s) for s in v} for k, v in project["optional-dependencies"].items()}
    return core, extras


def test_every_import_is_a_dependency_or_an_extra():
    core, extras = declared()
    everything = core.union(*extras.values())
    dists = packages_distributions()
    missing = []
    for module, files in sorted(imported_modules().items()):
        if all(f.startswith(SLICER_SIDE) for f in files):
            continue
        names = {_canonical(d) for d in dists.get(module, [])}
        if not names & everything:
            missing.append(f"{module} ({', '.join(sorted(names)) or 'not installed'}; imported by "
                           f"{', '.join(sorted(files)[:3])})")
    assert not missing, "imported by HNTumorSegLib but in no dependency or extra of pyproject.toml: " + \
        "; ".join(missing)
    assert not core & {"torch", "nnunetv2", "monai"}, "README: torch, nnU-Net v2 and MONAI are the inference extra"


def test_the_extras_readme_names_exist():
    _, extras = declared()
    text = rt.README_PATH.read_text(encoding="utf-8")
    named = {e.strip() for group in re.findall(r'pip install -e "\.\[([^\]]+)\]"', text) for e in group.split(",")}
    assert {"inference", "dicom"} <= named, named
    assert named <= set(extras), f"README names extras pyproject.toml lacks: {sorted(named - set(extras))}"
