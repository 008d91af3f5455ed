"""The Extensions Index entry and the CMake metadata, checked as the index's own checks do
(Slicer/ExtensionsIndex scripts/check_description_files.py), offline.

The entry is validated against the shipped copy of the index's schema
(Testing/schemas/slicer-extension-catalog-entry-schema-v1.0.2.json; source URL in
Testing/schemas/README.md). The icon and screenshot URLs point at raw.githubusercontent.com of
the repository-to-be; here the files they name are checked in the source tree.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "schemas" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
ENTRY = ROOT / "HNTumorSeg.json"
CMAKE = (ROOT / "CMakeLists.txt").read_text()


def cmake_set(name: str) -> str:
    m = re.search(r'set\s*\(\s*' + name + r'\s+"([^"]*)"', CMAKE)
    assert m, f"{name} not set in CMakeLists.txt"
    return m.group(1)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def local_file_of(url: str) -> Path:
    """https://raw.githubusercontent.com/<owner>/<repo>/<branch>/<path> -> <repo root>/<path>."""
    parts = urlsplit(url).path.strip("/").split("/")
    assert urlsplit(url).netloc == "raw.githubusercontent.com" and len(parts) > 3, url
    return ROOT.joinpath(*parts[3:])


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(ENTRY.read_text())


def test_entry_is_valid_against_the_index_schema(entry):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(entry, schema)
    assert entry["$schema"].split("#")[0].endswith(SCHEMA.name)
    # the schema really constrains: a misspelt key is refused
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**entry, "scmurl": entry["scm_url"]}, schema)
    assert b"\r" not in ENTRY.read_bytes()  # the index wants LF line endings
    assert not (ROOT / "HNTumorSeg.s4ext").exists()  # the old description format is gone


def test_names_as_the_index_checks_them(entry):
    name = ENTRY.stem
    project = re.search(r"project\s*\(\s*([^\s\)]+)", CMAKE).group(1)
    assert project == name == "HNTumorSeg"
    assert not name.lower().startswith("slicer")
    repo = urlsplit(entry["scm_url"]).path.rstrip("/").split("/")[-1].removesuffix(".git")
    assert repo == "SlicerHNTumorSeg" and urlsplit(entry["scm_url"]).scheme == "https"
    assert entry["category"] == cmake_set("EXTENSION_CATEGORY") == "Segmentation"


def test_license_file_and_pyproject_agree():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10000  # the full text, not a stub
    assert re.search(r'^license\s*=\s*"Apache-2.0"', (ROOT / "pyproject.toml").read_text(), re.M)


def test_depends_on_pytorch_in_cmake_and_entry(entry):
    depends = cmake_set("EXTENSION_DEPENDS").split()
    assert "PyTorch" in depends
    assert sorted(depends) == sorted(entry["build_dependencies"])


def test_cmake_metadata_as_the_template():
    assert re.match(r"cmake_minimum_required\(VERSION 3\.28\.0\.\.\.3\.28\.0 FATAL_ERROR\)", CMAKE)
    contributors = cmake_set("EXTENSION_CONTRIBUTORS")
    assert contributors and "John Doe" not in contributors and "AnyWare" not in contributors
    readme = (ROOT / "README.md").read_text()
    first_paragraph = readme.split("\n\n")[1]
    first_sentence = re.sub(r"\s+", " ", first_paragraph.replace("**", "")).split(". ")[0].rstrip(".") + "."
    assert cmake_set("EXTENSION_DESCRIPTION") == first_sentence
    assert cmake_set("EXTENSION_HOMEPAGE").startswith("https://github.com/hntumorseg/SlicerHNTumorSeg")


def test_icon_is_128_and_screenshots_are_real_pictures():
    icon = local_file_of(cmake_set("EXTENSION_ICONURL"))
    assert png_size(icon) == (128, 128)
    assert png_size(ROOT / "HNTumorSeg" / "Resources" / "Icons" / "HNTumorSeg.png")[0] > 0
    shots = cmake_set("EXTENSION_SCREENSHOTURLS").split()
    assert shots
    for url in shots:
        path = local_file_of(url)
        w, h = png_size(path)
        assert w >= 256 and h >= 128, path
        assert path.name != "panel.png"  # a drawing of the panel is never offered as a screenshot


def test_module_cmake_lists_existing_resources_and_installs_tests():
    module_cmake = (ROOT / "HNTumorSeg" / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", module_cmake, re.S).group(1)
    resources = [r.replace("${MODULE_NAME}", "HNTumorSeg") for r in block.split()]
    assert "Resources/SegmentationCategoryTypeModifier-HNTumorSeg.term.json" in resources
    for r in resources:
        assert (ROOT / "HNTumorSeg" / r).is_file(), r
    # tests copied into the build tree (configure_file) and installed beside the module
    assert "configure_file(" in module_cmake and "HNTumorSegTesting" in module_cmake
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module_cmake
    scripts = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", module_cmake, re.S).group(1).split()
    for script in scripts:
        assert (ROOT / "HNTumorSeg" / script.replace("${MODULE_NAME}", "HNTumorSeg")).is_file(), script
    installed = set(re.findall(r"\$\{_lib_root\}/Testing/(\S+?)[\s)]", module_cmake))
    assert {"conftest.py", "test_scene*.py", "test_export*.py", "test_sample_data.py"} <= installed
